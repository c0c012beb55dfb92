"""Whether a node's output is a value the engine can pass on, cache, store and show.

A model that diverged returns NaN latents, and the run would end in a black video with exit 0; a node that
computes 10**5000 returns an integer no cache, message or JSON writer can spell. The executor checks each output
right after the node runs and fails that node, naming the output, instead.

Cheap by design: one `torch.isfinite(t).all()` per floating tensor (inside lists, tuples, dicts and dataclasses
too, a few levels deep); numbers and strings only at the top level and directly inside a list or tuple, where
the literal types (int, float, str, list[...]) put them. Models are not inspected.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any

from vdgraph.errors import short_repr
from vdgraph.types import int_problem, text_problem

MAX_DEPTH = 4
"""How many container levels are searched for tensors."""


def unrepresentable(value: Any) -> str:
    """'' when `value` is fine, else what is wrong and where (`item 2 of the list holds ...`)."""
    torch = sys.modules.get("torch")
    stack: list[tuple[Any, int, str, bool]] = [(value, 0, "", True)]  # value, depth, where, numbers checked
    seen: set[int] = set()
    while stack:
        item, depth, where, scalars = stack.pop()
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, (int, float, str)):
            why = _scalar_problem(item) if scalars else ""
            if why:
                return where + why
        elif torch is not None and isinstance(item, torch.Tensor):
            why = _tensor_problem(item, torch)
            if why:
                return where + why
        elif torch is not None and isinstance(item, torch.nn.Module):
            continue
        elif depth < MAX_DEPTH and id(item) not in seen:
            seen.add(id(item))
            stack.extend(reversed(list(_children(item, depth, where))))
    return ""


def _children(item: Any, depth: int, where: str) -> list[tuple[Any, int, str, bool]]:
    if isinstance(item, (list, tuple)):
        return [(v, depth + 1, f"{where}item {i}: ", depth == 0) for i, v in enumerate(item)]
    if isinstance(item, dict):
        return [(v, depth + 1, f"{where}key {short_repr(k)}: ", False) for k, v in item.items()]
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return [(getattr(item, f.name), depth + 1, f"{where}field {f.name!r}: ", False)
                for f in dataclasses.fields(item)]
    return []


def _scalar_problem(value: int | float | str) -> str:
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, int):
        return f"the integer {short_repr(value)} does not fit in 64 bits" if int_problem(value) else ""
    return "" if math.isfinite(value) else f"the number {value!r} is not finite (NaN or Inf)"


def _tensor_problem(tensor: Any, torch: Any) -> str:
    if not (tensor.is_floating_point() or tensor.is_complex()) or tensor.numel() == 0:
        return ""
    if tensor.device.type == "meta" or tensor.layout != torch.strided:
        return ""  # no data to look at (meta), or no cheap elementwise check (sparse)
    if bool(torch.isfinite(tensor).all()):
        return ""
    dtype = str(tensor.dtype).removeprefix("torch.")
    return (f"the tensor {tuple(tensor.shape)} {dtype} holds NaN or Inf values (a model that diverged, or float16 "
            f"overflow: try --dtype float32)")
