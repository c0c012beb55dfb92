"""Single-file checkpoints: one .safetensors in the original Stable Diffusion key layout (SD 1.x, SD 2.x, SDXL).

Loaded through diffusers' own single-file loading (`StableDiffusionPipeline.from_single_file` /
`StableDiffusionXLPipeline.from_single_file`) with `config=` a diffusers-format configuration folder and
`local_files_only=True`: nothing is fetched from the hub while loading. The architecture is recognised from the
key layout (the header is read, no tensor), and picks one of the configuration folders shipped in
`vdgraph_video/configs/` (written by hand from the published architectures; a test checks each against the
published parameter counts):

    sd15       SD 1.x: 512 px, epsilon prediction, CLIP ViT-L/14 text encoder, PNDM schedule
    sd21       SD 2.x: 768 px, v-prediction, OpenCLIP ViT-H/14 text encoder (23 layers), DDIM schedule
    sdxl-base  SDXL base 1.0: 1024 px, CLIP ViT-L/14 + OpenCLIP ViT-bigG/14, Euler schedule

A checkpoint of another shape (an SD 2.x base model with epsilon prediction, a fine-tune with other sizes) takes
its own configuration folder (`config`: any diffusers-format folder of that model; only its JSON files are read).

The tokenizer is not shipped: CLIP's BPE vocabulary (vocab.json 1.6 MB + merges.txt 0.5 MB) is the same for
all three architectures (only the padding token differs, which the shipped tokenizer_config.json sets). It comes
from, in order: the `tokenizer` folder given; the config folder's tokenizer/ when it holds vocabulary files; the
local Hugging Face cache of openai/clip-vit-large-patch14 (`hf download openai/clip-vit-large-patch14 vocab.json
merges.txt` once, while online). Without any, loading stops and says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

import torch

from vdgraph.errors import short_repr

from vdgraph_video.loading import ModelFolderError, ModelNotFound, _loading, _no_transformers_progress_bar, finite
from vdgraph_video.values import SchedulerConfig

CLIP_TOKENIZER_REPO = "openai/clip-vit-large-patch14"
VOCABULARY = ("vocab.json", "merges.txt")


@dataclasses.dataclass(frozen=True)
class Architecture:
    name: str
    config: str  # folder under vdgraph_video/configs
    pipeline: str  # the diffusers pipeline class whose from_single_file loads it
    text_key: str  # a key only this architecture's text encoder has
    tokenizers: tuple[str, ...] = ("tokenizer",)


ARCHITECTURES = {
    "sd1": Architecture("SD 1.x", "sd15", "StableDiffusionPipeline",
                        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"),
    "sd2": Architecture("SD 2.x", "sd21", "StableDiffusionPipeline", "cond_stage_model.model.token_embedding.weight"),
    "sdxl": Architecture("SDXL base", "sdxl-base", "StableDiffusionXLPipeline",
                         "conditioner.embedders.1.model.token_embedding.weight", ("tokenizer", "tokenizer_2")),
}
UNET_KEY = "model.diffusion_model.input_blocks.0.0.weight"
VAE_KEY = "first_stage_model.decoder.conv_in.weight"
SUPPORTED = "SD 1.x (CLIP text encoder under cond_stage_model.transformer), SD 2.x (OpenCLIP under " \
            "cond_stage_model.model) and SDXL base (conditioner.embedders.0 and .1)"


class CheckpointError(ModelFolderError):
    """A single-file checkpoint vdgraph cannot load: not safetensors, an unknown key layout, missing weights."""


def shipped_config(architecture: str) -> str:
    """The folder of the configuration shipped for an architecture key of ARCHITECTURES."""
    return str(files("vdgraph_video") / "configs" / ARCHITECTURES[architecture].config)


def is_checkpoint_file(path: str) -> bool:
    return path.lower().endswith(".safetensors") and os.path.isfile(path)


def detect_architecture(path: str) -> str:
    """The ARCHITECTURES key of a single-file checkpoint, from its key layout (only the header is read).

    CheckpointError naming the supported layouts when the keys match none of them."""
    from safetensors import SafetensorError, safe_open

    if not path.lower().endswith(".safetensors"):
        raise CheckpointError(f"{path!r} is not a .safetensors file; vdgraph loads single-file checkpoints only "
                              "from safetensors (a .ckpt is a pickle, and loading a pickle can run code)")
    try:
        with safe_open(path, framework="pt") as handle:
            keys = set(handle.keys())
            in_channels = handle.get_slice(UNET_KEY).get_shape()[1] if UNET_KEY in keys else None
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read {path!r} as a safetensors file: {exc}") from exc
    found = [key for key, arch in ARCHITECTURES.items() if arch.text_key in keys]
    if UNET_KEY not in keys or VAE_KEY not in keys or len(found) != 1:
        heads = sorted({".".join(k.split(".")[:2]) for k in keys})[:6]
        raise CheckpointError(
            f"{path!r} is not a single-file checkpoint vdgraph recognises: its keys (starting with "
            f"{', '.join(heads) or 'nothing'}) match none of the supported layouts, {SUPPORTED}, each with the UNet "
            "under model.diffusion_model and the VAE under first_stage_model. A diffusers-format folder is loaded "
            "as a folder; a ControlNet or LoRA file goes to video.load_controlnet or video.apply_lora")
    if in_channels != 4:
        raise CheckpointError(f"{path!r} is an {ARCHITECTURES[found[0]].name} UNet with {in_channels} input channels "
                              "(an inpainting or depth model); the video pack denoises 4-channel latents")
    return found[0]


def _vocabulary(folder: str) -> bool:
    return all(os.path.isfile(os.path.join(folder, name)) for name in VOCABULARY) or \
        os.path.isfile(os.path.join(folder, "tokenizer.json"))


def _hub_vocabulary() -> str | None:
    """The cached folder of openai/clip-vit-large-patch14's vocabulary files, or None (never downloads)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with diffusers
        return None
    found = [try_to_load_from_cache(CLIP_TOKENIZER_REPO, name) for name in VOCABULARY]
    if all(isinstance(path, str) for path in found):
        return os.path.dirname(found[0])
    return None


