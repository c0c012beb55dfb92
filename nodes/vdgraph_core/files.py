"""Files: saving a result as JSON in the run's output folder."""

from __future__ import annotations

import json
import sys
from typing import Any

from vdgraph.context import RunContext
from vdgraph.io import atomic_write
from vdgraph.node import Input, Node, Output
from vdgraph.recipe import SIDECAR_SUFFIX, recipe_of, write_sidecar
from vdgraph.types import ANY, FILE


def to_json_value(value: Any) -> Any:
    """A JSON-able copy of `value`: tensors become nested lists, tuples lists; anything else must be JSON."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


class SaveJson(Node):
    """Writes a value as JSON into the output folder (atomically) and outputs the file's path. An existing file is
    never replaced without --overwrite (a counter is added instead: result_00001.json); the name may hold
    {counter}, {workflow} and workflow inputs such as {seed}, and must stay inside the output folder. The run's
    recipe (workflow, inputs, seeds, versions; see vdgraph.recipe) goes beside it as `<file>.recipe.json`."""

    id = "core.save_json"
    category = "files"
    side_effects = True
    inputs = [
        Input("value", ANY, doc="what to save: numbers, text, lists, dicts or tensors (as nested lists)"),
        Input("filename", str, default="result.json", output_path=True, doc="file name (or relative path) inside the output folder"),
        Input("indent", int, default=2, ge=0, le=8, doc="spaces per indentation level"),
    ]
    outputs = [Output("path", FILE, doc="where the file was written")]

    def run(self, ctx: RunContext, value: Any, filename: str, indent: int) -> str:
        text = json.dumps(to_json_value(value), indent=indent, ensure_ascii=False) + "\n"
        with ctx.outputs.claim(filename, port="filename", companion=SIDECAR_SUFFIX) as path, \
                atomic_write(path, "w", encoding="utf-8") as out:
            out.write(text)
        write_sidecar(ctx, path, recipe_of(ctx))
        return path
