"""Finding and loading a diffusers-format model folder: a local path, an fsspec URL, a hub id or a built-in name.

Built-in names come from the `vdgraph.models` entry-point group: each entry point loads to a path string (or a
zero-argument callable returning one), so a pack can ship or fetch its own weights.

A model folder is data, never code. Before anything is loaded, `check_model_folder` reads every component config
and refuses a folder whose configs name custom code (`auto_map`, a `_class_name` outside the supported diffusers
classes, a `tokenizer_class` that is not a transformers class) or whose weights are only pickles (.bin, .pt,
.ckpt: unpickling can run code); transformers is called with `trust_remote_code=False` all the same, so it never
asks on stdin whether to run a folder's code. Weights load only from safetensors files.
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

from vdgraph.errors import short_repr
from vdgraph.models_folder import find_model, model_roots
from vdgraph.node import Input, Invalid

from vdgraph_video.values import SchedulerConfig, TextEncoderHandle, UNetHandle, VAEHandle

MODEL_GROUP = "vdgraph.models"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
# What a hub download fetches: configs, tokenizer files and safetensors weights (never pickles).
HUB_PATTERNS = ["model_index.json", "*/config.json", "*/*.json", "*/*.txt", "*/*.safetensors", "*/*.model"]


# The classes a component config may name; anything else would make the library build a class we do not support.
SUPPORTED_CLASSES = {"unet": ("UNet2DConditionModel", "UNet3DConditionModel"), "vae": ("AutoencoderKL",)}
# The config each component must have (the tokenizer's is optional: a tokenizer.json alone is enough).
COMPONENT_CONFIGS = {"unet": "config.json", "vae": "config.json", "text_encoder": "config.json",
                     "tokenizer": "tokenizer_config.json", "scheduler": "scheduler_config.json"}
WEIGHTED = ("unet", "vae", "text_encoder", "text_encoder_2")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
MAX_TRAIN_TIMESTEPS = 100_000
"""The largest training schedule a scheduler config may declare (diffusers builds it in a Python loop)."""


class ModelNotFound(LookupError):
    pass


class ModelFolderError(ValueError):
    """A model folder vdgraph refuses to load: a malformed config, custom code, pickle-only weights."""


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


VARIANT_NAME = re.compile(r"^[A-Za-z0-9_-]*$")


def variant_input() -> Input:
    """The `variant` port every loader has: it picks weight files named like `*.<variant>.safetensors`."""
    return Input("variant", str, default="", doc="weights variant, e.g. 'fp16' for *.fp16.safetensors ('': plain)")


def variant_problems(known) -> Iterator[Invalid]:
    """A variant is part of weight file names: letters, digits, '_' and '-' only (no '/', '.', spaces)."""
    (variant,) = known.take("variant")
    if variant is not None and not VARIANT_NAME.match(variant):
        yield Invalid("variant", f"{variant!r} is not a weights variant name",
                      "use letters, digits, '_' or '-' (e.g. fp16), or '' for the plain weights")


@contextlib.contextmanager
def resolve_model(model: str, search_dirs: tuple[str, ...] = (), variant: str = "",
                  kind: str = "checkpoints") -> Iterator[str]:
    """A local folder for `model`; remote (fsspec) folders are copied to a temporary folder removed afterwards.

    Order: an existing local folder (as given, then relative to each of `search_dirs`); a URL with a protocol;
    a built-in name; a name in the models folder's `kind` folder (`vdgraph.models_folder`: there it may be a
    single .safetensors file, yielded as it is for the caller to load); a hub id ("owner/name"). An empty name is
    an error, not the first search folder.
    """
    if not model.strip():
        known = ", ".join(sorted(builtin_models())) or "none installed"
        raise ModelNotFound(f"the model input is empty: give a model folder, an fsspec URL, a built-in model name "
                            f"({known}) or a hub id (owner/name)")
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
    named = find_model(model, kind)
    if named is not None:
        yield named
        return
    if HUB_ID.match(model) and not os.path.exists(model):
        yield _hub_folder(model, variant)
        return
    known = ", ".join(sorted(builtin_models())) or "none installed"
    raise ModelNotFound(
        f"no model {model!r}: not a local folder, not a URL, not a built-in name ({known}), not in the models "
        f"folder ({kind}/ of {os.pathsep.join(model_roots())}; `vdgraph models` lists them) and not a hub id "
        "(owner/name)"
    )


def subfolders(folder: str) -> tuple[str, ...]:
    """The component subfolders of a text-to-image model folder: SUBFOLDERS, plus text_encoder_2/ and
    tokenizer_2/ for an SDXL folder (`vdgraph_video.loading_sdxl`)."""
    from vdgraph_video.loading_sdxl import SECOND_TEXT, is_sdxl_folder

    return SUBFOLDERS + SECOND_TEXT if is_sdxl_folder(folder) else SUBFOLDERS


def local_model(model: str, search_dirs: tuple[str, ...] = (), kind: str = "checkpoints") -> str | None:
    """The local folder or file `resolve_model` (or a single-file checkpoint path) gives for `model`, found the
    same way but without fetching or copying anything, or None when it is not local (a remote URL, a hub id): what
    a loader's cache key hashes (`Node.locate_file`)."""
    if not model.strip():
        return None
    candidates = [model] + [os.path.join(d, model) for d in search_dirs if d and not os.path.isabs(model)]
    for candidate in candidates:
        if os.path.isdir(candidate) or (os.path.isfile(candidate) and candidate.lower().endswith(".safetensors")):
            return candidate
    if "://" in model:
        try:
            fs, path = fsspec.core.url_to_fs(model)
        except (ImportError, ValueError):
            return None
        return path if isinstance(fs, LocalFileSystem) else None
    try:
        builtin = _builtin_path(model)
    except Exception:  # a broken entry point is reported when the node runs
        return None
    return builtin if builtin is not None else find_model(model, kind)


