"""video.apply_lora: LoRA files in the PEFT/diffusers and kohya layouts, merged exactly into new model values."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from vdgraph.errors import NodeRunError, WorkflowInvalid
from vdgraph.executor import Executor
from vdgraph.registry import Registry

from video_fixtures import tiny_model_folder

UNET_LINEAR = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
UNET_CONV = "down_blocks.0.resnets.0.conv1"  # a 3x3 convolution: kohya's conv LoRA
TEXT_LINEAR = "text_model.encoder.layers.0.self_attn.q_proj"  # as LoRA files spell it
TEXT_MODULE = "encoder.layers.0.self_attn.q_proj"  # transformers 5's CLIPTextModel has no text_model level


def factors(out_features: int, in_shape: tuple[int, ...], rank: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(down, up): down (r, *in_shape), up (out, r[, 1, 1]), seeded."""
    generator = torch.Generator().manual_seed(seed)
    down = torch.randn(rank, *in_shape, generator=generator)
    up = torch.randn(out_features, rank, *([1, 1] if len(in_shape) == 3 else []), generator=generator) * 0.1
    return down, up


def peft_lora(path: str, rank: int = 2) -> dict[str, torch.Tensor]:
    """A PEFT/diffusers-layout LoRA on a UNet linear layer and a text-encoder linear layer (no alphas: scale 1)."""
    state = {}
    d, u = factors(16, (16,), rank, 1)
    state[f"unet.{UNET_LINEAR}.lora_A.weight"], state[f"unet.{UNET_LINEAR}.lora_B.weight"] = d, u
    d, u = factors(32, (32,), rank, 2)
    state[f"text_encoder.{TEXT_LINEAR}.lora_A.weight"], state[f"text_encoder.{TEXT_LINEAR}.lora_B.weight"] = d, u
    save_file(state, path)
    return state


def kohya_lora(path: str, rank: int = 4, alpha: float = 2.0) -> dict[str, torch.Tensor]:
    """A kohya-layout LoRA: the same UNet linear layer, a 3x3 conv layer and the text encoder, with alphas."""
    state = {}
    for name, prefix, out, shape, seed in ((UNET_LINEAR, "lora_unet_", 16, (16,), 3),
                                           (UNET_CONV, "lora_unet_", 16, (16, 3, 3), 4),
                                           (TEXT_LINEAR, "lora_te_", 32, (32,), 5)):
        key = prefix + name.replace(".", "_")
        state[f"{key}.lora_down.weight"], state[f"{key}.lora_up.weight"] = factors(out, shape, rank, seed)
        state[f"{key}.alpha"] = torch.tensor(alpha)
    save_file(state, path)
    return state


def lora_workflow(files: list[str], weight: list[float]) -> dict:
    return {"vdgraph": 1, "inputs": {"weight": {"type": "list[float]", "default": weight}},
            "nodes": {"load": {"type": "video.load_model", "params": {"model": tiny_model_folder("2d")}},
                      "lora": {"type": "video.apply_lora", "in": {"unet": "load.unet", "text_encoder": "load.text_encoder",
                                                                  "weight": "inputs.weight"}, "params": {"lora": files}}},
            "outputs": {"unet": "lora.unet", "text": "lora.text_encoder", "base_unet": "load.unet",
                        "base_text": "load.text_encoder"}}


@pytest.fixture(scope="module")
def executor():
    return Executor(Registry.discover(), device="cpu")


