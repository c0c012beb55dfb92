"""The in-memory cache of node outputs: least recently used first out, bounded by bytes, not entry count.

Counting entries cannot cap memory (one entry may be a 10 GB model, another a string); `sizeof` estimates what
a value really holds, so the budget means what it says.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
from typing import Any

from vdgraph.modules import module_tensors

GiB = 1 << 30
DEFAULT_CACHE_BYTES = 2 * GiB

_MISSING = object()


def sizeof(value: Any) -> int:
    """Bytes `value` keeps alive: tensor storages, module parameters and buffers, containers recursively.

    Objects may say it themselves with `__vdgraph_nbytes__()`. Each tensor storage is counted once, however
    many views of it there are. Plain objects are followed through their attributes a few levels deep (a
    pipeline object holding its models must not count as a few hundred bytes).
    """
    if type(value) is dict and all(type(v) in _PLAIN for v in value.values()):
        # the common case of small node outputs, without building a sizer
        return sys.getsizeof(value) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in value.items())
    return _Sizer().size(value, depth=0)


_PLAIN = frozenset({int, float, str, bool, type(None)})


class _Sizer:
    MAX_DEPTH = 6

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.storages: set[tuple[str, int]] = set()
        torch = sys.modules.get("torch")  # no tensor can exist before torch is imported
        self.tensor_type = torch.Tensor if torch is not None else None
        self.module_type = torch.nn.Module if torch is not None else None

    def size(self, value: Any, depth: int) -> int:
        if value is None or isinstance(value, (bool, int, float, str, bytes)):
            return sys.getsizeof(value)
        if id(value) in self.seen:
            return 0
        self.seen.add(id(value))
        if self.tensor_type is not None and isinstance(value, self.tensor_type):
            return self.tensor(value)
        own = getattr(value, "__vdgraph_nbytes__", None)
        if callable(own) and not isinstance(value, type):
            return int(own())
        if self.module_type is not None and isinstance(value, self.module_type):
            parameters, buffers = module_tensors(value)
            return sum(self.tensor(t) for t in (*parameters, *buffers))
        if depth >= self.MAX_DEPTH:
            return sys.getsizeof(value)
        if isinstance(value, dict):
            return sys.getsizeof(value) + sum(self.size(k, depth + 1) + self.size(v, depth + 1)
                                              for k, v in value.items())
        if isinstance(value, (list, tuple, set, frozenset)):
            return sys.getsizeof(value) + sum(self.size(v, depth + 1) for v in value)
        if dataclasses.is_dataclass(value):
            return sys.getsizeof(value) + sum(self.size(getattr(value, f.name), depth + 1)
                                              for f in dataclasses.fields(value))
        attributes = getattr(value, "__dict__", None)
        if isinstance(attributes, dict):
            return sys.getsizeof(value) + sum(self.size(v, depth + 1) for v in attributes.values())
        return sys.getsizeof(value)

    def tensor(self, tensor: Any) -> int:
        try:
            storage = tensor.untyped_storage()
            ident = (str(tensor.device), storage.data_ptr())
            if ident in self.storages:
                return 0
            self.storages.add(ident)
            return storage.nbytes()
        except (RuntimeError, NotImplementedError):  # sparse, meta or otherwise storage-less tensors
            return tensor.element_size() * tensor.nelement()


@dataclasses.dataclass
class _Entry:
    value: Any
    nbytes: int


class MemoryCache:
    """key -> value, evicting least recently used entries when the byte budget is exceeded."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._bytes = 0

    def get(self, key: str, default: Any = None) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return default
        self._entries.move_to_end(key)
        return entry.value

    def put(self, key: str, value: Any) -> bool:
        """Store `value`; returns False (and stores nothing) when it alone is bigger than the whole budget."""
        nbytes = sizeof(value)
        self.discard(key)
        if nbytes > self.max_bytes:
            return False
        while self._entries and self._bytes + nbytes > self.max_bytes:
            _, oldest = self._entries.popitem(last=False)
            self._bytes -= oldest.nbytes
        self._entries[key] = _Entry(value, nbytes)
        self._bytes += nbytes
        return True

    def discard(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.nbytes

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[str]:
        """Keys from least to most recently used."""
        return list(self._entries)