def load_tokenizers(architecture: str, config: str, tokenizer: str = "") -> dict[str, Any]:
    """{"tokenizer": ..., ["tokenizer_2": ...]} for a checkpoint, from the sources the module docstring lists."""
    from transformers import AutoTokenizer, CLIPTokenizer

    arch = ARCHITECTURES[architecture]
    if tokenizer:
        if not os.path.isdir(tokenizer) or not _vocabulary(tokenizer):
            raise ModelNotFound(f"tokenizer {tokenizer!r} is not a folder holding a tokenizer (vocab.json and "
                                "merges.txt, or tokenizer.json)")
        source, kind = tokenizer, "given"
    elif _vocabulary(os.path.join(config, "tokenizer")):
        source, kind = os.path.join(config, "tokenizer"), "config"
    else:
        source, kind = _hub_vocabulary(), "hub"
        if source is None:
            raise ModelNotFound(
                f"an {arch.name} checkpoint needs the CLIP tokenizer (vocab.json and merges.txt), which vdgraph does "
                f"not ship: download it once while online (`hf download {CLIP_TOKENIZER_REPO} vocab.json "
                "merges.txt`; it is then found in the Hugging Face cache), or give video.load_model's tokenizer "
                "input a folder holding those files")
    loaded = {}
    for name in arch.tokenizers:
        settings = _tokenizer_settings(config, name)
        with _loading(source):
            if kind != "hub" and os.path.isfile(os.path.join(source, "tokenizer_config.json")):
                # the folder's own settings, but the padding token of this tokenizer slot (SD 2 and SDXL's
                # second encoder pad with "!")
                pad = {"pad_token": settings["pad_token"]} if "pad_token" in settings else {}
                loaded[name] = AutoTokenizer.from_pretrained(source, trust_remote_code=False, **pad)
            else:
                loaded[name] = CLIPTokenizer(*(os.path.join(source, v) for v in VOCABULARY), **settings)
    return loaded


def _tokenizer_settings(config: str, name: str) -> dict[str, Any]:
    import json

    path = os.path.join(config, name, "tokenizer_config.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        settings = json.load(handle)
    return {k: v for k, v in settings.items() if k in ("pad_token", "bos_token", "eos_token", "unk_token",
                                                       "model_max_length", "do_lower_case", "errors")}


@contextlib.contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """diffusers' single-file loading draws a "Loading pipeline components" bar and warns about casting each
    module; vdgraph reports progress itself, so both are off for the load and restored afterwards (errors still
    raise)."""
    from diffusers.utils import logging as diffusers_logging

    bars, level = diffusers_logging.is_progress_bar_enabled(), diffusers_logging.get_verbosity()
    diffusers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)
        if bars:
            diffusers_logging.enable_progress_bar()


