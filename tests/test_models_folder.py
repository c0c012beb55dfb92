"""The models folder: roots from VDGRAPH_MODELS or the user folder, names model inputs accept, `vdgraph models`."""

from __future__ import annotations

import json
import os

import pytest
import torch

from vdgraph.cli import main
from vdgraph.executor import Executor
from vdgraph.models_folder import find_model, list_models, model_roots
from vdgraph.registry import Registry

from video_fixtures import save_controlnet_for, save_motion_adapter_for, tiny_model_folder


def fake_hub_cache(root) -> str:
    """A Hugging Face cache holding one model repository, own/tiny, in the cache's own layout."""
    repo = root / "models--own--tiny"
    for sub in ("blobs", "refs", "snapshots/abc123"):
        os.makedirs(repo / sub)
    (repo / "blobs" / "deadbeef").write_text("{}")
    os.symlink("../../blobs/deadbeef", repo / "snapshots" / "abc123" / "config.json")
    (repo / "refs" / "main").write_text("abc123")
    return str(root)


@pytest.fixture
def roots(tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    for kind in ("checkpoints", "lora"):
        os.makedirs(first / kind)
        os.makedirs(second / kind)
    os.symlink(tiny_model_folder("2d"), first / "checkpoints" / "tiny")
    (first / "checkpoints" / "single.safetensors").write_bytes(b"")
    (second / "checkpoints" / "tiny.safetensors").write_bytes(b"")  # shadowed by first's folder of that name
    (second / "lora" / "ink.safetensors").write_bytes(b"")
    (second / "lora" / "notes.txt").write_text("not a model")
    monkeypatch.setenv("VDGRAPH_MODELS", os.pathsep.join([str(first), str(second)]))
    return first, second


def test_roots_come_from_the_path_list_or_the_user_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("VDGRAPH_MODELS", os.pathsep.join(["/a", "", "/b"]))
    assert model_roots() == ["/a", "/b"]
    monkeypatch.delenv("VDGRAPH_MODELS")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert model_roots() == [os.path.join(str(tmp_path), "vdgraph", "models")]
    monkeypatch.delenv("XDG_DATA_HOME")
    assert model_roots() == [os.path.expanduser("~/.local/share/vdgraph/models")]


def test_names_and_listing(roots):
    first, second = roots
    assert find_model("tiny", "checkpoints") == str(first / "checkpoints" / "tiny")
    assert find_model("checkpoints/tiny", "checkpoints") == str(first / "checkpoints" / "tiny")
    # the full file name reaches the second root's file, which the first root's folder of that name shadows
    assert find_model("tiny.safetensors", "checkpoints") == str(second / "checkpoints" / "tiny.safetensors")
    assert find_model("single", "checkpoints") == find_model("single.safetensors", "checkpoints") == \
        str(first / "checkpoints" / "single.safetensors")
    assert find_model("ink", "lora") == str(second / "lora" / "ink.safetensors")
    assert find_model("ink", "checkpoints") is None and find_model("notes.txt", "lora") is None
    for hostile in ("../lora/ink", "/etc/passwd", "lora/../x", "s3://bucket/x", ""):
        assert find_model(hostile, "lora") is None
    listed = [(e.kind, e.name, e.is_file) for e in list_models()]
    assert listed == [("checkpoints", "single", True), ("checkpoints", "tiny", False), ("lora", "ink", True)]


def test_vdgraph_models_lists_builtins_roots_and_the_hub_cache(roots, tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", fake_hub_cache(tmp_path / "hub"))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "shapes-64" in out and "tiny" in out and "ink  (single file)" in out and "own/tiny" in out
    assert main(["models", "--kind", "lora", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in data["models"]] == ["ink"] and data["builtin"] == [] and data["hub_cache"] == []
    assert data["roots"] == model_roots()


def test_model_inputs_accept_names(roots, tmp_path):
    first, _ = roots
    os.makedirs(first / "controlnet")
    save_controlnet_for(tiny_model_folder("2d"), str(first / "controlnet" / "edges"))
    save_motion_adapter_for(str(first / "motion" / "drift"))  # motion adapters are looked up in motion/
    workflow = {"vdgraph": 1, "nodes": {"load": {"type": "video.load_model", "params": {"model": "tiny"}},
                                        "cn": {"type": "video.load_controlnet", "params": {"model": "edges"}},
                                        "motion": {"type": "video.load_motion_adapter", "params": {"model": "drift"}}},
                "outputs": {"unet": "load.unet", "controlnet": "cn.controlnet", "motion": "motion.motion_adapter"}}
    result = Executor(Registry.discover(), device="cpu").run(workflow, output_dir=str(tmp_path))
    assert result["motion"].max_frames == 32
    assert result["unet"].module.config.block_out_channels == (16, 32) or \
        list(result["unet"].module.config.block_out_channels) == [16, 32]
    assert isinstance(result["controlnet"].module, torch.nn.Module)
    from vdgraph.errors import NodeRunError

    missing = {"vdgraph": 1, "nodes": {"load": {"type": "video.load_model", "params": {"model": "absent"}}},
               "outputs": {"unet": "load.unet"}}
    with pytest.raises(NodeRunError, match=r"not in the models folder \(checkpoints/ of"):
        Executor(Registry.discover(), device="cpu").run(missing, output_dir=str(tmp_path))


def test_an_adapter_given_as_a_model_says_where_it_goes():
    from vdgraph_shapes.models import CONTROLNET_CANNY_DIR, MOTION_DIR
    from vdgraph_video.loading import ModelNotFound, check_folder

    for folder, says in ((MOTION_DIR, "it is a motion adapter: give it to video.load_motion_adapter"),
                         (CONTROLNET_CANNY_DIR, "it is a ControlNet: give it to video.load_controlnet")):
        with pytest.raises(ModelNotFound, match=says):
            check_folder(str(folder))
