"""Single-file checkpoints (original SD key layout) through video.load_model and diffusers' single-file loading."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from vdgraph.errors import NodeRunError, WorkflowInvalid
from vdgraph.executor import Executor
from vdgraph.registry import Registry

from single_file_fixtures import check_round_trip, sd1_checkpoint
from video_fixtures import build_components, save_tiny_model, write_tiny_tokenizer

from vdgraph_video.single_file import ARCHITECTURES, CheckpointError, detect_architecture, shipped_config


@pytest.fixture(scope="module")
def executor():
    return Executor(Registry.discover(), device="cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random SD-1-shaped model: its modules, a checkpoint of them in the original layout, and a
    configuration folder (the diffusers folder's JSON files and tokenizer, no weights)."""
    root = tmp_path_factory.mktemp("single")
    components = build_components("2d", seed=3)
    state = sd1_checkpoint(components["unet"], components["vae"], components["text_encoder"])
    check_round_trip(state, components["unet"], components["vae"])
    checkpoint = str(root / "tiny-sd1.safetensors")
    save_file({k: v.contiguous() for k, v in state.items()}, checkpoint)
    folder = save_tiny_model(str(root / "folder"), "2d", seed=3)
    config = str(root / "config")
    shutil.copytree(folder, config, ignore=shutil.ignore_patterns("*.safetensors"))
    with open(os.path.join(config, "model_index.json")) as handle:
        index = json.load(handle)
    index["_class_name"] = "StableDiffusionPipeline"
    with open(os.path.join(config, "model_index.json"), "w") as handle:
        json.dump(index, handle)
    return {"components": components, "checkpoint": checkpoint, "config": config, "folder": folder, "root": root}


def load_workflow_for(model: str, config: str = "", tokenizer: str = "") -> dict:
    return {"vdgraph": 1,
            "nodes": {"load": {"type": "video.load_model",
                               "params": {"model": model, "config": config, "tokenizer": tokenizer}},
                      "text": {"type": "video.encode_text", "in": {"text_encoder": "load.text_encoder"},
                               "params": {"prompt": "a red circle"}}},
            "outputs": {"unet": "load.unet", "vae": "load.vae", "text_encoder": "load.text_encoder",
                        "scheduler": "load.scheduler_config", "conditioning": "text.conditioning"}}


