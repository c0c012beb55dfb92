"""Catching nodes that change the values they receive, cheaply: tensors' version counters.

Every in-place operation on a tensor (`x.add_(1)`, `x[0] = 0`, an optimizer step) bumps `tensor._version`.
Recording it before a node runs and comparing after costs a few attribute reads, and turns a silent cache
corruption (the cached upstream value changed under everybody's feet) into an error naming the node and port.
Checked: tensor inputs, tensors directly inside list / tuple / dict / dataclass inputs, and the parameters of
modules (listed once per module: vdgraph.modules).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from vdgraph.modules import module_tensors

Versions = list[tuple[str, Any, int]]
_PLAIN = frozenset({int, float, str, bool, type(None), bytes})  # cannot hold a tensor: skipped without a look


def input_versions(kwargs: Mapping[str, Any]) -> Versions:
    """(port, tensor, version) for every tensor a node receives."""
    torch = sys.modules.get("torch")
    if torch is None:  # no tensor can exist yet
        return []
    out: Versions = []
    for port, value in kwargs.items():
        if type(value) in _PLAIN:
            continue
        for tensor in _tensors(value, torch):
            try:
                out.append((port, tensor, tensor._version))
            except RuntimeError:  # inference-mode tensors keep no version counter (and cannot be changed)
                pass
    return out


def changed_inputs(versions: Versions) -> list[str]:
    """The ports whose tensors were modified in place since `input_versions`, in order, without repeats."""
    ports: list[str] = []
    for port, tensor, version in versions:
        if tensor._version != version and port not in ports:
            ports.append(port)
    return ports


def _tensors(value: Any, torch: Any, nested: bool = False) -> Iterator[Any]:
    """Tensors in `value`, looking one level into containers and dataclasses (deeper is the node's business)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, torch.nn.Module):
        yield from module_tensors(value)[0]
    elif nested:
        return
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item, torch, nested=True)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item, torch, nested=True)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _tensors(getattr(value, field.name), torch, nested=True)
