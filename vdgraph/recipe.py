"""Outputs that carry their recipe: what a file was made from, stored in the file (or beside it).

A recipe is a JSON object:

    {"vdgraph_recipe": 1, "workflow": {...the workflow document...}, "workflow_source": "clips/t2v.json",
     "inputs": {...every workflow input's value in the run...}, "seeds": {"noise.seed": 7, ...},
     "drawn": {"noise.seed": 1804289383}, "node": "write",
     "versions": {"vdgraph": "0.1.0", "torch": "2.13.0", "diffusers": "0.42.1"}}

`inputs` are the values the run used (its own, else the declared defaults). `seeds` holds every port named
`seed` with the value it had: a literal, a workflow input's value, or the value a link brought (the link text
only when the node that received it was served from a cache, so its value was not needed). `drawn` holds the
value of every port fed by a node that gives another value on every run (core.random_seed, or anything computed
from one): `run --from` puts those values back as literals (`replay_document`), so the recipe makes the same
output again. A drawn value JSON cannot hold (a tensor) is null there, and such a recipe cannot be replayed exactly.

Where it goes, by format: a PNG gets an iTXt chunk `vdgraph_recipe`; an MP4 or WebM a container metadata tag
`vdgraph_recipe`; a folder of PNG frames a `recipe.json` inside it; any other file (GIF, JSON) a sidecar
`<file>.recipe.json` beside it. `read_recipe(path)` finds it in all of these; `vdgraph inspect FILE` prints it
and `vdgraph run --from FILE` runs it again (the workflow document with the recorded inputs).
"""

from __future__ import annotations

import copy
import json
import math
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
MAX_RECORDED_ITEMS = 1000
"""The longest list a recipe records as a port's value."""


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


def seeds_of(document: Mapping[str, Any], inputs: Mapping[str, Any],
             linked_values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every node port named `seed` in the document -> its value in the run: a literal, a workflow input's value,
    the value a link brought (from `linked_values`, "node.port" -> value), or the link text ("rng.seed") when the
    link's value is not known (the node was served from a cache)."""
    found: dict[str, Any] = {}
    linked_values = linked_values or {}
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
            if source.startswith("inputs."):
                found[f"{node_id}.seed"] = inputs.get(name, source)
            else:
                found[f"{node_id}.seed"] = linked_values.get(f"{node_id}.seed", source)
    return found


def make_recipe(document: Mapping[str, Any] | None, inputs: Mapping[str, Any], source: str | None = None,
                node: str | None = None, linked_values: Mapping[str, Any] | None = None,
                drawn: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The recipe of a file written by `node` in a run of `document` with `inputs` (the values in force);
    `linked_values` and `drawn` as RunContext holds them."""
    document = dict(document or {})
    if source is not None and "://" not in source:
        source = os.path.abspath(source)  # `run --from` may start in another folder
    recipe = {RECIPE_KEY: RECIPE_FORMAT, "workflow": document, "workflow_source": source,
              "inputs": _jsonable(dict(inputs)), "seeds": _jsonable(seeds_of(document, inputs, linked_values)),
              "node": node, "versions": versions()}
    if drawn:
        recipe["drawn"] = _jsonable(dict(drawn))
    return recipe


def recipe_of(ctx: Any) -> dict[str, Any]:
    """The recipe for a file the node of `ctx` (a RunContext) writes."""
    return make_recipe(ctx.workflow_document, ctx.workflow_inputs, ctx.workflow_source, ctx.node_id,
                       ctx.linked_values, ctx.drawn)


def json_value(value: Any) -> Any:
    """`value` when it is a small JSON value a port can take as a literal (a bool, int, finite float or str, or a
    list of those), else None: what a recipe can record of a value a link brought."""
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_RECORDED_ITEMS:
            return None
        items = [json_value(item) for item in value]
        return None if any(item is None or isinstance(item, list) for item in items) else items
    if isinstance(value, bool) or isinstance(value, int) or (isinstance(value, str) and len(value) <= 10_000):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def replay_document(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe's workflow document with each drawn value (see the module doc) put back as a literal of the port
    it fed, so running it makes the same output. A drawn value that was not recorded (null) leaves its link: that
    port gets a new value (`unreplayable` lists such ports)."""
    document = copy.deepcopy(dict(recipe["workflow"]))
    drawn = recipe.get("drawn") if isinstance(recipe.get("drawn"), Mapping) else {}
    nodes = document.get("nodes") if isinstance(document.get("nodes"), Mapping) else {}
    for where, value in drawn.items():
        node_id, _, port = str(where).rpartition(".")
        spec = nodes.get(node_id)
        if value is None or not isinstance(spec, dict) or not isinstance(spec.get("in"), dict) \
                or port not in spec["in"]:
            continue
        del spec["in"][port]
        if not spec["in"]:
            del spec["in"]
        spec.setdefault("params", {})[port] = value
    return document


def unreplayable(recipe: Mapping[str, Any]) -> list[str]:
    """The ports whose drawn values the recipe could not record (a re-run gives them new values)."""
    drawn = recipe.get("drawn") if isinstance(recipe.get("drawn"), Mapping) else {}
    return sorted(str(where) for where, value in drawn.items() if value is None)


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
            with open(candidate, "rb") as handle:
                raw = handle.read()
            try:
                text = raw.decode("utf-8")
                data = json.loads(text)
            except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested deeper than Python recurses
                continue
            if isinstance(data, dict) and RECIPE_KEY in data:
                return _parsed(text, candidate)
    raise RecipeNotFound(f"{path!r} carries no vdgraph recipe (looked for: an embedded {RECIPE_KEY!r} in a PNG, "
                         f"MP4 or WebM, {FOLDER_RECIPE} in a frame folder, a {SIDECAR_SUFFIX} sidecar)")


def _parsed(text: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise RecipeNotFound(f"the recipe in {where!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or type(data.get(RECIPE_KEY)) is not int or data[RECIPE_KEY] != RECIPE_FORMAT \
            or not isinstance(data.get("workflow"), dict):
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
    except ValueError as exc:  # Pillow refuses text chunks that decompress past its limit (a decompression bomb)
        raise RecipeNotFound(f"cannot read the text chunks of {path!r}: {exc}") from None


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
