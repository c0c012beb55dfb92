"""Weights that hold NaN or Inf are refused at load, naming the file and the weight (they would otherwise load
without complaint and render black or noise frames)."""

from __future__ import annotations

import math
import pathlib
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from vdgraph.executor import Executor
from vdgraph.registry import Registry
from video_fixtures import save_motion_adapter_for, tiny_model_folder

UNET_WEIGHT = "down_blocks.0.resnets.0.conv1.weight"


def damaged_copy(source, target, weights: str, name: str, value: float):
    """A copy of a model folder whose `weights` file has one element of tensor `name` set to `value`."""
    shutil.copytree(source, target)
    path = target / weights
    state = load_file(str(path))
    state[name] = state[name].clone()
    state[name].view(-1)[3] = value
    save_file(state, str(path))
    return target


def test_finite_checks_every_tensor_and_only_floats():
    from vdgraph_video.loading import ModelFolderError, finite

    fine = {"a": torch.full((4,), 3.0e38), "b": torch.arange(5), "c": torch.full((3,), 6.0e4, dtype=torch.float16)}
    finite(fine, "here")  # finite weights whose sum overflows (to inf) are looked at element by element: fine
    for value in (math.nan, math.inf, -math.inf):
        bad = {**fine, "c": torch.tensor([1.0, value, value], dtype=torch.float16)}
        with pytest.raises(ModelFolderError, match=r"^here: the weight 'c' holds 2 NaN or infinite value\(s\) of 3"):
            finite(bad, "here")
    with pytest.raises(ModelFolderError, match="'bias'"):
        module = torch.nn.Linear(2, 2)
        with torch.no_grad():
            module.bias[0] = math.nan
        finite(module, "a module")


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_model_folder_with_a_non_finite_unet_weight_is_refused(tmp_path, value):
    folder = damaged_copy(pathlib.Path(tiny_model_folder("2d")), tmp_path / "model",
                          "unet/diffusion_pytorch_model.safetensors", UNET_WEIGHT, value)
    graph = {"vdgraph": 1, "nodes": {"load": {"type": "video.load_model", "params": {"model": str(folder)}}},
             "outputs": {"unet": "load.unet"}}
    with pytest.raises(Exception) as caught:
        Executor(Registry.discover(), device="cpu").run(graph)
    message = str(caught.value)
    assert "load" in message and str(folder / "unet") in message and UNET_WEIGHT in message
    assert "1 NaN or infinite value(s)" in message and "download or export it again" in message


def test_a_motion_adapter_with_a_nan_weight_is_refused(tmp_path):
    from vdgraph_video.loading import ModelFolderError
    from vdgraph_video.motion_adapter import load_motion_adapter

    good = save_motion_adapter_for(str(tmp_path / "good"))
    name = next(k for k in load_file(f"{good}/diffusion_pytorch_model.safetensors") if k.endswith("proj_in.weight"))
    folder = damaged_copy(tmp_path / "good", tmp_path / "bad", "diffusion_pytorch_model.safetensors", name, math.nan)
    load_motion_adapter(good, torch.device("cpu"), torch.float32)  # the undamaged one loads
    with pytest.raises(ModelFolderError, match=rf"^{folder}: the weight '{name}' holds 1 NaN"):
        load_motion_adapter(str(folder), torch.device("cpu"), torch.float32)


def test_a_lora_file_with_an_infinite_weight_is_refused(tmp_path):
    down = torch.randn(2, 16)
    up = torch.randn(16, 2)
    up[1, 1] = math.inf
    path = tmp_path / "bad.safetensors"
    save_file({"unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": down,
               "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight": up}, str(path))
    graph = {"vdgraph": 1,
             "nodes": {"load": {"type": "video.load_model", "params": {"model": tiny_model_folder("2d")}},
                       "lora": {"type": "video.apply_lora",
                                "in": {"unet": "load.unet", "text_encoder": "load.text_encoder"},
                                "params": {"lora": [str(path)], "weight": [1.0]}}},
             "outputs": {"unet": "lora.unet"}}
    with pytest.raises(Exception) as caught:
        Executor(Registry.discover(), device="cpu").run(graph)
    message = str(caught.value)
    assert "lora" in message and str(path) in message and "lora_B.weight" in message and "infinite" in message


