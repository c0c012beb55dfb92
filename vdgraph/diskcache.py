"""The persistent cache: node outputs on any fsspec filesystem, readable by a later process.

Layout under the cache root, per key: `objects/<key[:2]>/<key>/tensors.safetensors` (when the outputs hold
tensors) and `meta.json` (the structure of the outputs, with tensors replaced by references). Each file is
written under a temporary name and renamed, `meta.json` last, so an entry is visible only once complete.

Only tensors (also inside lists, tuples and dicts) and JSON values are persisted. Models, schedulers,
generators and anything else are simply not stored: nothing is ever pickled, so reading a cache can never run
code.
"""

from __future__ import annotations

import json
import posixpath
import sys
from typing import Any

import fsspec

from vdgraph.io import atomic_write

FORMAT = 1
_TENSORS = "tensors.safetensors"
_META = "meta.json"


class NotPersistable(Exception):
    """The value holds something that cannot be stored safely (a model, a scheduler, an arbitrary object)."""


class DiskCache:
    def __init__(self, url: str) -> None:
        self.url = str(url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.fs.makedirs(self.root, exist_ok=True)

    def _entry(self, key: str) -> str:
        return posixpath.join(self.root, "objects", key[:2], key)

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored outputs for `key`, or None when absent (or unreadable: then it is recomputed)."""
        entry = self._entry(key)
        try:
            with self.fs.open(posixpath.join(entry, _META), "rb") as handle:
                meta = json.loads(handle.read())
        except (FileNotFoundError, OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        if meta.get("format") != FORMAT:
            return None
        tensors: dict[str, Any] = {}
        if meta.get("tensors"):
            try:
                with self.fs.open(posixpath.join(entry, _TENSORS), "rb") as handle:
                    data = handle.read()
                from safetensors.torch import load

                tensors = load(data)
            except Exception:  # missing, truncated or corrupt (SafetensorError has no common base): a miss
                return None
        try:
            return _decode(meta["outputs"], tensors)
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, key: str, outputs: dict[str, Any]) -> bool:
        """Store `outputs` if every value is persistable; returns whether it was stored."""
        tensors: dict[str, Any] = {}
        try:
            encoded = _encode(outputs, tensors)
        except NotPersistable:
            return False
        entry = self._entry(key)
        if tensors:
            from safetensors.torch import save

            payload = save({name: t.detach().to("cpu", copy=True).contiguous() for name, t in tensors.items()})
            with atomic_write(posixpath.join(entry, _TENSORS), fs=self.fs) as handle:
                handle.write(payload)
        meta = {"format": FORMAT, "tensors": len(tensors), "outputs": encoded}
        with atomic_write(posixpath.join(entry, _META), fs=self.fs) as handle:
            handle.write(json.dumps(meta).encode())
        return True

    def __contains__(self, key: str) -> bool:
        return self.fs.exists(posixpath.join(self._entry(key), _META))

    def read_json(self, name: str) -> Any:
        """A small JSON document kept beside the objects (the explain store); None when absent or unreadable."""
        try:
            with self.fs.open(posixpath.join(self.root, name), "rb") as handle:
                return json.loads(handle.read())
        except (FileNotFoundError, OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None

    def write_json(self, name: str, value: Any) -> None:
        with atomic_write(posixpath.join(self.root, name), fs=self.fs) as handle:
            handle.write(json.dumps(value).encode())

def _encode(value: Any, tensors: dict[str, Any]) -> Any:
    """A JSON tree of `value`, with every tensor moved into `tensors` and referenced by name."""
    if value is None or isinstance(value, (bool, str)):
        return {"t": "json", "v": value}
    if isinstance(value, (int, float)):
        return {"t": "json", "v": value}
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        if value.layout is not torch.strided or value.is_meta:
            raise NotPersistable(f"a {value.layout} tensor")
        name = f"t{len(tensors)}"
        tensors[name] = value
        return {"t": "tensor", "k": name, "device": str(value.device)}
    if isinstance(value, (list, tuple)):
        return {"t": "list" if isinstance(value, list) else "tuple", "v": [_encode(v, tensors) for v in value]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"t": "dict", "v": {k: _encode(v, tensors) for k, v in value.items()}}
    raise NotPersistable(type(value).__name__)


def _decode(node: Any, tensors: dict[str, Any]) -> Any:
    kind = node["t"]
    if kind == "json":
        return node["v"]
    if kind == "tensor":
        tensor = tensors[node["k"]]
        return tensor if node.get("device", "cpu") == "cpu" else tensor.to(node["device"])
    if kind == "list":
        return [_decode(v, tensors) for v in node["v"]]
    if kind == "tuple":
        return tuple(_decode(v, tensors) for v in node["v"])
    if kind == "dict":
        return {k: _decode(v, tensors) for k, v in node["v"].items()}
    raise ValueError(f"unknown entry kind {kind!r}")