def expected(weight: torch.Tensor, down: torch.Tensor, up: torch.Tensor, w: float, scale: float) -> torch.Tensor:
    """W + (w * scale) * (up @ down), what a merged layer must hold exactly."""
    return weight + (w * scale) * (up.flatten(1) @ down.flatten(1)).reshape(weight.shape)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_peft_and_kohya_layouts_merge_exactly_and_leave_the_input_unchanged(tmp_path, executor):
    peft = peft_lora(str(tmp_path / "peft.safetensors"))
    kohya = kohya_lora(str(tmp_path / "kohya.safetensors"), rank=4, alpha=2.0)
    files = [str(tmp_path / "peft.safetensors"), str(tmp_path / "kohya.safetensors")]
    result = executor.run(lora_workflow(files, [0.7, -1.5]), output_dir=str(tmp_path))
    base_unet, base_text = result["base_unet"].module, result["base_text"].module
    before_unet, before_text = snapshot(base_unet), snapshot(base_text)
    unet, text = result["unet"].module, result["text"].module
    assert unet is not base_unet and text is not base_text

    w_peft, w_kohya, kohya_scale = 0.7, -1.5, 2.0 / 4
    layer = UNET_LINEAR + ".weight"
    step = expected(before_unet[layer], peft[f"unet.{UNET_LINEAR}.lora_A.weight"],
                    peft[f"unet.{UNET_LINEAR}.lora_B.weight"], w_peft, 1.0)
    key = "lora_unet_" + UNET_LINEAR.replace(".", "_")
    want = expected(step, kohya[f"{key}.lora_down.weight"], kohya[f"{key}.lora_up.weight"], w_kohya, kohya_scale)
    assert torch.equal(unet.get_parameter(layer), want)
    key = "lora_unet_" + UNET_CONV.replace(".", "_")
    want = expected(before_unet[UNET_CONV + ".weight"], kohya[f"{key}.lora_down.weight"],
                    kohya[f"{key}.lora_up.weight"], w_kohya, kohya_scale)
    assert torch.equal(unet.get_parameter(UNET_CONV + ".weight"), want)
    step = expected(before_text[TEXT_MODULE + ".weight"], peft[f"text_encoder.{TEXT_LINEAR}.lora_A.weight"],
                    peft[f"text_encoder.{TEXT_LINEAR}.lora_B.weight"], w_peft, 1.0)
    key = "lora_te_" + TEXT_LINEAR.replace(".", "_")
    want = expected(step, kohya[f"{key}.lora_down.weight"], kohya[f"{key}.lora_up.weight"], w_kohya, kohya_scale)
    assert torch.equal(text.get_parameter(TEXT_MODULE + ".weight"), want)

    # every other tensor is the input's own (shared, not copied); the input modules are unchanged
    changed = {UNET_LINEAR + ".weight", UNET_CONV + ".weight"}
    for name, tensor in unet.state_dict().items():
        if name not in changed:
            assert tensor.data_ptr() == base_unet.state_dict()[name].data_ptr(), name
    for name, tensor in base_unet.state_dict().items():
        assert torch.equal(tensor, before_unet[name]), name
    for name, tensor in base_text.state_dict().items():
        assert torch.equal(tensor, before_text[name]), name
    assert not torch.equal(base_unet.get_parameter(layer), unet.get_parameter(layer))


def test_the_cache_key_carries_the_file_content_and_the_weight(tmp_path, executor):
    path = str(tmp_path / "style.safetensors")
    peft_lora(path)
    workflow = lora_workflow([path], [1.0])
    first = executor.run(workflow, output_dir=str(tmp_path), outputs=["unet"])
    again = executor.run(workflow, output_dir=str(tmp_path), outputs=["unet"])
    assert "lora" in first.ran and "lora" in again.cached
    assert again["unet"] is first["unet"]
    other = executor.run(workflow, {"weight": [0.5]}, output_dir=str(tmp_path), outputs=["unet"])
    assert "lora" in other.ran
    peft_lora(path, rank=3)  # the same name, new content
    edited = executor.run(workflow, output_dir=str(tmp_path), outputs=["unet"], explain=True)
    assert "lora" in edited.ran and "load" in edited.cached
    assert "content of a file it reads changed" in next(r.reason for r in edited.report if r.id == "lora")


def test_a_name_from_the_models_folder(tmp_path, executor, monkeypatch):
    root = tmp_path / "models"
    os.makedirs(root / "lora")
    state = peft_lora(str(root / "lora" / "ink.safetensors"))
    monkeypatch.setenv("VDGRAPH_MODELS", str(root))
    result = executor.run(lora_workflow(["ink"], [1.0]), output_dir=str(tmp_path), outputs=["unet", "base_unet"])
    layer = UNET_LINEAR + ".weight"
    want = expected(result["base_unet"].module.get_parameter(layer), state[f"unet.{UNET_LINEAR}.lora_A.weight"],
                    state[f"unet.{UNET_LINEAR}.lora_B.weight"], 1.0, 1.0)
    assert torch.equal(result["unet"].module.get_parameter(layer), want)