def test_a_nan_in_a_motion_modules_positional_table_is_refused(tmp_path):
    """pos_embed.pe is a buffer the adapter's file fills, added to the hidden states: a NaN there is a NaN video."""
    from vdgraph_video.loading import ModelFolderError
    from vdgraph_video.motion_adapter import load_motion_adapter

    good = save_motion_adapter_for(str(tmp_path / "good"))
    name = next(k for k in load_file(f"{good}/diffusion_pytorch_model.safetensors") if k.endswith("pos_embed.pe"))
    folder = damaged_copy(tmp_path / "good", tmp_path / "bad", "diffusion_pytorch_model.safetensors", name, math.nan)
    with pytest.raises(ModelFolderError, match=rf"the weight '{name}' holds 1 NaN"):
        load_motion_adapter(str(folder), torch.device("cpu"), torch.float32)


def test_long_weight_names_are_named_whole_and_float16_overflow_is_told_apart():
    from vdgraph_video.loading import ModelFolderError, finite

    name = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"  # 65 characters
    with pytest.raises(ModelFolderError) as caught:
        finite({name: torch.tensor([1.0, math.inf], dtype=torch.float16)}, "model/unet")
    assert f"'{name}'" in str(caught.value) and "exceed torch.float16's range: load it in float32" in str(caught.value)
    with pytest.raises(ModelFolderError) as caught:
        finite({name: torch.tensor([1.0, math.inf])}, "model/unet")
    assert "range" not in str(caught.value)


def test_fp8_weights_are_checked_too():
    from vdgraph_video.loading import ModelFolderError, finite

    finite({"w": torch.tensor([1.0, 448.0]).to(torch.float8_e4m3fn)}, "lora.safetensors")
    with pytest.raises(ModelFolderError, match="holds 1 NaN"):
        finite({"w": torch.tensor([1.0, math.nan]).to(torch.float8_e4m3fn)}, "lora.safetensors")


@pytest.mark.parametrize("dtype, alpha, weight", [(torch.float32, 3e38, 1.0), (torch.float16, None, 1e4)])
def test_a_lora_merge_that_overflows_is_refused_naming_the_files(tmp_path, dtype, alpha, weight):
    """Finite files can still overflow when merged: a huge alpha, or a delta beyond float16's 65504."""
    from vdgraph_video.ops.lora import LoraError

    layer = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"  # a (16, 16) linear layer
    state = {f"{layer}.lora_A.weight": torch.full((2, 16), 3.0), f"{layer}.lora_B.weight": torch.full((16, 2), 3.0)}
    if alpha is not None:
        state[f"{layer}.alpha"] = torch.tensor(alpha)
    path = tmp_path / "strong.safetensors"
    save_file(state, str(path))
    graph = {"vdgraph": 1,
             "nodes": {"load": {"type": "video.load_model", "params": {"model": tiny_model_folder("2d")}},
                       "lora": {"type": "video.apply_lora",
                                "in": {"unet": "load.unet", "text_encoder": "load.text_encoder"},
                                "params": {"lora": [str(path)], "weight": [weight]}}},
             "outputs": {"unet": "lora.unet"}}
    executor = Executor(Registry.discover(), device="cpu", dtype=dtype)
    with pytest.raises(Exception) as caught:
        executor.run(graph)
    assert isinstance(caught.value.__cause__, LoraError) or "LoraError" in str(caught.value)
    message = str(caught.value)
    assert str(path) in message and "merging gives" in message and "attn1.to_q.weight" in message
