"""Inflating a 2-D UNet into a UNet3DConditionModel, and the built-in shapes-64-3d model made that way.

The central claim: the inflated 3-D UNet on (B, C, F, h, w) latents equals the 2-D UNet on the F frames folded into
its batch, because every spatial weight is copied and every temporal layer is an exact identity. Checked on small
random 2-D UNets (here) and on the shipped shapes-64.
"""

from __future__ import annotations

import json
import os
import pathlib

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import video_fixtures
from diffusers import UNet2DConditionModel, UNet3DConditionModel

import vdgraph
from vdgraph_shapes import inflate, models
from vdgraph_shapes.inflate import InflateError, inflate_unet, temporal_output_layers

REPO = pathlib.Path(__file__).resolve().parent.parent
WORKFLOW = REPO / "workflows" / "text2video_3d_unet.json"
SHIPPED = models.MODEL_DIR
TOLERANCE = 1e-5  # float rounding only: 1x1-conv vs linear projections, other batch sizes

one_thread = pytest.fixture(autouse=True)(video_fixtures.single_thread)

# Small 2-D configs covering what the converter must handle: conv (1x1) and linear attention projections,
# attention in the first or the last levels, 1 or 2 layers per block, heads given by the legacy name or not.
CONFIGS = {
    "conv-projection": dict(block_out_channels=(16, 32, 32), layers_per_block=1, norm_num_groups=8,
                            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                            attention_head_dim=4, use_linear_projection=False),
    "linear-projection": dict(block_out_channels=(16, 32), layers_per_block=2, norm_num_groups=8,
                              down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                              up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                              attention_head_dim=(2, 4), use_linear_projection=True),  # head size 8 in both
}


def random_unet(seed: int = 0, **config) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    base = dict(sample_size=8, in_channels=4, out_channels=4, cross_attention_dim=24)
    return UNet2DConditionModel(**{**base, **config}).eval()


def per_frame_difference(unet2d, unet3d, embeds: torch.Tensor, frames: int = 3, seed: int = 0) -> float:
    """Max |3-D UNet(video) - 2-D UNet(frames folded into the batch)| for random latents; embeds (B, L, D)."""
    b = embeds.shape[0]
    c, s = unet2d.config.in_channels, unet2d.config.sample_size
    latents = torch.randn(b, c, frames, s, s, generator=torch.Generator().manual_seed(seed))  # (B, C, F, h, w)
    t = torch.tensor(601)
    with torch.no_grad():
        video = unet3d(latents, t, encoder_hidden_states=embeds).sample  # (B, C, F, h, w)
        folded = latents.permute(0, 2, 1, 3, 4).reshape(b * frames, c, s, s)  # (B*F, C, h, w)
        per_frame = unet2d(folded, t, encoder_hidden_states=embeds.repeat_interleave(frames, 0)).sample
    per_frame = per_frame.reshape(b, frames, c, s, s).permute(0, 2, 1, 3, 4)  # (B, C, F, h, w)
    assert video.shape == per_frame.shape
    return (video - per_frame).abs().max().item()


def random_embeds(unet2d, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 77, unet2d.config.cross_attention_dim, generator=torch.Generator().manual_seed(seed))


class held_text_time_embedding:
    """Within the block, the 2-D UNet's text-time embedding (add_embedding) outputs `value` whatever the prompt."""

    def __init__(self, unet2d, value: torch.Tensor):
        self.unet2d, self.value = unet2d, value

    def __enter__(self):
        self.hook = self.unet2d.add_embedding.register_forward_hook(lambda m, args, out: self.value.expand_as(out))

    def __exit__(self, *exc):
        self.hook.remove()


def save_shapes_architecture(folder: pathlib.Path, seed: int = 0) -> pathlib.Path:
    """A randomly initialised model with shapes-64's exact architecture and folder layout (train.save_pipeline)."""
    from vdgraph_shapes import components, train

    torch.manual_seed(seed)
    tokenizer = components.build_tokenizer()
    text_encoder = components.build_text_encoder(tokenizer)
    unet = components.build_unet(text_encoder.config.hidden_size)
    train.save_pipeline(folder, components.build_vae(), text_encoder, tokenizer, unet)
    return folder


