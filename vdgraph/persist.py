"""Node outputs as data: what the disk cache writes instead of pickles, and how it reads them back.

A stored value is a tree of JSON values, tensors (kept apart, in one safetensors file, and referenced by name),
lists, tuples, string-keyed dicts, and values of registered types. A pack makes one of its value types storable
with `register_codec(tag, type, encode, decode)`: `encode(value)` returns a tree of the kinds above, `decode(tree)`
builds the value again. The file records the tag, never a class or module path, and reading looks the tag up among
the codecs this process has registered: a cache file cannot make vdgraph import or run anything. A value of any
other type (a model, a generator, an arbitrary object) is simply not stored.

    register_dataclass("video.conditioning", Conditioning)        # a frozen dataclass of storable fields
    register_codec("video.scheduler", SchedulerMixin, scheduler_state, restore_scheduler)
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

from vdgraph.errors import short_repr

MAX_DEPTH = 64
"""Deepest nesting of containers stored or read (deeper outputs are not stored; deeper files are refused)."""


class NotPersistable(Exception):
    """The value holds something that cannot be stored safely (a model, a generator, an arbitrary object)."""


@dataclasses.dataclass(frozen=True)
class Codec:
    """How one value type becomes a tree of storable data and back."""

    tag: str
    type: type
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


_BY_TAG: dict[str, Codec] = {}
_BY_TYPE: dict[type, Codec] = {}


def register_codec(tag: str, value_type: type, encode: Callable[[Any], Any], decode: Callable[[Any], Any]) -> Codec:
    """Make `value_type` (and its subclasses, unless they have their own codec) storable under `tag`.

    Registering the same tag again for a class of the same module and name replaces it (a reloaded pack);
    a tag already taken by another type is an error.
    """
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"a codec tag is a non-empty string, got {tag!r}")
    old = _BY_TAG.get(tag)
    if old is not None and _qualified(old.type) != _qualified(value_type):
        raise ValueError(f"cache codec tag {tag!r} is already registered for {_qualified(old.type)}; "
                         f"choose another tag for {_qualified(value_type)}")
    if old is not None:
        _BY_TYPE.pop(old.type, None)
    codec = Codec(tag, value_type, encode, decode)
    _BY_TAG[tag] = codec
    _BY_TYPE[value_type] = codec
    return codec


def register_dataclass(tag: str, cls: type) -> Codec:
    """A codec for a dataclass whose fields are all storable: stored field by field, rebuilt with `cls(**fields)`."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{_qualified(cls)} is not a dataclass")
    names = tuple(f.name for f in dataclasses.fields(cls))

    def encode(value: Any) -> dict[str, Any]:
        return {name: getattr(value, name) for name in names}

    def decode(fields: Any) -> Any:
        if not isinstance(fields, dict) or set(fields) != set(names):
            raise ValueError(f"{tag} needs the fields {', '.join(names)}")
        return cls(**fields)

    return register_codec(tag, cls, encode, decode)


def codec_for(value: Any) -> Codec | None:
    """The codec of the value's type or of its nearest registered base class."""
    for klass in type(value).__mro__:
        codec = _BY_TYPE.get(klass)
        if codec is not None:
            return codec
    return None


def encode(value: Any, tensors: dict[str, Any], depth: int = 0) -> Any:
    """A JSON tree of `value`; every tensor is moved into `tensors` and referenced by its name there.

    Raises NotPersistable, naming what could not be stored.
    """
    if depth > MAX_DEPTH:
        raise NotPersistable(f"nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"t": "json", "v": value}
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        if value.layout is not torch.strided or value.is_meta:
            raise NotPersistable(f"a {value.layout} tensor")
        name = f"t{len(tensors)}"
        tensors[name] = value
        return {"t": "tensor", "k": name, "device": str(value.device)}
    if type(value) in (list, tuple):
        return {"t": type(value).__name__, "v": [encode(v, tensors, depth + 1) for v in value]}
    if type(value) is dict:
        if not all(isinstance(k, str) for k in value):
            raise NotPersistable("a dict with keys that are not strings")
        return {"t": "dict", "v": {k: encode(v, tensors, depth + 1) for k, v in value.items()}}
    codec = codec_for(value)
    if codec is None:
        raise NotPersistable(describe(value))
    try:
        data = codec.encode(value)
    except (TypeError, ValueError) as exc:
        raise NotPersistable(f"a {type(value).__name__} that its codec {codec.tag!r} cannot store: {exc}") from exc
    return {"t": "value", "tag": codec.tag, "v": encode(data, tensors, depth + 1)}


def decode(tree: Any, tensors: dict[str, Any], depth: int = 0) -> Any:
    """The value `encode` made `tree` from. Raises ValueError (or whatever a codec's decoder raises) for a tree
    that `encode` cannot have written."""
    if depth > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    if not isinstance(tree, dict) or not isinstance(tree.get("t"), str):
        raise ValueError(f"expected an entry {{'t': kind, ...}}, got {short_repr(tree)}")
    kind = tree["t"]
    if kind == "json":
        value = tree.get("v")
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise ValueError(f"a JSON value must be a number, a string, a bool or null, got {short_repr(value)}")
        return value
    if kind == "tensor":
        name, device = tree.get("k"), tree.get("device", "cpu")
        if not isinstance(name, str) or name not in tensors:
            raise ValueError(f"refers to a tensor {short_repr(name)} the tensor file does not hold")
        if not isinstance(device, str):
            raise ValueError(f"a tensor device must be a string, got {short_repr(device)}")
        return _on_device(tensors[name], device)
    if kind in ("list", "tuple"):
        items = tree.get("v")
        if not isinstance(items, list):
            raise ValueError(f"a {kind} entry needs a list, got {short_repr(items)}")
        values = [decode(item, tensors, depth + 1) for item in items]
        return values if kind == "list" else tuple(values)
    if kind == "dict":
        items = tree.get("v")
        if not isinstance(items, dict):
            raise ValueError(f"a dict entry needs an object, got {short_repr(items)}")
        return {k: decode(v, tensors, depth + 1) for k, v in items.items()}
    if kind == "value":
        codec = _BY_TAG.get(tree.get("tag"))  # type: ignore[arg-type]
        if codec is None:
            raise ValueError(f"value type {short_repr(tree.get('tag'))} has no codec in this process (is its pack "
                             "loaded?)")
        return codec.decode(decode(tree.get("v"), tensors, depth + 1))
    raise ValueError(f"unknown entry kind {short_repr(kind)}")


def describe(value: Any) -> str:
    """What makes `value` unstorable, in words: 'a model (UNetHandle)' or 'a Foo, which has no cache codec'."""
    name = type(value).__name__
    torch = sys.modules.get("torch")
    if torch is not None:
        module = torch.nn.Module
        attributes = (vars(value).values() if hasattr(value, "__dict__") else
                      [getattr(value, f.name) for f in dataclasses.fields(value)] if dataclasses.is_dataclass(value)
                      else ())
        if isinstance(value, module) or any(isinstance(v, module) for v in attributes):
            return f"a model ({name})"
    return f"a {name}, which has no cache codec"


def _on_device(tensor: Any, device: str) -> Any:
    if device == "cpu":
        return tensor
    import torch

    try:
        where = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {short_repr(device)}") from None
    return tensor.to(where)


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"

