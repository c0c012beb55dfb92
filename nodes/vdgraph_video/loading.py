"""Finding and loading a diffusers-format model folder: a local path, an fsspec URL, a hub id or a built-in name.

Built-in names come from the `vdgraph.models` entry-point group: each entry point loads to a path string (or a
zero-argument callable returning one), so a pack can ship or fetch its own weights. Weights load only from
safetensors files.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from importlib.metadata import entry_points

import fsspec
import torch
from fsspec.implementations.local import LocalFileSystem

from vdgraph_video.values import SchedulerConfig, TextEncoderHandle, UNetHandle, VAEHandle

MODEL_GROUP = "vdgraph.models"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
# What a hub download fetches: configs, tokenizer files and safetensors weights (never pickles).
HUB_PATTERNS = ["model_index.json", "*/config.json", "*/*.json", "*/*.txt", "*/*.safetensors", "*/*.model"]


class ModelNotFound(LookupError):
    pass


@contextlib.contextmanager
def _no_transformers_progress_bar() -> Iterator[None]:
    """transformers 5 draws a "Loading weights" bar for every local load, which only clutters a run's output;
    switched off for the load and restored afterwards (vdgraph reports progress itself)."""
    from transformers.utils import logging as transformers_logging

    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


def builtin_models() -> dict[str, object]:
    """Built-in model names -> entry points (group `vdgraph.models`)."""
    return {ep.name: ep for ep in entry_points(group=MODEL_GROUP)}


def _builtin_path(name: str) -> str | None:
    entry = builtin_models().get(name)
    if entry is None:
        return None
    target = entry.load()
    path = target() if callable(target) else target
    return os.fspath(path)


def _hub_folder(repo_id: str, variant: str = "") -> str:
    """The local snapshot of a hub model: from the cache if present, else downloaded (when online)."""
    patterns = HUB_PATTERNS if not variant else [p for p in HUB_PATTERNS if not p.endswith(".safetensors")] + [
        f"*/*.{variant}.safetensors"]
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub comes with diffusers
        raise ModelNotFound(f"{repo_id!r} looks like a hub id but huggingface_hub is not installed") from exc
    try:
        return snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True)
    except Exception:
        pass
    try:
        return snapshot_download(repo_id, allow_patterns=patterns)
    except Exception as exc:
        why = (str(exc).strip().splitlines() or [""])[0]
        raise ModelNotFound(
            f"model {repo_id!r} is not in the local Hugging Face cache and could not be downloaded "
            f"({type(exc).__name__}: {why}). Download it while online (`hf download {repo_id}`), or pass "
            "the path of a local diffusers-format folder"
        ) from exc


@contextlib.contextmanager
def resolve_model(model: str, search_dirs: tuple[str, ...] = (), variant: str = "") -> Iterator[str]:
    """A local folder for `model`; remote (fsspec) folders are copied to a temporary folder removed afterwards.

    Order: an existing local folder (as given, then relative to each of `search_dirs`); a URL with a protocol;
    a built-in name; a hub id ("owner/name").
    """
    candidates = [model] + [os.path.join(d, model) for d in search_dirs if d and not os.path.isabs(model)]
    for candidate in candidates:
        if os.path.isdir(candidate):
            yield candidate
            return
    if "://" in model:
        fs, path = fsspec.core.url_to_fs(model)
        if isinstance(fs, LocalFileSystem):
            if not os.path.isdir(path):
                raise ModelNotFound(f"no model folder at {model!r}")
            yield path
            return
        if not fs.isdir(path):
            raise ModelNotFound(f"no model folder at {model!r}")
        tmp = tempfile.mkdtemp(prefix="vdgraph-model-")
        try:
            fs.get(path.rstrip("/") + "/", tmp, recursive=True)
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    builtin = _builtin_path(model)
    if builtin is not None:
        if not os.path.isdir(builtin):
            raise ModelNotFound(f"built-in model {model!r} points to {builtin!r}, which is not a folder")
        yield builtin
        return
    if HUB_ID.match(model) and not os.path.exists(model):
        yield _hub_folder(model, variant)
        return
    known = ", ".join(sorted(builtin_models())) or "none installed"
    raise ModelNotFound(
        f"no model {model!r}: not a local folder, not a URL, not a built-in name ({known}) and not a hub id "
        "(owner/name)"
    )


def _check_folder(folder: str) -> None:
    missing = [sub for sub in SUBFOLDERS if not os.path.isdir(os.path.join(folder, sub))]
    if missing:
        raise ModelNotFound(f"{folder!r} is not a diffusers-format model folder: missing "
                            f"{', '.join(m + '/' for m in missing)}")


def load_components(folder: str, device: torch.device, dtype: torch.dtype, variant: str = ""):
    """(UNetHandle, VAEHandle, TextEncoderHandle, SchedulerConfig) from a diffusers-format folder.

    `variant` picks weight files named like `diffusion_pytorch_model.<variant>.safetensors` ("" the plain ones).
    The UNet class comes from unet/config.json's `_class_name` (UNet2DConditionModel or UNet3DConditionModel).
    Modules are put in eval mode on `device` in `dtype`; nothing mutates them later. Their parameters keep the
    requires_grad flag diffusers' own loading leaves them with (every op runs them under torch.no_grad): PyTorch
    picks a matmul kernel by that flag (a Linear on a non-contiguous 3-D input is folded into one mm when the
    weight requires grad, else a bmm), and the two round differently, so clearing it broke parity.
    """
    import diffusers
    from transformers import AutoTokenizer, CLIPTextModel

    _check_folder(folder)
    with open(os.path.join(folder, "unet", "config.json")) as f:
        unet_class = json.load(f).get("_class_name", "UNet2DConditionModel")
    if unet_class not in ("UNet2DConditionModel", "UNet3DConditionModel"):
        raise ModelNotFound(f"unsupported UNet class {unet_class!r}: expected UNet2DConditionModel or "
                            "UNet3DConditionModel")
    weights = {"use_safetensors": True, "variant": variant or None}
    unet = getattr(diffusers, unet_class).from_pretrained(folder, subfolder="unet", torch_dtype=dtype, **weights)
    vae = diffusers.AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype, **weights)
    with _no_transformers_progress_bar():
        text_encoder = CLIPTextModel.from_pretrained(os.path.join(folder, "text_encoder"), dtype=dtype, **weights)
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(folder, "tokenizer"))
    with open(os.path.join(folder, "scheduler", "scheduler_config.json")) as f:
        scheduler_config = json.load(f)
    modules = []
    for module in (unet, vae, text_encoder):
        module.to(device).eval()
        modules.append(module)
    class_name = scheduler_config.get("_class_name", "DDIMScheduler")
    config = {k: v for k, v in scheduler_config.items() if not k.startswith("_")}
    return (UNetHandle(unet), VAEHandle(vae), TextEncoderHandle(text_encoder, tokenizer),
            SchedulerConfig(class_name, config))