@pytest.fixture(scope="module")
def shapes_source(tmp_path_factory) -> pathlib.Path:
    return save_shapes_architecture(tmp_path_factory.mktemp("shapes-2d") / "model")


@pytest.fixture(scope="module")
def shapes_3d(shapes_source, tmp_path_factory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("shapes-3d") / "model"
    inflate.build_3d_model(shapes_source, folder)
    return folder


def uncond_embeds(folder: pathlib.Path, prompts: tuple[str, ...] = ("",)) -> tuple[UNet2DConditionModel, torch.Tensor]:
    """The folder's 2-D UNet and (len(prompts), 77, D) embeddings of the prompts, as the video pack encodes them."""
    from transformers import AutoTokenizer, CLIPTextModel

    from vdgraph_video.ops.text import encode_text

    unet2d = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", use_safetensors=True).eval()
    text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    embeds = torch.cat([encode_text(text_encoder, tokenizer, p, torch.device("cpu")) for p in prompts])
    return unet2d, embeds


# -- the converter -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CONFIGS)
def test_inflated_unet_equals_the_2d_unet_on_folded_frames(name):
    unet2d = random_unet(**CONFIGS[name])
    unet3d = inflate_unet(unet2d)
    assert isinstance(unet3d, UNet3DConditionModel)
    assert unet3d.config.block_out_channels == unet2d.config.block_out_channels
    assert per_frame_difference(unet2d, unet3d, random_embeds(unet2d)) <= TOLERANCE


def test_every_temporal_layer_is_an_identity():
    unet3d = inflate_unet(random_unet(**CONFIGS["conv-projection"]))
    layers = temporal_output_layers(unet3d)
    # transformer_in + per resnet a temporal conv, per spatial transformer a temporal transformer
    assert any(n.startswith("transformer_in") for n, _ in layers) and len(layers) > 10
    assert all(not layer.weight.any() and not layer.bias.any() for _, layer in layers)


def test_the_2d_unet_is_left_unchanged():
    unet2d = random_unet(**CONFIGS["conv-projection"])
    before = {k: v.clone() for k, v in unet2d.state_dict().items()}
    unet3d = inflate_unet(unet2d)
    assert all(torch.equal(before[k], v) for k, v in unet2d.state_dict().items())
    assert unet3d.conv_in.weight.data_ptr() != unet2d.conv_in.weight.data_ptr(), "no shared storage"


def test_settings_the_3d_class_cannot_express_are_reported_together():
    unet2d = random_unet(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                         down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                         up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                         attention_head_dim=4,  # 4 heads: head sizes 4 and 8 differ between the levels
                         resnet_time_scale_shift="scale_shift", class_embed_type="timestep")
    with pytest.raises(InflateError) as info:
        inflate_unet(unet2d)
    text = str(info.value)
    assert len(info.value.problems) == 3, info.value.problems
    for setting in ("resnet_time_scale_shift='scale_shift'", "class_embed_type='timestep'", "attention_head_dim"):
        assert setting in text


def test_a_text_time_embedding_is_refused_unless_folded_and_folding_is_exact_for_its_prompt():
    from vdgraph_shapes.components import build_unet

    torch.manual_seed(0)
    unet2d = build_unet(cross_attention_dim=24).eval()  # shapes-64's architecture: addition_embed_type="text"
    with pytest.raises(InflateError, match="addition_embed_type='text'"):
        inflate_unet(unet2d)
    fixed = random_embeds(unet2d, batch=1, seed=7)  # stands for the empty prompt's embeddings
    with torch.no_grad():
        value = unet2d.add_embedding(fixed)[0]  # (time_embed_dim,)
    unet3d = inflate_unet(unet2d, text_time_embedding=value)
    assert per_frame_difference(unet2d, unet3d, fixed) <= TOLERANCE, "exact for the folded prompt"
    other = random_embeds(unet2d, batch=2, seed=8)
    with held_text_time_embedding(unet2d, value):
        assert per_frame_difference(unet2d, unet3d, other) <= TOLERANCE, "elsewhere exact up to that one term"
    assert per_frame_difference(unet2d, unet3d, other) > 1e-3, "and that term does matter for other prompts"


def test_shipped_shapes_64_inflates_exactly():
    unet2d, embeds = uncond_embeds(SHIPPED, ("", "a red circle on a blue background"))
    unet3d = inflate_unet(unet2d, text_time_embedding=inflate.text_time_embedding_of(
        unet2d, *_text_parts(SHIPPED), ""))
    empty, prompt = embeds[:1], embeds[1:]
    assert per_frame_difference(unet2d, unet3d, empty, frames=4) <= TOLERANCE
    with torch.no_grad():
        held = unet2d.add_embedding(empty)[0]
    with held_text_time_embedding(unet2d, held):
        assert per_frame_difference(unet2d, unet3d, prompt, frames=4) <= TOLERANCE


def _text_parts(folder: pathlib.Path):
    from transformers import AutoTokenizer, CLIPTextModel

    return (CLIPTextModel.from_pretrained(folder / "text_encoder", use_safetensors=True).eval(),
            AutoTokenizer.from_pretrained(folder / "tokenizer"))


# -- the built folder --------------------------------------------------------------------------------------------

def test_built_folder_is_a_text_to_video_sd_pipeline_of_safetensors(shapes_source, shapes_3d):
    from diffusers import TextToVideoSDPipeline

    index = json.loads((shapes_3d / "model_index.json").read_text())
    assert index["_class_name"] == "TextToVideoSDPipeline"
    assert index["unet"] == ["diffusers", "UNet3DConditionModel"]
    files = [p for p in shapes_3d.rglob("*") if p.is_file()]
    assert {p.parent.name for p in files if p.suffix == ".safetensors"} == {"unet", "vae", "text_encoder"}
    assert not [p for p in files if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".ckpt"}]
    record = json.loads((shapes_3d / "inflation.json").read_text())
    assert record["source_sha256"] == inflate.fingerprint(shapes_source)
    assert record["text_time_embedding_prompt"] == ""
    pipe = TextToVideoSDPipeline.from_pretrained(shapes_3d)  # loads with the stock diffusers pipeline
    assert isinstance(pipe.unet, UNet3DConditionModel)


