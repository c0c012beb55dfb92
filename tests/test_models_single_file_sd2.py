"""An SD 2.x single-file checkpoint (OpenCLIP text encoder layout) loads the same weights as its diffusers folder."""

from __future__ import annotations

import json
import os
import shutil

import torch
from safetensors.torch import save_file

from vdgraph.executor import Executor
from vdgraph.registry import Registry

from single_file_fixtures import sd2_checkpoint
from video_fixtures import build_components, save_tiny_model

from vdgraph_video.single_file import detect_architecture


def test_an_sd2_checkpoint_loads_the_same_weights_as_its_diffusers_folder(tmp_path):
    components = build_components("2d", seed=5)
    checkpoint = str(tmp_path / "tiny-sd2.safetensors")
    state = sd2_checkpoint(components["unet"], components["vae"], components["text_encoder"])
    save_file({k: v.contiguous() for k, v in state.items()}, checkpoint)
    assert detect_architecture(checkpoint) == "sd2"
    folder = save_tiny_model(str(tmp_path / "folder"), "2d", seed=5)
    config = str(tmp_path / "config")
    shutil.copytree(folder, config, ignore=shutil.ignore_patterns("*.safetensors"))
    with open(os.path.join(config, "model_index.json")) as handle:
        index = json.load(handle)
    with open(os.path.join(config, "model_index.json"), "w") as handle:
        json.dump({**index, "_class_name": "StableDiffusionPipeline"}, handle)

    def workflow(model: str, config: str = "") -> dict:
        return {"vdgraph": 1, "nodes": {
            "load": {"type": "video.load_model", "params": {"model": model, "config": config}},
            "text": {"type": "video.encode_text", "in": {"text_encoder": "load.text_encoder"},
                     "params": {"prompt": "a blue square"}}},
            "outputs": {"text_encoder": "load.text_encoder", "unet": "load.unet", "cond": "text.conditioning"}}

    executor = Executor(Registry.discover(), device="cpu")
    result = executor.run(workflow(checkpoint, config), output_dir=str(tmp_path))
    for name in ("text_encoder", "unet"):
        want, got = components[name].state_dict(), result[name].module.state_dict()
        assert got.keys() == want.keys(), name
        for key, tensor in want.items():
            assert torch.equal(got[key], tensor), f"{name}.{key}"
    reference = executor.run(workflow(folder), output_dir=str(tmp_path))
    assert torch.equal(result["cond"].cond, reference["cond"].cond)
