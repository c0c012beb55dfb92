"""Inflating a 2-D text-to-image UNet into diffusers' UNet3DConditionModel (the ModelScope text-to-video layout).

This is the standard initialisation of video latent diffusion models (Make-A-Video, Video LDM, AnimateDiff):
every spatial weight of the 2-D UNet is copied into the matching module of the 3-D UNet, and every temporal
layer starts as an exact identity:

- `TemporalConvLayer` adds its output to its input, and diffusers zero-initialises its last convolution
  (`conv4[-1]`); we zero it again here so the guarantee does not rest on a library default;
- `TransformerTemporalModel` (`transformer_in` and every `temp_attentions.*`) adds `proj_out(...)` to its input,
  and diffusers does NOT zero-initialise `proj_out`; we zero its weight and bias.

So the 3-D UNet on latents (B, C, F, h, w) computes what the 2-D UNet computes on the B*F frames folded into its
batch, up to float rounding (the 2-D model's 1x1-convolution attention projections become the linear projections
the 3-D blocks always use). The temporal layers are untrained: frames of a video made with an inflated model agree
only through shared noise and conditioning, not through learnt motion.

    python -m vdgraph_shapes.inflate SRC_FOLDER DST_FOLDER      # a StableDiffusionPipeline folder -> TextToVideoSD

What the 3-D class cannot express is reported, every problem at once, as an `InflateError` naming the 2-D setting.
One setting has an explicit, inexact way out: `addition_embed_type="text"` (a pooled text embedding added to the
time embedding, which shapes-64 uses) can be frozen at the value of one fixed prompt and folded into the time
embedding's last bias (`text_time_embedding=`); the 3-D UNet then equals the 2-D UNet exactly only where the 2-D
UNet's text-time embedding has that value (e.g. the empty prompt of classifier-free guidance's unconditional half).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Mapping

import torch

CONVERTER_VERSION = 1
"""Bump when the converter's output changes for the same input: it is part of the built-in model's cache key."""

BLOCK_TYPES_2D_TO_3D: dict[str, str] = {
    "CrossAttnDownBlock2D": "CrossAttnDownBlock3D",
    "DownBlock2D": "DownBlock3D",
    "CrossAttnUpBlock2D": "CrossAttnUpBlock3D",
    "UpBlock2D": "UpBlock3D",
}

CACHE_ENV = "VDGRAPH_CACHE_DIR"
"""Environment variable naming the cache folder built models go under (in `models/`)."""

_COPIED = ("vae", "text_encoder", "tokenizer", "scheduler")
"""Components a 3-D folder takes from its 2-D source unchanged."""
_NOT_SAFETENSORS = (".bin", ".pt", ".pth", ".pkl", ".ckpt", ".msgpack", ".h5")

TEMPORAL_PREFIXES = ("transformer_in.", ".temp_convs.", ".temp_attentions.")
"""Parameter-name parts of the 3-D UNet's temporal layers (identities at initialisation; nothing is copied in)."""

# 2-D settings the 3-D class fixes, with the value it fixes them to. A 2-D model with another value computes
# something UNet3DConditionModel cannot.
FIXED_IN_3D: dict[str, object] = {
    "act_fn": "silu",  # the 3-D output block's activation is always SiLU
    "time_embedding_type": "positional",
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "time_embedding_act_fn": None,
    "timestep_post_act": None,
    "class_embed_type": None,
    "num_class_embeds": None,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "resnet_time_scale_shift": "default",
    "resnet_skip_time_act": False,
    "resnet_out_scale_factor": 1.0,
    "dual_cross_attention": False,
    "upcast_attention": False,
    "cross_attention_norm": None,
    "attention_type": "default",
    "center_input_sample": False,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "reverse_transformer_layers_per_block": None,
}