def test_built_folder_loads_through_the_load_model_node_as_a_3d_unet(shapes_source, shapes_3d):
    loader = {"vdgraph": 1, "inputs": {"model": {"type": "str"}},
              "nodes": {"model": {"type": "video.load_model", "in": {"model": "inputs.model"}}},
              "outputs": {"unet": "model.unet"}}
    handle = vdgraph.Executor(device="cpu").run(loader, {"model": str(shapes_3d)})["unet"]
    assert isinstance(handle.module, UNet3DConditionModel) and handle.is_3d
    unet2d, empty = uncond_embeds(shapes_source)
    assert per_frame_difference(unet2d, handle.module, empty) <= TOLERANCE, "what was saved is what was checked"


# -- the cache ---------------------------------------------------------------------------------------------------

def _built(cache: pathlib.Path) -> list[str]:
    return sorted(p.name for p in (cache / "models").iterdir())


def test_cache_builds_once_and_reuses_the_folder(shapes_source, tmp_path, monkeypatch):
    monkeypatch.setenv("VDGRAPH_CACHE_DIR", str(tmp_path))
    builds = []
    real_build = inflate.build_3d_model
    monkeypatch.setattr(inflate, "build_3d_model", lambda *a, **k: builds.append(a) or real_build(*a, **k))
    first = inflate.cached_3d_model(shapes_source, "shapes-64-3d")
    second = inflate.cached_3d_model(shapes_source, "shapes-64-3d")
    assert first == second and len(builds) == 1
    key = inflate.fingerprint(shapes_source)[:12]
    assert _built(tmp_path) == [f"shapes-64-3d-{key}"], "no partial folder left behind"
    assert pathlib.Path(builds[0][1]).parent == tmp_path / "models", "built beside its final place, then renamed"


