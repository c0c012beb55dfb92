"""Checks of the arguments people pass to the Python API, so a wrong one is a TypeError that names it, not an
AttributeError from deep inside a run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from vdgraph.context import CancelToken
from vdgraph.errors import short_repr
from vdgraph.registry import Registry


def check_registry_argument(registry: Any) -> None:
    if registry is not None and not isinstance(registry, Registry):
        raise TypeError(f"registry must be a vdgraph.Registry (or None to discover the installed packs), got "
                        f"{type(registry).__name__} {short_repr(registry)}")


def check_inputs_argument(inputs: Any) -> None:
    if inputs is None:
        return
    if not isinstance(inputs, Mapping):
        raise TypeError(f"inputs must be a mapping of workflow input name -> value, got {type(inputs).__name__} "
                        f"{short_repr(inputs)}")
    for name in inputs:
        if not isinstance(name, str):
            raise TypeError(f"inputs must be keyed by input name (str), got the key {short_repr(name)}")


def check_listener_argument(on_event: Any) -> None:
    if on_event is not None and not callable(on_event):
        raise TypeError(f"on_event must be callable (it receives each event), got {type(on_event).__name__} "
                        f"{short_repr(on_event)}")


def check_run_arguments(inputs: Any, outputs: Any, cancel: Any, on_event: Any) -> list[str] | None:
    """The requested output names as a list (None: all); a TypeError naming the argument when one is wrong."""
    check_inputs_argument(inputs)
    if cancel is not None and not isinstance(cancel, CancelToken):
        raise TypeError(f"cancel must be a vdgraph.CancelToken, got {type(cancel).__name__} {short_repr(cancel)}")
    check_listener_argument(on_event)
    if outputs is None:
        return None
    if isinstance(outputs, str):
        return [outputs]  # one name, not a sequence of one-letter names
    if isinstance(outputs, (bytes, Mapping)) or not isinstance(outputs, Iterable):
        raise TypeError(f"outputs must be a list of output names, got {type(outputs).__name__} {short_repr(outputs)}")
    names = list(outputs)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"outputs must be output names (str), got {type(name).__name__} {short_repr(name)}")
    return names