class InflateError(ValueError):
    """The 2-D UNet uses settings UNet3DConditionModel cannot express; `problems` lists every one."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("cannot inflate this 2-D UNet into a UNet3DConditionModel:\n  " + "\n  ".join(self.problems))


def _uniform(config: Mapping, key: str, problems: list[str]):
    """The config value as one scalar: per-block tuples are accepted only when every entry is the same."""
    value = config[key]
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            problems.append(f"{key}={list(value)}: UNet3DConditionModel takes one value for every block")
            return value[0]
        return value[0]
    return value


def _head_dim(unet2d, problems: list[str]) -> int | None:
    """The one attention head size of the 2-D UNet's spatial transformers (UNet3DConditionModel's
    `attention_head_dim` is a real head size, shared by every block)."""
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    sizes: dict[str, int] = {}
    for name, module in unet2d.named_modules():
        if isinstance(module, Transformer2DModel):
            sizes[name] = int(module.config.attention_head_dim)
            if module.config.num_layers != 1:
                problems.append(f"transformer_layers_per_block={module.config.num_layers} at {name}: "
                                "UNet3DConditionModel has one transformer layer per block")
    if not sizes:
        problems.append("the 2-D UNet has no spatial transformers (UNet3DConditionModel's mid block always has one)")
        return None
    if len(set(sizes.values())) != 1:
        found = ", ".join(f"{name}: {size}" for name, size in sizes.items())
        problems.append(f"attention_head_dim/num_attention_heads give head sizes that differ between blocks ({found}); "
                        "UNet3DConditionModel uses one head size (its attention_head_dim) in every block")
        return None
    return next(iter(sizes.values()))


def config_3d(unet2d, *, allow_text_time_embedding: bool = False) -> dict:
    """UNet3DConditionModel arguments that reproduce `unet2d`'s spatial computation; raises InflateError listing
    every 2-D setting the 3-D class cannot express."""
    c = unet2d.config
    problems: list[str] = []
    for key, expected in FIXED_IN_3D.items():
        value = c.get(key, expected)
        if value != expected:
            problems.append(f"{key}={value!r}: UNet3DConditionModel only has {key}={expected!r}")
    only_cross = c.get("only_cross_attention", False)
    if any(only_cross if isinstance(only_cross, (list, tuple)) else [only_cross]):
        problems.append(f"only_cross_attention={only_cross!r}: UNet3DConditionModel's spatial transformers always "
                        "have self-attention")
    if c.get("mid_block_only_cross_attention"):
        problems.append("mid_block_only_cross_attention=True: UNet3DConditionModel's mid block has self-attention")
    addition = c.get("addition_embed_type")
    if addition is not None and not (addition == "text" and allow_text_time_embedding):
        hint = (" (pass text_time_embedding= to freeze it at one prompt's value, which is exact only for that "
                "prompt, or use a 2-D model trained without it)" if addition == "text" else "")
        problems.append(f"addition_embed_type={addition!r}: UNet3DConditionModel has no addition embedding{hint}")
    time_dim = c.get("time_embedding_dim")
    if time_dim is not None and time_dim != 4 * c["block_out_channels"][0]:
        problems.append(f"time_embedding_dim={time_dim}: UNet3DConditionModel's is 4 x block_out_channels[0] = "
                        f"{4 * c['block_out_channels'][0]}")
    if c.get("norm_num_groups") is None:
        problems.append("norm_num_groups=None: UNet3DConditionModel's resnets need group norms")
    down = [BLOCK_TYPES_2D_TO_3D.get(t) for t in c["down_block_types"]]
    up = [BLOCK_TYPES_2D_TO_3D.get(t) for t in c["up_block_types"]]
    unknown = [t for t in (*c["down_block_types"], *c["up_block_types"]) if t not in BLOCK_TYPES_2D_TO_3D]
    if unknown:
        problems.append(f"block types {unknown}: no 3-D counterpart (known: {', '.join(BLOCK_TYPES_2D_TO_3D)})")
    layers = _uniform(c, "layers_per_block", problems)
    cross_dim = _uniform(c, "cross_attention_dim", problems)
    transformer_layers = c.get("transformer_layers_per_block", 1)
    if any(n != 1 for n in (transformer_layers if isinstance(transformer_layers, (list, tuple))
                            else [transformer_layers])):
        problems.append(f"transformer_layers_per_block={transformer_layers!r}: UNet3DConditionModel has one "
                        "transformer layer per block")
    head_dim = _head_dim(unet2d, problems)
    if problems:
        raise InflateError(problems)
    return {
        "sample_size": c["sample_size"],
        "in_channels": c["in_channels"],
        "out_channels": c["out_channels"],
        "down_block_types": tuple(down),
        "up_block_types": tuple(up),
        "block_out_channels": tuple(c["block_out_channels"]),
        "layers_per_block": layers,
        "downsample_padding": c["downsample_padding"],
        "mid_block_scale_factor": c["mid_block_scale_factor"],
        "act_fn": c["act_fn"],
        "norm_num_groups": c["norm_num_groups"],
        "norm_eps": c["norm_eps"],
        "cross_attention_dim": cross_dim,
        "attention_head_dim": head_dim,  # a real head size in the 3-D class (the 2-D one's legacy name means heads)
        "time_cond_proj_dim": c.get("time_cond_proj_dim"),
    }


def is_temporal(name: str) -> bool:
    """Whether a UNet3DConditionModel parameter belongs to a temporal layer."""
    return name.startswith(TEMPORAL_PREFIXES[0]) or any(part in name for part in TEMPORAL_PREFIXES[1:])


def temporal_output_layers(unet3d) -> list[tuple[str, torch.nn.Module]]:
    """(name, layer) of the last layer of every temporal layer: the last conv of each TemporalConvLayer and the
    `proj_out` of each TransformerTemporalModel. Both add their output to their input, so with these at zero the
    temporal layer is an exact identity."""
    from diffusers.models.resnet import TemporalConvLayer
    from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel

    layers = []
    for name, module in unet3d.named_modules():
        if isinstance(module, TemporalConvLayer):
            layers.append((f"{name}.conv4.{len(module.conv4) - 1}", module.conv4[-1]))
        elif isinstance(module, TransformerTemporalModel):
            layers.append((f"{name}.proj_out", module.proj_out))
    return layers


@torch.no_grad()
def zero_temporal_outputs(unet3d) -> None:
    """Make every temporal layer an exact identity (diffusers zeroes TemporalConvLayer's last conv itself, but not
    TransformerTemporalModel's proj_out; both are zeroed here so nothing rests on a library default)."""
    for _, layer in temporal_output_layers(unet3d):
        layer.weight.zero_()
        layer.bias.zero_()


def _spatial_weight(name: str, weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """The 2-D weight in the 3-D parameter's shape, or None when they do not correspond."""
    if weight.shape == target.shape:
        return weight
    # A Transformer2DModel with use_linear_projection=False projects with 1x1 convolutions (out, in, 1, 1); the 3-D
    # blocks always build linear projections (out, in): the same matrix.
    projection = name.endswith((".proj_in.weight", ".proj_out.weight"))
    if projection and weight.dim() == 4 and weight.shape[2:] == (1, 1) and weight.shape[:2] == target.shape:
        return weight[:, :, 0, 0]
    return None


@torch.no_grad()
def inflate_unet(unet2d, *, text_time_embedding: torch.Tensor | None = None):
    """A UNet3DConditionModel with `unet2d`'s spatial weights and identity temporal layers (float32, eval mode).

    `text_time_embedding` (time_embed_dim,) is needed only for a 2-D UNet with addition_embed_type="text": the
    3-D class has no text-time embedding, so this fixed value is folded into `time_embedding.linear_2.bias` and
    the result equals the 2-D UNet exactly only where its text-time embedding has this value. Without it such a
    UNet is an InflateError, as is every other 2-D setting the 3-D class cannot express.
    """
    from diffusers import UNet3DConditionModel

    addition = unet2d.config.get("addition_embed_type")
    config = config_3d(unet2d, allow_text_time_embedding=text_time_embedding is not None)
    if text_time_embedding is not None and addition != "text":
        raise InflateError([f"text_time_embedding was given but the 2-D UNet's addition_embed_type is {addition!r}, "
                            "not 'text': there is nothing to fold"])
    source = {k: v.detach().float().cpu() for k, v in unet2d.state_dict().items()}
    unet3d = UNet3DConditionModel(**config)
    zero_temporal_outputs(unet3d)
    target = unet3d.state_dict()
    weights: dict[str, torch.Tensor] = {}
    problems: list[str] = []
    for name, param in target.items():
        if is_temporal(name):
            continue
        if name not in source:
            problems.append(f"{name}: the 3-D UNet has it, the 2-D UNet does not")
            continue
        weight = _spatial_weight(name, source[name], param)
        if weight is None:
            problems.append(f"{name}: shape {tuple(source[name].shape)} in 2-D, {tuple(param.shape)} in 3-D")
            continue
        weights[name] = weight
    folded = [name for name in source if name.startswith("add_embedding.")] if addition == "text" else []
    unused = sorted(set(source) - set(weights) - set(folded))
    if unused:
        problems.append(f"2-D weights with no place in the 3-D UNet: {', '.join(unused[:8])}"
                        + (f" and {len(unused) - 8} more" if len(unused) > 8 else ""))
    if problems:
        raise InflateError(problems)
    if text_time_embedding is not None:
        bias = weights["time_embedding.linear_2.bias"]  # (time_embed_dim,)
        extra = text_time_embedding.detach().float().cpu().reshape(-1)
        assert extra.shape == bias.shape, (f"text_time_embedding has shape {tuple(text_time_embedding.shape)}, "
                                           f"the time embedding is {tuple(bias.shape)}")
        weights["time_embedding.linear_2.bias"] = bias + extra
    missing, unexpected = unet3d.load_state_dict(weights, strict=False)
    assert not unexpected, f"unexpected 3-D weights {unexpected}"
    assert all(is_temporal(name) for name in missing), f"spatial 3-D weights left uncopied: {missing}"
    unet3d.eval().requires_grad_(False)
    nonzero = [name for name, layer in temporal_output_layers(unet3d) if layer.weight.any() or layer.bias.any()]
    assert not nonzero, f"temporal output layers {nonzero} are not zero: those layers would not be identities"
    return unet3d


@torch.no_grad()
def text_time_embedding_of(unet2d, text_encoder, tokenizer, prompt: str = "") -> torch.Tensor:
    """(time_embed_dim,) the 2-D UNet's text-time embedding of `prompt`, encoded as the video pack encodes
    prompts (so folding it makes the 3-D UNet exact for that prompt in the workflows)."""
    from vdgraph_video.ops.text import encode_text

    embeds = encode_text(text_encoder, tokenizer, prompt, torch.device("cpu"))  # (1, 77, D)
    return unet2d.add_embedding(embeds.to(unet2d.dtype))[0]  # (time_embed_dim,)


def fingerprint(folder: str | os.PathLike) -> str:
    """sha256 (hex) of what a 3-D folder is built from (model_index.json and the component folders: configs,
    tokenizer, weights) and of the converter version; the key of the built folder."""
    root = pathlib.Path(folder)
    digest = hashlib.sha256(f"vdgraph_shapes.inflate v{CONVERTER_VERSION}\n".encode())
    used = ("model_index.json", "unet", *_COPIED)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] in used)
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def build_3d_model(src_folder: str | os.PathLike, dst_folder: str | os.PathLike,
                   text_time_prompt: str | None = "") -> dict:
    """Write a TextToVideoSDPipeline folder at `dst_folder` (which must not exist or be empty): the inflated
    unet/ and copies of the source's vae/, text_encoder/, tokenizer/ and scheduler/ (safetensors only).

    `text_time_prompt` is used only when the 2-D UNet has addition_embed_type="text": its text-time embedding is
    frozen at this prompt's value (default: the empty prompt, so classifier-free guidance's unconditional half is
    exact); None refuses such a UNet. Returns the record also written to inflation.json.
    """
    from diffusers import UNet2DConditionModel

    src, dst = pathlib.Path(src_folder), pathlib.Path(dst_folder)
    missing = [f"{sub}/" for sub in ("unet", *_COPIED) if not (src / sub).is_dir()]
    missing += [] if (src / "model_index.json").is_file() else ["model_index.json"]
    if missing:
        raise FileNotFoundError(f"{src} is not a diffusers text-to-image folder: missing {', '.join(missing)}")
    pickles = [str(p) for p in src.rglob("*") if p.suffix in _NOT_SAFETENSORS]
    if pickles:
        raise ValueError(f"{src} holds non-safetensors weights {pickles}; only safetensors are loaded")
    unet2d = UNet2DConditionModel.from_pretrained(src, subfolder="unet", use_safetensors=True,
                                                  torch_dtype=torch.float32).eval()
    folded = None
    if unet2d.config.get("addition_embed_type") == "text" and text_time_prompt is not None:
        from transformers import AutoTokenizer, CLIPTextModel

        text_encoder = CLIPTextModel.from_pretrained(src / "text_encoder", use_safetensors=True,
                                                     trust_remote_code=False).eval()
        tokenizer = AutoTokenizer.from_pretrained(src / "tokenizer", trust_remote_code=False)
        folded = text_time_embedding_of(unet2d, text_encoder, tokenizer, text_time_prompt)
    unet3d = inflate_unet(unet2d, text_time_embedding=folded)
    dst.mkdir(parents=True, exist_ok=True)
    assert not any(dst.iterdir()), f"{dst} is not empty"
    unet3d.save_pretrained(dst / "unet", safe_serialization=True)
    for sub in _COPIED:
        shutil.copytree(src / sub, dst / sub)
    with open(src / "model_index.json") as f:
        index = json.load(f)
    components = {k: index[k] for k in ("vae", "text_encoder", "tokenizer", "scheduler")}
    model_index = {"_class_name": "TextToVideoSDPipeline", "_diffusers_version": index.get("_diffusers_version"),
                   **components, "unet": ["diffusers", "UNet3DConditionModel"]}
    with open(dst / "model_index.json", "w") as f:
        json.dump(model_index, f, indent=2, sort_keys=True)
    record = {
        "source": str(src.resolve()),
        "source_sha256": fingerprint(src),
        "converter_version": CONVERTER_VERSION,
        "temporal_layers": "identity at initialisation, untrained",
        "text_time_embedding_prompt": text_time_prompt if folded is not None else None,
    }
    with open(dst / "inflation.json", "w") as f:
        json.dump(record, f, indent=2)
    return record