def test_shipped_configs_match_the_published_architectures():
    """Each hand-written config builds the published model: parameter counts of the released checkpoints."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def read(arch, sub):
        with open(os.path.join(shipped_config(arch), sub, "config.json")) as handle:
            return json.load(handle)

    def count(module):
        return sum(p.numel() for p in module.parameters())

    published = {"sd1": (859_520_964, 83_653_863, 123_060_480), "sd2": (865_910_724, 83_653_863, 340_387_840),
                 "sdxl": (2_567_463_684, 83_653_863, 123_060_480)}
    for arch, (unet, vae, text) in published.items():
        with torch.device("meta"):  # shapes only: nothing is allocated or initialised
            assert count(UNet2DConditionModel.from_config(read(arch, "unet"))) == unet, arch
            assert count(AutoencoderKL.from_config(read(arch, "vae"))) == vae, arch
            assert count(CLIPTextModel(CLIPTextConfig(**read(arch, "text_encoder")))) == text, arch
    with torch.device("meta"):
        assert count(CLIPTextModelWithProjection(CLIPTextConfig(**read("sdxl", "text_encoder_2")))) == 694_659_840
    for arch in ARCHITECTURES.values():  # no weights and no tokenizer vocabulary ship, only small JSON files
        for folder, _, names in os.walk(shipped_config(next(k for k, a in ARCHITECTURES.items() if a is arch))):
            assert all(name.endswith(".json") for name in names), names


def test_an_sd1_checkpoint_loads_the_same_weights_as_its_diffusers_folder(tiny, executor, tmp_path):
    result = executor.run(load_workflow_for(tiny["checkpoint"], tiny["config"]), output_dir=str(tmp_path))
    components = tiny["components"]
    for name, handle in (("unet", result["unet"]), ("vae", result["vae"]), ("text_encoder", result["text_encoder"])):
        want = components[name].state_dict()
        got = handle.module.state_dict()
        assert got.keys() == want.keys(), name
        for key, tensor in want.items():
            assert torch.equal(got[key], tensor), f"{name}.{key}"
    folder = executor.run(load_workflow_for(tiny["folder"]), output_dir=str(tmp_path))
    assert torch.equal(result["conditioning"].cond, folder["conditioning"].cond)  # tokenizer and encoder alike
    assert result["scheduler"] == folder["scheduler"]


def test_the_tokenizer_can_come_from_its_own_folder(tiny, executor, tmp_path):
    config = str(tmp_path / "config")
    shutil.copytree(tiny["config"], config)
    shutil.rmtree(os.path.join(config, "tokenizer"))
    os.makedirs(os.path.join(config, "tokenizer"))
    with open(os.path.join(config, "tokenizer", "tokenizer_config.json"), "w") as handle:
        json.dump({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77}, handle)  # settings, no vocabulary
    tokenizer = str(tmp_path / "tokenizer")
    write_tiny_tokenizer(tokenizer)
    result = executor.run(load_workflow_for(tiny["checkpoint"], config, tokenizer), output_dir=str(tmp_path),
                          outputs=["conditioning"])
    folder = executor.run(load_workflow_for(tiny["folder"]), output_dir=str(tmp_path), outputs=["conditioning"])
    assert torch.equal(result["conditioning"].cond, folder["conditioning"].cond)


def test_without_a_tokenizer_the_error_says_what_is_needed(tiny, executor, tmp_path, monkeypatch):
    config = str(tmp_path / "config")
    shutil.copytree(tiny["config"], config, ignore=shutil.ignore_patterns("vocab.json", "merges.txt"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))  # nothing cached: no vocabulary anywhere
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(NodeRunError, match=r"needs the CLIP tokenizer.*hf download openai/clip-vit-large-patch14"):
        executor.run(load_workflow_for(tiny["checkpoint"], config), output_dir=str(tmp_path), outputs=["unet"])


def test_a_checkpoint_by_name_from_the_models_folder(tiny, executor, tmp_path, monkeypatch):
    os.makedirs(tmp_path / "models" / "checkpoints")
    shutil.copy(tiny["checkpoint"], tmp_path / "models" / "checkpoints" / "my-tiny.safetensors")
    monkeypatch.setenv("VDGRAPH_MODELS", str(tmp_path / "models"))
    result = executor.run(load_workflow_for("my-tiny", tiny["config"]), output_dir=str(tmp_path), outputs=["unet"])
    key = "conv_in.weight"
    assert torch.equal(result["unet"].module.state_dict()[key], tiny["components"]["unet"].state_dict()[key])


def layout(path: str, keys: dict[str, tuple[int, ...]]) -> str:
    save_file({k: torch.zeros(shape) for k, shape in keys.items()}, path)
    return path


BASE = {"model.diffusion_model.input_blocks.0.0.weight": (2, 4, 1, 1), "first_stage_model.decoder.conv_in.weight": (1,)}


def test_the_layouts_are_recognised_from_the_keys(tmp_path):
    for arch in ARCHITECTURES.values():
        keys = {**BASE, arch.text_key: (1,)}
        if arch.name == "SDXL base":
            keys["conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"] = (1,)
        found = detect_architecture(layout(str(tmp_path / "x.safetensors"), keys))
        assert ARCHITECTURES[found] is arch
    inpainting = {**BASE, "model.diffusion_model.input_blocks.0.0.weight": (2, 9, 1, 1),
                  ARCHITECTURES["sd1"].text_key: (1,)}
    with pytest.raises(CheckpointError, match="9 input channels"):
        detect_architecture(layout(str(tmp_path / "x.safetensors"), inpainting))


def test_an_unknown_layout_is_a_validation_problem_naming_the_supported_ones(tmp_path, executor):
    other = layout(str(tmp_path / "flux.safetensors"), {"double_blocks.0.img_attn.norm.key_norm.scale": (4,)})
    with pytest.raises(WorkflowInvalid) as caught:
        executor.run(load_workflow_for(other), output_dir=str(tmp_path))
    (problem,) = caught.value.problems
    assert (problem.node, problem.port) == ("load", "model")
    assert "SD 1.x" in problem.message and "SD 2.x" in problem.message and "SDXL base" in problem.message
    sdxl = layout(str(tmp_path / "xl.safetensors"), {**BASE, ARCHITECTURES["sdxl"].text_key: (1,)})
    # An SDXL layout is recognised and accepted (the SDXL family runs it: tests/test_video_sdxl.py), and validation
    # knows it from the shipped sdxl-base configuration: its two text encoders and its VAE factor.
    assert [p for p in executor.validate(load_workflow_for(sdxl)) if p.severity == "error"] == []
    from vdgraph.node import Known
    from vdgraph_video.models import LoadModel
    from vdgraph_video.values_sdxl import SDXLTextEncoderFacts

    facts = LoadModel.infer(Known({"model": sdxl, "config": ""}))
    assert isinstance(facts["text_encoder"], SDXLTextEncoderFacts) and facts["vae"].scale_factor == 8
    assert facts["unet"].is_sdxl
    with pytest.raises(WorkflowInvalid, match="no checkpoint file at"):
        executor.run(load_workflow_for(str(tmp_path / "absent.safetensors")), output_dir=str(tmp_path))
    with pytest.raises(WorkflowInvalid, match="no folder at"):
        executor.run(load_workflow_for(other, config=str(tmp_path / "nowhere")), output_dir=str(tmp_path))


def test_a_checkpoint_that_does_not_fit_the_config_names_the_mismatch(tiny, executor, tmp_path):
    """The tiny checkpoint with the shipped SD 1.5 config: diffusers refuses the shapes; the error names the file."""
    tokenizer = os.path.join(tiny["config"], "tokenizer")
    with pytest.raises(NodeRunError, match="tiny-sd1.safetensors"):
        executor.run(load_workflow_for(tiny["checkpoint"], "", tokenizer), output_dir=str(tmp_path),
                     outputs=["unet"])


def test_a_checkpoint_with_a_nan_weight_names_the_file_the_module_and_the_weight(tiny, executor, tmp_path):
    state = load_file(tiny["checkpoint"])
    key = next(k for k in state if k.startswith("first_stage_model.") and k.endswith("conv_in.weight"))
    state[key].view(-1)[0] = float("nan")
    damaged = str(tmp_path / "damaged.safetensors")
    save_file(state, damaged)
    message = r"damaged\.safetensors \(vae\): the weight '[\w.]*conv_in\.weight' holds 1 NaN"
    with pytest.raises(NodeRunError, match=message):
        executor.run(load_workflow_for(damaged, tiny["config"]), output_dir=str(tmp_path), outputs=["unet"])
