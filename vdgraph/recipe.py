"""Outputs that carry their recipe: what a file was made from, stored in the file (or beside it).

A recipe is a JSON object:

    {"vdgraph_recipe": 1, "workflow": {...the workflow document...}, "workflow_source": "clips/t2v.json",
     "inputs": {...every workflow input's value in the run...}, "seeds": {"noise.seed": 7, ...},
     "node": "write", "versions": {"vdgraph": "0.1.0", "torch": "2.13.0", "diffusers": "0.42.1"}}

Where it goes, by format: a PNG gets an iTXt chunk `vdgraph_recipe`; an MP4 or WebM a container metadata tag
`vdgraph_recipe`; a folder of PNG frames a `recipe.json` inside it; any other file (GIF, JSON) a sidecar
`<file>.recipe.json` beside it. `read_recipe(path)` finds it in all of these; `vdgraph inspect FILE` prints it
and `vdgraph run --from FILE` runs it again (the workflow document with the recorded inputs).
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

RECIPE_KEY = "vdgraph_recipe"
RECIPE_FORMAT = 1
FOLDER_RECIPE = "recipe.json"
SIDECAR_SUFFIX = ".recipe.json"
VERSIONED = ("vdgraph", "torch", "diffusers")


class RecipeNotFound(LookupError):
    """A file that carries no recipe (or one vdgraph cannot read)."""


def versions() -> dict[str, str]:
    """The versions of the packages that decide a result ("not installed" for a missing one)."""
    found = {}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def seeds_of(document: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Every node port named `seed` in the document -> its value in the run: a literal, a workflow input's value,
    or the link text ("rng.seed") when another node computes it."""
    found: dict[str, Any] = {}
    nodes = document.get("nodes")
    if not isinstance(nodes, Mapping):
        return found
    for node_id, spec in nodes.items():
        if not isinstance(spec, Mapping):
            continue
        params = spec.get("params") if isinstance(spec.get("params"), Mapping) else {}
        linked = spec.get("in") if isinstance(spec.get("in"), Mapping) else {}
        if "seed" in params:
            found[f"{node_id}.seed"] = params["seed"]
        elif isinstance(linked.get("seed"), str):
            source = linked["seed"]
            name = source.removeprefix("inputs.")
            found[f"{node_id}.seed"] = inputs.get(name, source) if source.startswith("inputs.") else source
    return found


def make_recipe(document: Mapping[str, Any] | None, inputs: Mapping[str, Any], source: str | None = None,
                node: str | None = None) -> dict[str, Any]:
    """The recipe of a file written by `node` in a run of `document` with `inputs` (the values in force)."""
    document = dict(document or {})
    if source is not None and "://" not in source:
        source = os.path.abspath(source)  # `run --from` may start in another folder
    return {RECIPE_KEY: RECIPE_FORMAT, "workflow": document, "workflow_source": source,
            "inputs": _jsonable(dict(inputs)), "seeds": _jsonable(seeds_of(document, inputs)), "node": node,
            "versions": versions()}


def recipe_of(ctx: Any) -> dict[str, Any]:
    """The recipe for a file the node of `ctx` (a RunContext) writes."""
    return make_recipe(ctx.workflow_document, ctx.workflow_inputs, ctx.workflow_source, ctx.node_id)


def to_text(recipe: Mapping[str, Any]) -> str:
    return json.dumps(recipe, ensure_ascii=False, sort_keys=False, default=str)


def _jsonable(value: Any) -> Any:
    """A JSON value: tuples become lists, anything else JSON cannot spell its str()."""
    return json.loads(json.dumps(value, default=str))


def sidecar_for(target: str) -> str:
    return target + SIDECAR_SUFFIX


def write_sidecar(ctx: Any, target: str, recipe: Mapping[str, Any]) -> str:
    """Write the recipe beside `target` (a file the node just wrote) through the output folder's rules, so an
    existing file is never replaced without overwrite. Returns the sidecar's path."""
    from vdgraph.io import atomic_write

    root = ctx.outputs.root
    if "://" in target or "://" in root:
        name = target[len(root.rstrip("/")) + 1:] if target.startswith(root.rstrip("/") + "/") else target
        name = name + SIDECAR_SUFFIX
    else:
        name = os.path.relpath(sidecar_for(target), root)
    with ctx.outputs.claim(name, port="recipe") as path, atomic_write(path, "w", encoding="utf-8") as out:
        out.write(json.dumps(recipe, ensure_ascii=False, indent=1) + "\n")
    return path


# -- reading ---------------------------------------------------------------------------------------------------

def read_recipe(path: str) -> dict[str, Any]:
    """The recipe `path` carries: inside a PNG, an MP4/WebM or a PNG-frame folder, in a sidecar beside the file,
    or `path` may be the sidecar itself. RecipeNotFound when there is none."""
    if not os.path.exists(path):
        raise RecipeNotFound(f"{path!r} does not exist")
    candidates: list[str] = []
    if os.path.isdir(path):
        candidates.append(os.path.join(path, FOLDER_RECIPE))
    else:
        ext = posixpath.splitext(path)[1].lower()
        embedded = _png_recipe(path) if ext == ".png" else _av_recipe(path) if ext in (".mp4", ".m4v", ".webm",
                                                                                       ".mkv", ".mov") else None
        if embedded is not None:
            return _parsed(embedded, path)
        if path.endswith(SIDECAR_SUFFIX) or ext == ".json":
            candidates.append(path)
        candidates.append(sidecar_for(path))
    for candidate in candidates:
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8") as handle:
                text = handle.read()
            try:
                data = json.loads(text)
            except ValueError:
                continue
            if isinstance(data, dict) and RECIPE_KEY in data:
                return _parsed(text, candidate)
    raise RecipeNotFound(f"{path!r} carries no vdgraph recipe (looked for: an embedded {RECIPE_KEY!r} in a PNG, "
                         f"MP4 or WebM, {FOLDER_RECIPE} in a frame folder, a {SIDECAR_SUFFIX} sidecar)")


def _parsed(text: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RecipeNotFound(f"the recipe in {where!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get(RECIPE_KEY) != RECIPE_FORMAT or not isinstance(data.get("workflow"),
                                                                                             dict):
        raise RecipeNotFound(f"the recipe in {where!r} is not a vdgraph recipe of format {RECIPE_FORMAT}")
    return data


def _png_recipe(path: str) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            text = getattr(image, "text", None) or {}
            return text.get(RECIPE_KEY)
    except OSError:
        return None


def _av_recipe(path: str) -> str | None:
    try:
        import av
    except ImportError:  # pragma: no cover - PyAV comes with the video pack
        return None
    try:
        with av.open(path) as container:
            return next((v for k, v in container.metadata.items() if k.lower() == RECIPE_KEY), None)
    except Exception:  # not a media file PyAV reads: then there is no embedded recipe
        return None