def cache_root() -> pathlib.Path:
    """Where built models live: $VDGRAPH_CACHE_DIR/models, else ~/.cache/vdgraph/models."""
    base = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "vdgraph")
    return pathlib.Path(base).expanduser() / "models"


def cached_3d_model(src_folder: str | os.PathLike, name: str) -> str:
    """The 3-D folder inflated from `src_folder`, built on first use; later calls return it at once.

    It lives at <cache_root()>/<name>-<first 12 hex digits of fingerprint(src_folder)>, so new source weights or a
    new converter version get a new folder. The build goes into a temporary sibling folder that is renamed into
    place when complete (a rename is atomic within a file system), so a concurrent caller sees either no folder or
    a whole one; when two first calls race, both build and the second rename fails harmlessly on the winner's
    identical folder.
    """
    src = pathlib.Path(src_folder)
    if not (src / "model_index.json").is_file():
        raise FileNotFoundError(f"no 2-D model folder at {src} to inflate {name!r} from")
    final = cache_root() / f"{name}-{fingerprint(src)[:12]}"
    if (final / "model_index.json").is_file():
        return str(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = pathlib.Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        build_3d_model(src, partial)
        try:
            os.rename(partial, final)
        except OSError:
            if not (final / "model_index.json").is_file():
                raise  # not a lost race: a real failure
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # gone already after a successful rename
    return str(final)


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description="Inflate a 2-D text-to-image model folder into a TextToVideoSD one.")
    p.add_argument("src", help="a diffusers StableDiffusionPipeline-layout folder")
    p.add_argument("dst", help="the folder to write (must not exist or be empty)")
    args = p.parse_args(argv)
    record = build_3d_model(args.src, args.dst)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
