"""The models folder: named models under configured roots, listed by `vdgraph models` and accepted by model inputs.

A root holds one folder per kind of model:

    <root>/checkpoints/   diffusers-format model folders, or single-file checkpoints (`name.safetensors`)
    <root>/controlnet/    ControlNet folders or .safetensors files
    <root>/motion/        motion modules (folders or .safetensors files)
    <root>/lora/          LoRA files (.safetensors)

The roots are the folders of `VDGRAPH_MODELS` (a path list, separated like PATH) when it is set, else the user
folder `$XDG_DATA_HOME/vdgraph/models` (default `~/.local/share/vdgraph/models`). A model input takes a model by
its name inside its kind's folder (`my-model`, or `my-model.safetensors`; `checkpoints/my-model` says the kind
too); the first root that has it wins. Nothing here loads a model or imports a model library: the engine only
names files, the packs load them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from importlib.metadata import entry_points

MODELS_ENV = "VDGRAPH_MODELS"
KINDS = ("checkpoints", "controlnet", "motion", "lora")
WEIGHT_SUFFIX = ".safetensors"
BUILTIN_GROUP = "vdgraph.models"


def model_roots() -> list[str]:
    """The configured roots, in search order (they need not exist)."""
    configured = os.environ.get(MODELS_ENV)
    if configured is not None and configured.strip():
        return [os.path.expanduser(p) for p in configured.split(os.pathsep) if p.strip()]
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return [os.path.join(data_home, "vdgraph", "models")]


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One model the folder offers: its kind, the name a model input takes, where it is, file or folder."""

    kind: str
    name: str
    path: str
    is_file: bool

    def to_json(self) -> dict:
        return {"kind": self.kind, "name": self.name, "path": self.path,
                "form": "single file" if self.is_file else "folder"}


def _entries(root: str, kind: str) -> Iterator[ModelEntry]:
    folder = os.path.join(root, kind)
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return
    for name in names:
        if name.startswith("."):
            continue
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            yield ModelEntry(kind, name, path, False)
        elif name.endswith(WEIGHT_SUFFIX) and os.path.isfile(path):
            yield ModelEntry(kind, name[: -len(WEIGHT_SUFFIX)], path, True)


def list_models(kind: str | None = None) -> list[ModelEntry]:
    """Every model of the roots (of one kind, or all), first root first; a name a former root has is shadowed
    and left out, as `find_model` would never return it."""
    found: list[ModelEntry] = []
    seen: set[tuple[str, str]] = set()
    for root in model_roots():
        for each in KINDS if kind is None else (kind,):
            for entry in _entries(root, each):
                if (entry.kind, entry.name) not in seen:
                    seen.add((entry.kind, entry.name))
                    found.append(entry)
    return found


def find_model(name: str, kind: str) -> str | None:
    """The path of the model `name` of `kind` in the roots, or None. `name` may carry the kind (`lora/style`) and
    the .safetensors suffix; a name that leaves its kind's folder ('..', an absolute path) is never looked up."""
    assert kind in KINDS, f"kind must be one of {KINDS}, got {kind!r}"
    text = name.strip().replace("\\", "/")
    if text.startswith(kind + "/"):
        text = text[len(kind) + 1:]
    if not text or text.startswith("/") or ".." in text.split("/") or "://" in text or "/" in text:
        return None
    stem = text[: -len(WEIGHT_SUFFIX)] if text.endswith(WEIGHT_SUFFIX) else text
    for root in model_roots():
        for entry in _entries(root, kind):
            if entry.name == stem and (entry.is_file or not text.endswith(WEIGHT_SUFFIX)):
                return entry.path
    return None


def builtin_model_names() -> list[str]:
    """Names of the models packs ship (entry-point group `vdgraph.models`), without loading them."""
    return sorted(ep.name for ep in entry_points(group=BUILTIN_GROUP))


def hub_cache_models() -> list[dict]:
    """Models in the local Hugging Face cache: [{"name": repo id, "size_bytes": ..., "path": ...}] ([] when
    huggingface_hub is missing or the cache cannot be read). Only model repositories; nothing is downloaded."""
    try:
        from huggingface_hub import scan_cache_dir
    except ImportError:
        return []
    try:
        info = scan_cache_dir()
    except Exception:  # no cache yet (CacheNotFound), or an unreadable one: nothing to list
        return []
    return [{"name": repo.repo_id, "size_bytes": repo.size_on_disk, "path": str(repo.repo_path)}
            for repo in sorted(info.repos, key=lambda r: r.repo_id) if repo.repo_type == "model"]