def check_folder(folder: str) -> None:
    """Refuse a folder that lacks a diffusers component subfolder (cheap: looks at names only)."""
    from vdgraph_video.loading_svd import check_svd_folder_names, is_svd_folder

    if is_svd_folder(folder):
        return check_svd_folder_names(folder)
    missing = [sub for sub in subfolders(folder) if not os.path.isdir(os.path.join(folder, sub))]
    if missing:
        raise ModelNotFound(f"{folder!r} is not a diffusers-format model folder: missing "
                            f"{', '.join(m + '/' for m in missing)}{_what_it_is(folder)}")


_SINGLE_MODELS = {"MotionAdapter": "a motion adapter: give it to video.load_motion_adapter (workflow input "
                                   "'motion_adapter')",
                  "ControlNetModel": "a ControlNet: give it to video.load_controlnet (workflow input 'controlnet')"}


def _what_it_is(folder: str) -> str:
    """'; it is a motion adapter: ...' when the folder holds a single model that goes elsewhere, else ''."""
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
            name = json.load(handle).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return ""
    return f"; it is {_SINGLE_MODELS[name]}" if name in _SINGLE_MODELS else ""


def read_config(path: str) -> dict:
    """A component's JSON config; a malformed one is an error naming the file, the line and the column."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFolderError(f"cannot read {path}: {exc}") from exc
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelFolderError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
                               ) from exc
    except RecursionError as exc:
        raise ModelFolderError(f"{path} is not a usable config: its JSON is nested too deeply") from exc
    if not isinstance(config, dict):
        raise ModelFolderError(f"{path} must hold a JSON object, not {type(config).__name__}")
    return config


def check_config_folder(folder: str) -> dict[str, dict]:
    """`check_model_folder` for a configuration folder (a single-file checkpoint's): the same checks of every
    config, no weights needed."""
    return check_model_folder(folder, weights=False)


def read_component_configs(folder: str, subfolders, config_names: dict[str, str],
                           supported: dict[str, tuple[str, ...]], kind: str, optional=()) -> dict[str, dict]:
    """The config of each component subfolder, by subfolder, after refusing what would run code or is not ours:
    every config file in a component (`config.json`, `*_config.json`) is a JSON object without `auto_map`; the
    expected one is there (except for the `optional` subfolders); the `_class_name` of each `supported` component
    is one of its classes. `kind` names the folder layout in messages."""
    configs: dict[str, dict] = {}
    for sub in subfolders:
        component = os.path.join(folder, sub)
        expected = config_names[sub]
        if sub not in optional and not os.path.isfile(os.path.join(component, expected)):
            raise ModelFolderError(f"{os.path.join(component, expected)} is missing: every {sub}/ of a {kind} "
                                   "folder has one")
        for name in sorted(os.listdir(component)):
            if name == "config.json" or name.endswith("_config.json"):
                path = os.path.join(component, name)
                config = read_config(path)
                _refuse_custom_code(path, config)
                if name == expected:
                    configs[sub] = config
    for sub, allowed in supported.items():
        class_name = configs[sub].get("_class_name", allowed[0])
        if class_name not in allowed:
            raise ModelFolderError(f"{os.path.join(folder, sub, config_names[sub])}: _class_name "
                                   f"{short_repr(class_name)} is not supported: expected " + " or ".join(allowed))
    return configs


def single_model_folder(folder: str, subfolder: str, class_name: str) -> str:
    """The folder of one diffusers model saved on its own (a ControlNetModel, a MotionAdapter): `folder` itself or
    its `<subfolder>/` (inside a pipeline folder), checked by check_model_folder's rules: its config.json is a JSON
    object without `auto_map` naming `class_name` (or no class), and its weights are safetensors."""
    for candidate in (folder, os.path.join(folder, subfolder)):
        if os.path.isfile(os.path.join(candidate, "config.json")):
            break
    else:
        raise ModelNotFound(f"{folder!r} is not a diffusers {class_name} folder: no config.json in it or in its "
                            f"{subfolder}/ subfolder")
    path = os.path.join(candidate, "config.json")
    config = read_config(path)
    _refuse_custom_code(path, config)
    found = config.get("_class_name", class_name)
    if found != class_name:
        raise ModelFolderError(f"{path}: _class_name {short_repr(found)} is not supported: expected {class_name}")
    _check_weights(candidate)
    return candidate


def check_model_folder(folder: str, weights: bool = True) -> dict[str, dict]:
    """Refuse a folder that would make the libraries run code from it; return the component configs by subfolder.

    Checks, before anything is built: the five subfolders exist (seven for SDXL: text_encoder_2/, tokenizer_2/);
    every config in them (`config.json`, `*_config.json`) is a JSON object without `auto_map` (which points
    transformers at Python files in the folder); the UNet and VAE `_class_name` are classes we support; each
    tokenizer's `tokenizer_class` is a transformers class; the scheduler's `num_train_timesteps` is at most
    MAX_TRAIN_TIMESTEPS; the UNet, VAE and text encoders have safetensors weights (a folder with only pickles is
    refused, and so is a shard index naming a shard that is not a .safetensors file).

    A Stable Video Diffusion folder (`vdgraph_video.loading_svd`) is checked by the same rules for its own
    components (unet, vae, image_encoder, feature_extractor, scheduler).
    """
    from vdgraph_video.loading_svd import check_svd_folder, is_svd_folder

    if is_svd_folder(folder):
        return check_svd_folder(folder)
    from vdgraph_video.loading_sdxl import SECOND_TEXT_CONFIGS

    check_folder(folder)
    subs = subfolders(folder)
    configs = read_component_configs(folder, subs, {**COMPONENT_CONFIGS, **SECOND_TEXT_CONFIGS}, SUPPORTED_CLASSES,
                                     "diffusers-format", optional=("tokenizer", "tokenizer_2"))
    check_scheduler_timesteps(folder, configs["scheduler"])
    for tokenizer in (sub for sub in subs if sub.startswith("tokenizer")):
        tokenizer_class = configs.get(tokenizer, {}).get("tokenizer_class")
        if tokenizer_class is not None and not _is_transformers_tokenizer(tokenizer_class):
            raise ModelFolderError(f"{os.path.join(folder, tokenizer, 'tokenizer_config.json')}: tokenizer_class "
                                   f"{short_repr(tokenizer_class)} is not a tokenizer class of transformers; vdgraph "
                                   "loads no tokenizer code from a model folder")
    for sub in (sub for sub in subs if sub in WEIGHTED) if weights else ():
        _check_weights(os.path.join(folder, sub))
    return configs


def check_scheduler_timesteps(folder: str, config: dict) -> None:
    """Refuse a scheduler config whose training schedule is not a whole number from 1 to MAX_TRAIN_TIMESTEPS."""
    timesteps = config.get("num_train_timesteps", 1000)
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or not 1 <= timesteps <= MAX_TRAIN_TIMESTEPS:
        raise ModelFolderError(f"{os.path.join(folder, 'scheduler', 'scheduler_config.json')}: num_train_timesteps "
                               f"{short_repr(timesteps)} is not a whole number from 1 to {MAX_TRAIN_TIMESTEPS:,} "
                               "(models "
                               "are trained with about 1,000; a schedule is built step by step, so a huge one would "
                               "hang the run)")


def _refuse_custom_code(path: str, config: dict) -> None:
    if config.get("auto_map"):
        raise ModelFolderError(
            f"{path}: 'auto_map' names custom code ({short_repr(config['auto_map'])}); vdgraph never runs code from a "
            "model folder: use a model whose components are standard diffusers and transformers classes")


def _is_transformers_tokenizer(name: object) -> bool:
    if not isinstance(name, str) or not name.isidentifier():
        return False
    import transformers

    for candidate in (name, name.removesuffix("Fast")):
        try:
            cls = getattr(transformers, candidate)
        except Exception:  # transformers' lazy module raises more than AttributeError for some names
            continue
        if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedTokenizerBase):
            return True
    return False


def _check_weights(component: str) -> None:
    names = os.listdir(component)
    for name in sorted(names):
        if name.endswith(".safetensors.index.json"):
            _check_shard_index(os.path.join(component, name))
    if any(name.endswith(".safetensors") for name in names):
        return
    pickles = sorted(name for name in names if name.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise ModelFolderError(
            f"{component} has only pickle weights ({', '.join(pickles)}); vdgraph loads weights only from "
            ".safetensors files, because loading a pickle can run code: convert them to safetensors first")
    raise ModelFolderError(f"{component} has no weights: expected a .safetensors file")


def _check_shard_index(path: str) -> None:
    """A sharded checkpoint's index names the files its weights are in; the libraries load whatever it names, and
    a shard that is not a .safetensors file (`pytorch_model-00001.bin`) is unpickled: refuse such an index."""
    weight_map = read_config(path).get("weight_map")
    if not isinstance(weight_map, dict):
        raise ModelFolderError(f"{path}: 'weight_map' must map weight names to .safetensors shard files")
    for shard in sorted({str(v) for v in weight_map.values()}):
        if not shard.endswith(".safetensors") or "/" in shard or "\\" in shard:
            raise ModelFolderError(
                f"{path} names the shard {short_repr(shard)}, which is not a .safetensors file beside it; vdgraph "
                "loads weights only from .safetensors files, because loading a pickle can run code")



def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


@contextlib.contextmanager
def _loading(path: str) -> Iterator[None]:
    """Name the component when the library fails to load it (the library's exception stays chained)."""
    try:
        yield
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ModelFolderError(f"cannot load {path}: {type(exc).__name__}: {_cut(first, 300)}") from exc


def finite(tensors, where: str) -> None:
    """Refuse weights that hold NaN or Inf (ModelFolderError naming `where`, the weight and how many): such a file
    loads without complaint and renders black or noise frames with no hint why.
    `tensors` is a module (its state dict: the parameters and the buffers its file fills, such as a motion module's
    positional table) or a name -> tensor mapping (a LoRA file). A tensor's sum is finite when all of it is, and a
    sum is one fast pass (0.2-0.4 s for an SD 1.5 UNet on two CPU cores, against 8 s for an element-wise
    isfinite); a sum that is not finite, which large finite half-precision weights can also give, is settled
    element by element."""
    named = tensors.state_dict(keep_vars=True).items() if isinstance(tensors, torch.nn.Module) else tensors.items()
    floats = [(name, t.detach()) for name, t in named
              if isinstance(t, torch.Tensor) and t.is_floating_point() and not t.is_meta]
    by_device: dict[torch.device, list[torch.Tensor]] = {}  # one sync per device, not one per tensor
    for _, values in floats:
        by_device.setdefault(values.device, []).append(_widened(values).sum().float().reshape(1))
    if all(bool(torch.isfinite(torch.cat(sums)).all()) for sums in by_device.values()):
        return
    for name, values in floats:
        bad = int((~torch.isfinite(_widened(values))).sum())
        if bad:
            narrow = (f" (or its values exceed {values.dtype}'s range: load it in float32 or bfloat16)"
                      if values.dtype == torch.float16 else "")
            raise ModelFolderError(f"{where}: the weight {short_repr(name, 300)} holds {bad} NaN or infinite "
                                   f"value(s) of {values.numel()}; the file is damaged, or was saved after training "
                                   f"diverged: download or export it again{narrow}")


def _widened(values: torch.Tensor) -> torch.Tensor:
    """float8 as float32 (it has no sum or isfinite kernels), one tensor at a time; any other dtype as it is."""
    return values.float() if values.element_size() == 1 else values


def placed(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """A module just loaded by `from_pretrained` (weights on the CPU, eval mode), on `device` in eval mode.

    `.to` and `.eval` walk every submodule even when nothing changes (0.03-0.05 s each for a small UNet, as much as
    a denoising step of a tiny one), so each is called only when there is something to do."""
    first = next(module.parameters(), None)
    if first is None or first.device != torch.device(device):
        module.to(device)
    if module.training:
        module.eval()
    return module


def load_components(folder: str, device: torch.device, dtype: torch.dtype, variant: str = ""):
    """(UNetHandle, VAEHandle, TextEncoderHandle, SchedulerConfig) from a diffusers-format folder (an SDXL folder
    gives SDXL's UNet and text-encoder values, see `model_values`).

    `variant` picks weight files named like `diffusion_pytorch_model.<variant>.safetensors` ("" the plain ones).
    The UNet class comes from unet/config.json's `_class_name` (UNet2DConditionModel or UNet3DConditionModel).
    The folder is checked first (`check_model_folder`): no custom code, safetensors weights only.
    Modules are put in eval mode on `device` in `dtype`; nothing mutates them later. Their parameters keep the
    requires_grad flag diffusers' own loading leaves them with (every op runs them under torch.no_grad): PyTorch
    picks a matmul kernel by that flag (a Linear on a non-contiguous 3-D input is folded into one mm when the
    weight requires grad, else a bmm), and the two round differently, so clearing it broke parity.
    """
    import diffusers
    from transformers import AutoTokenizer, CLIPTextModel

    configs = check_model_folder(folder)
    unet_class = configs["unet"].get("_class_name", "UNet2DConditionModel")
    weights = {"use_safetensors": True, "variant": variant or None}
    with _loading(os.path.join(folder, "unet")):
        unet = getattr(diffusers, unet_class).from_pretrained(folder, subfolder="unet", torch_dtype=dtype, **weights)
    with _loading(os.path.join(folder, "vae")):
        vae = diffusers.AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype, **weights)
    with _loading(os.path.join(folder, "text_encoder")), _no_transformers_progress_bar():
        text_encoder = CLIPTextModel.from_pretrained(os.path.join(folder, "text_encoder"), dtype=dtype,
                                                     trust_remote_code=False, **weights)
    with _loading(os.path.join(folder, "tokenizer")):
        tokenizer = AutoTokenizer.from_pretrained(os.path.join(folder, "tokenizer"), trust_remote_code=False)
    texts, tokenizers = [text_encoder], [tokenizer]
    if "text_encoder_2" in configs:  # SDXL: the second encoder, with the projection that gives the pooled embedding
        from transformers import CLIPTextModelWithProjection

        with _loading(os.path.join(folder, "text_encoder_2")), _no_transformers_progress_bar():
            texts.append(CLIPTextModelWithProjection.from_pretrained(
                os.path.join(folder, "text_encoder_2"), dtype=dtype, trust_remote_code=False, **weights))
        with _loading(os.path.join(folder, "tokenizer_2")):
            tokenizers.append(AutoTokenizer.from_pretrained(os.path.join(folder, "tokenizer_2"),
                                                            trust_remote_code=False))
    # zip stops after the text encoders there are; the check runs on the device, where a GPU sums in milliseconds
    for module, sub in zip((unet, vae, *texts), ("unet", "vae", "text_encoder", "text_encoder_2")):
        finite(placed(module, device), os.path.join(folder, sub))
    scheduler_config = configs["scheduler"]
    class_name = scheduler_config.get("_class_name", "DDIMScheduler")
    scheduler = SchedulerConfig(class_name, {k: v for k, v in scheduler_config.items() if not k.startswith("_")})
    return model_values(unet, vae, texts, tokenizers, scheduler, folder)


def model_values(unet, vae, text_encoders, tokenizers, scheduler_config: SchedulerConfig, config_folder: str):
    """(UNet value, VAEHandle, text-encoder value, SchedulerConfig) of loaded text-to-image modules: plain handles
    for one text encoder (SD 1.x / 2.x), SDXL's (`vdgraph_video.values_sdxl`) for two. `config_folder` is the
    diffusers folder describing the model (its model_index.json settings)."""
    if len(text_encoders) == 2:
        from vdgraph_video.loading_sdxl import zero_empty_negative
        from vdgraph_video.values_sdxl import sdxl_values

        unet_value, text_value = sdxl_values(unet, vae, tuple(text_encoders), tuple(tokenizers),
                                             zero_empty_negative(config_folder))
        return unet_value, VAEHandle(vae), text_value, scheduler_config
    (text_encoder,), (tokenizer,) = text_encoders, tokenizers
    return UNetHandle(unet), VAEHandle(vae), TextEncoderHandle(text_encoder, tokenizer), scheduler_config