def test_problems(tmp_path, executor):
    path = str(tmp_path / "x.safetensors")
    peft_lora(path)
    with pytest.raises(WorkflowInvalid) as caught:
        executor.run(lora_workflow([path, path, path], [1.0, 2.0]), output_dir=str(tmp_path))
    assert [(p.node, p.port) for p in caught.value.problems] == [("lora", "weight")]
    with pytest.raises(WorkflowInvalid, match="no LoRA file at"):
        executor.run(lora_workflow([str(tmp_path / "missing.safetensors")], [1.0]), output_dir=str(tmp_path))
    save_file({"unet.mid_block.nothing.lora_A.weight": torch.zeros(2, 4),
               "unet.mid_block.nothing.lora_B.weight": torch.zeros(4, 2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(NodeRunError, match="match no layer of the UNet or text encoder"):
        executor.run(lora_workflow([str(tmp_path / "other.safetensors")], [1.0]), output_dir=str(tmp_path))
    save_file({"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": torch.zeros(2, 8),
               "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": torch.zeros(16, 2)},
              str(tmp_path / "small.safetensors"))
    with pytest.raises(NodeRunError, match="another model size"):
        executor.run(lora_workflow([str(tmp_path / "small.safetensors")], [1.0]), output_dir=str(tmp_path))
    save_file({"model.weight": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(NodeRunError, match="not LoRA keys"):
        executor.run(lora_workflow([str(tmp_path / "plain.safetensors")], [1.0]), output_dir=str(tmp_path))


@pytest.mark.parametrize("layout", ["peft", "kohya"])
def test_an_sdxl_lora_merges_into_both_text_encoders_and_keeps_the_sdxl_value(tmp_path, executor, layout):
    from sdxl_fixtures import tiny_sdxl_folder

    from vdgraph_video.values_sdxl import SDXLTextEncoderHandle

    folder = tiny_sdxl_folder()
    workflow = lora_workflow([str(tmp_path / "sdxl.safetensors")], [0.5])
    workflow["nodes"]["load"]["params"]["model"] = folder
    base = executor.run({**workflow, "nodes": {"load": workflow["nodes"]["load"]},
                         "outputs": {"text": "load.text_encoder"}})["text"]
    layers = {}  # target -> (module name as LoRA files spell it, the module's weight)
    for target, module in (("text_encoder", base.module), ("text_encoder_2", base.module_2)):
        layers[target] = module.get_submodule(own_name(module)).weight.detach().clone()
    state, prefixes = {}, {"text_encoder": ("lora_te1_", "text_encoder."), "text_encoder_2": ("lora_te2_", "text_encoder_2.")}
    for seed, (target, weight) in enumerate(layers.items()):
        down, up = factors(weight.shape[0], (weight.shape[1],), 2, seed)
        kohya, peft = prefixes[target]
        if layout == "kohya":
            key = kohya + TEXT_LINEAR.replace(".", "_")
            state[f"{key}.lora_down.weight"], state[f"{key}.lora_up.weight"] = down, up
        else:
            state[f"{peft}{TEXT_LINEAR}.lora_A.weight"], state[f"{peft}{TEXT_LINEAR}.lora_B.weight"] = down, up
    save_file(state, str(tmp_path / "sdxl.safetensors"))
    result = executor.run(workflow, output_dir=str(tmp_path))
    text = result["text"]
    assert isinstance(text, SDXLTextEncoderHandle) and text.tokenizer_2 is base.tokenizer_2
    for seed, (target, module) in enumerate((("text_encoder", text.module), ("text_encoder_2", text.module_2))):
        down, up = factors(layers[target].shape[0], (layers[target].shape[1],), 2, seed)
        merged = module.get_submodule(own_name(module)).weight
        assert torch.equal(merged, expected(layers[target], down, up, 0.5, 1.0))
    # the input value is unchanged
    base_2 = result["base_text"].module_2
    assert torch.equal(base_2.get_submodule(own_name(base_2)).weight, layers["text_encoder_2"])


def own_name(module: torch.nn.Module) -> str:
    """TEXT_LINEAR as the module names it: CLIPTextModelWithProjection kept the text_model level, CLIPTextModel
    dropped it."""
    return TEXT_LINEAR if hasattr(module, "text_model") else TEXT_MODULE