def load_single_file(path: str, device: torch.device, dtype: torch.dtype, config: str = "",
                     tokenizer: str = "") -> dict[str, Any]:
    """The diffusers modules of a single-file checkpoint: {"unet", "vae", "text_encoder", "tokenizer",
    "scheduler_config"} (SDXL adds "text_encoder_2" and "tokenizer_2"), on `device` in `dtype`, in eval mode.

    `config` is a diffusers-format folder describing the model ("" takes the one shipped for the recognised
    architecture); `tokenizer` a folder with the tokenizer files ("" looks where the module docstring says)."""
    import diffusers

    from vdgraph_video.loading import check_config_folder

    architecture = detect_architecture(path)
    arch = ARCHITECTURES[architecture]
    config = config or shipped_config(architecture)
    configs = check_config_folder(config)
    tokenizers = load_tokenizers(architecture, config, tokenizer)
    pipeline_class = getattr(diffusers, arch.pipeline)
    try:
        with _loading(path), _no_transformers_progress_bar(), _quiet_diffusers():
            extra = {"requires_safety_checker": False} if arch.pipeline == "StableDiffusionPipeline" else {}
            pipeline = pipeline_class.from_single_file(path, config=config, local_files_only=True,
                                                       torch_dtype=dtype, **tokenizers, **extra)
    except ModelFolderError as exc:
        # diffusers' conversion indexes the weights it needs (a KeyError), and a weight it never fills stays on
        # the meta device, whose move fails ("Cannot copy out of meta tensor"): both mean a weight is missing
        cause = exc.__cause__
        if isinstance(cause, KeyError) or (isinstance(cause, NotImplementedError) and "meta tensor" in str(cause)):
            which = f"the weight {short_repr(cause.args[0])}" if isinstance(cause, KeyError) and cause.args \
                else "weights"
            raise CheckpointError(f"{path!r} lacks {which} of the model the configuration {config!r} describes: "
                                  "the file is incomplete (cut short or edited), or the checkpoint and the "
                                  "configuration are of different models; give the complete file, or the config "
                                  "folder of this checkpoint's model") from exc
        raise
    modules = {"unet": pipeline.unet, "vae": pipeline.vae, "text_encoder": pipeline.text_encoder}
    if architecture == "sdxl":
        modules["text_encoder_2"] = pipeline.text_encoder_2
    for name, module in modules.items():
        empty = [n for n, p in module.named_parameters() if p.is_meta]
        if empty:
            raise CheckpointError(f"{path!r} lacks {len(empty)} weight(s) of the {name} the configuration {config!r} "
                                  f"describes (first: {short_repr(empty[0])}): the checkpoint and the configuration "
                                  "are of different models; give the config folder of this checkpoint's model")
        finite(module.to(device).eval(), f"{path} ({name})")
    scheduler = configs["scheduler"]
    return {**modules, **tokenizers,
            "scheduler_config": SchedulerConfig(scheduler.get("_class_name", "DDIMScheduler"),
                                                {k: v for k, v in scheduler.items() if not k.startswith("_")})}


def load_checkpoint_components(path: str, device: torch.device, dtype: torch.dtype, config: str = "",
                               tokenizer: str = ""):
    """(UNet value, VAEHandle, text-encoder value, SchedulerConfig) of a checkpoint, as `loading.load_components`
    gives them for a folder: plain handles for SD 1.x / 2.x, SDXL's two-encoder values for SDXL."""
    from vdgraph_video.loading import model_values

    architecture = detect_architecture(path)
    loaded = load_single_file(path, device, dtype, config, tokenizer)
    names = ARCHITECTURES[architecture].tokenizers  # ("tokenizer",) or ("tokenizer", "tokenizer_2")
    texts = [loaded["text_encoder" + name.removeprefix("tokenizer")] for name in names]
    return model_values(loaded["unet"], loaded["vae"], texts, [loaded[name] for name in names],
                        loaded["scheduler_config"], config or shipped_config(architecture))
