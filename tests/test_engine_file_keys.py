"""The content of a file a node reads is in its cache key whatever feeds the path: a literal, a workflow input or
a link (then what feeds the link runs first, before the cache is looked up)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vdgraph.executor import Executor
from vdgraph.filekeys import content_of
from vdgraph.node import Input, Node, Output
from vdgraph.errors import NodeDeclarationError
from vdgraph.registry import Registry

from test_models_lora import peft_lora
from video_fixtures import tiny_model_folder


def linked_lora_workflow(path: str) -> dict:
    """The LoRA file's name comes from another node (core.format), never as a literal of video.apply_lora."""
    return {"vdgraph": 1,
            "nodes": {"name": {"type": "core.format", "params": {"template": path}},
                      "load": {"type": "video.load_model", "params": {"model": tiny_model_folder("2d")}},
                      "lora": {"type": "video.apply_lora", "in": {"unet": "load.unet", "text_encoder": "load.text_encoder",
                                                                  "lora": ["name.text"]}},
                      "encode": {"type": "video.encode_text", "in": {"text_encoder": "lora.text_encoder"},
                                 "params": {"prompt": "a red circle"}}},
            "outputs": {"conditioning": "encode.conditioning"}}


def test_a_lora_named_over_a_link_is_keyed_by_its_content(tmp_path):
    path = str(tmp_path / "style.safetensors")
    peft_lora(path, rank=2)
    workflow = linked_lora_workflow(path)
    cache = str(tmp_path / "cache")
    registry = Registry.discover()

    first = Executor(registry, device="cpu", cache_dir=cache).run(workflow, output_dir=str(tmp_path))
    assert {"name", "load", "lora", "encode"} <= set(first.ran)

    warm = Executor(registry, device="cpu", cache_dir=cache).run(workflow, output_dir=str(tmp_path))
    assert warm.ran == []  # the node naming the file is served too, and the model is not even loaded
    assert {r.id for r in warm.report} == {"name", "encode"}
    assert torch.equal(warm["conditioning"].cond, first["conditioning"].cond)

    peft_lora(path, rank=3)  # the same name, other weights
    edited = Executor(registry, device="cpu", cache_dir=cache).run(workflow, output_dir=str(tmp_path),
                                                                   explain=True)
    assert {"lora", "encode"} <= set(edited.ran)
    assert "content of a file it reads changed" in next(r.reason for r in edited.report if r.id == "lora")
    assert not torch.equal(edited["conditioning"].cond, first["conditioning"].cond)


def write_png(path: str, value: int) -> None:
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


def test_an_image_named_over_a_link_is_keyed_by_its_content(tmp_path):
    """The same rule for video.read_image (a file input without a lookup of its own): one engine mechanism."""
    path = str(tmp_path / "frame.png")
    write_png(path, 10)
    workflow = {"vdgraph": 1, "inputs": {"name": {"type": "str", "default": "frame"}},
                "nodes": {"name": {"type": "core.format", "in": {"a": "inputs.name"},
                                   "params": {"template": str(tmp_path / "${a}.png")}},
                          "read": {"type": "video.read_image", "in": {"path": "name.text"}}},
                "outputs": {"frames": "read.frames"}}
    cache = str(tmp_path / "cache")
    first = Executor(Registry.discover(), device="cpu", cache_dir=cache).run(workflow, output_dir=str(tmp_path))
    again = Executor(Registry.discover(), device="cpu", cache_dir=cache).run(workflow, output_dir=str(tmp_path))
    assert "read" in first.ran and "read" in again.cached
    write_png(path, 200)
    edited = Executor(Registry.discover(), device="cpu", cache_dir=cache).run(workflow, output_dir=str(tmp_path))
    assert "read" in edited.ran
    assert torch.allclose(edited["frames"], torch.full_like(edited["frames"], 200 / 255))
    assert not torch.equal(edited["frames"], first["frames"])


def test_a_model_folder_edited_in_place_is_loaded_again(tmp_path):
    """video.load_model's key holds the content of the folder it loads, found as its run finds it."""
    import json
    import shutil

    folder = str(tmp_path / "model")
    shutil.copytree(tiny_model_folder("2d"), folder)
    workflow = {"vdgraph": 1, "nodes": {"load": {"type": "video.load_model", "params": {"model": folder}}},
                "outputs": {"schedule": "load.scheduler_config"}}
    executor = Executor(Registry.discover(), device="cpu")
    first = executor.run(workflow, output_dir=str(tmp_path))
    assert "load" in executor.run(workflow, output_dir=str(tmp_path)).cached
    config_path = f"{folder}/scheduler/scheduler_config.json"
    with open(config_path) as handle:
        config = json.load(handle)
    config["beta_end"] = config["beta_end"] * 2
    with open(config_path, "w") as handle:
        json.dump(config, handle)
    edited = executor.run(workflow, output_dir=str(tmp_path))
    assert "load" in edited.ran and edited["schedule"] != first["schedule"]


def test_content_of_names_what_it_cannot_hash(tmp_path):
    assert content_of(None) == "not a local file"
    assert content_of(str(tmp_path / "absent.png")) == "missing"


def test_a_file_port_must_hold_names():
    with pytest.raises(NodeDeclarationError, match="reads a file, so its type must be str"):
        class Bad(Node):
            """reads a number as a file"""

            id = "test.bad_file_port"
            inputs = [Input("path", int, reads_file=True)]
            outputs = [Output("x", int)]

            def run(self, ctx, path):
                return path