def test_a_failed_build_leaves_nothing_that_looks_built(shapes_source, tmp_path, monkeypatch):
    monkeypatch.setenv("VDGRAPH_CACHE_DIR", str(tmp_path))

    def half_build(src, dst, **kwargs):
        (pathlib.Path(dst) / "model_index.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(inflate, "build_3d_model", half_build)
    with pytest.raises(RuntimeError, match="disk full"):
        inflate.cached_3d_model(shapes_source, "shapes-64-3d")
    assert _built(tmp_path) == []


def test_a_lost_race_returns_the_winners_folder(shapes_source, tmp_path, monkeypatch):
    """Two first uses at once: both build; the one that renames second keeps the other's identical folder."""
    monkeypatch.setenv("VDGRAPH_CACHE_DIR", str(tmp_path))
    real_build = inflate.build_3d_model
    final = tmp_path / "models" / f"shapes-64-3d-{inflate.fingerprint(shapes_source)[:12]}"

    def build_while_another_finishes(src, dst, **kwargs):
        real_build(src, dst, **kwargs)
        real_build(src, final)  # the other process renames its folder in first

    monkeypatch.setattr(inflate, "build_3d_model", build_while_another_finishes)
    assert inflate.cached_3d_model(shapes_source, "shapes-64-3d") == str(final)
    assert _built(tmp_path) == [final.name]


def test_builtin_name_resolves_to_the_cached_3d_folder(shapes_source, tmp_path, monkeypatch):
    from vdgraph_video.loading import resolve_model

    monkeypatch.setenv("VDGRAPH_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(models, "MODEL_DIR", shapes_source)  # the random stand-in for the shipped weights
    with resolve_model("shapes-64-3d") as folder:
        assert pathlib.Path(folder).parent == tmp_path / "models"
        assert (pathlib.Path(folder) / "unet" / "diffusion_pytorch_model.safetensors").is_file()


def test_missing_shapes_64_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "MODEL_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="shapes-64 model is not at"):
        models.shapes_64_3d_path()


# -- the workflow ------------------------------------------------------------------------------------------------

def test_workflow_defaults_to_the_builtin_3d_model():
    workflow = vdgraph.load_workflow(WORKFLOW)
    defaults = {k: workflow.inputs[k].default for k in ("model", "frames", "height", "width", "steps", "guidance",
                                                          "sampler")}
    assert defaults == {"model": "shapes-64-3d", "frames": 8, "height": 64, "width": 64, "steps": 20,
                        "guidance": 5.0, "sampler": "ddim"}


SHORT = {"prompt": "a red circle on a blue background", "frames": 4, "steps": 4}


def _run_short(tmp_path) -> dict:
    return vdgraph.run(WORKFLOW, inputs={**SHORT, "output": str(tmp_path / "clip.mp4"),
                                                "contact_sheet": str(tmp_path / "sheet.png")},
                       output_dir=str(tmp_path), device="cpu")


def test_workflow_runs_on_shapes_64_3d_built_from_the_shapes_architecture(shapes_source, tmp_path, monkeypatch):
    monkeypatch.setenv("VDGRAPH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "MODEL_DIR", shapes_source)  # random weights, shapes-64's exact architecture
    result = _run_short(tmp_path)
    frames = result["frames"]
    assert frames.shape == (4, 64, 64, 3) and 0 <= frames.min() and frames.max() <= 1
    assert pathlib.Path(result["video"]).stat().st_size > 0


def test_workflow_runs_on_the_shipped_shapes_64_3d(tmp_path, monkeypatch):
    monkeypatch.setenv("VDGRAPH_CACHE_DIR", str(tmp_path / "cache"))
    result = _run_short(tmp_path)
    frames = result["frames"]
    assert frames.shape == (4, 64, 64, 3) and 0 <= frames.min() and frames.max() <= 1
    assert pathlib.Path(result["video"]).stat().st_size > 0
