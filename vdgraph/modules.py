"""The tensors of a torch module, listed once per module: the engine reads them for every node a model passes.

`module.parameters()` walks the submodule tree with a generator per level (about 15 ms for a small UNet of a
thousand parameters); the immutability check and the memory cache's size both need the list for every node that
receives or returns a model. Loaded modules are values that nothing changes after loading (a node that patches one
returns a new module), so the list is taken once, by one flat walk, and remembered per module object (weakly: it
goes with the module).
"""

from __future__ import annotations

import weakref
from typing import Any

_TENSORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def module_tensors(module: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(parameters, buffers) of `module` and all its submodules, each tensor once, in `parameters()` order."""
    found = _TENSORS.get(module)
    if found is None:
        parameters: dict[int, Any] = {}
        buffers: dict[int, Any] = {}
        seen: set[int] = set()
        stack = [module]
        while stack:  # depth first, children in registration order: the order named_modules() gives
            current = stack.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            for tensor in current._parameters.values():
                if tensor is not None:
                    parameters.setdefault(id(tensor), tensor)
            for tensor in current._buffers.values():
                if tensor is not None:
                    buffers.setdefault(id(tensor), tensor)
            stack.extend(child for child in reversed(current._modules.values()) if child is not None)
        found = (tuple(parameters.values()), tuple(buffers.values()))
        _TENSORS[module] = found
    return found
