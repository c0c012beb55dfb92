"""The persistent cache: node outputs on any fsspec filesystem, readable by a later process.

Layout under the cache root: `vdgraph-cache.json` (a marker naming the format), and per key
`objects/<key[:2]>/<key>/meta.json` (the structure of the outputs, see `vdgraph.persist`) plus
`tensors.safetensors` when the outputs hold tensors. Each file is written under a temporary name and renamed,
`meta.json` last, so an entry is visible only once complete.

meta.json records the key it belongs to, the size and sha256 of the tensor file, and a sha256 over everything
else it holds; reading checks all of them, so a flipped bit, a truncated file or a folder moved to another key
is refused as `UnusableEntry` (the node runs again and rewrites it), never served.

Only tensors, JSON values and values with a registered codec (`vdgraph.persist`) are stored. Nothing is ever
pickled and nothing named by a cache file is imported, so reading a cache can never run code.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import Any, Literal

import fsspec
from fsspec.implementations.local import LocalFileSystem

from vdgraph.errors import CacheUnavailable
from vdgraph.io import atomic_write
from vdgraph.persist import NotPersistable, decode, encode

FORMAT = 2
_TENSORS = "tensors.safetensors"
_META = "meta.json"
_MARKER = "vdgraph-cache.json"


class UnusableEntry(Exception):
    """A stored entry that cannot be served. `kind` is "corrupt" (damaged, edited, misplaced), "unreadable" (the
    filesystem failed to read it) or "format" (written by another version of the cache format)."""

    def __init__(self, message: str, kind: Literal["corrupt", "unreadable", "format"] = "corrupt") -> None:
        super().__init__(message)
        self.kind = kind


class CacheWriteError(Exception):
    """Writing an entry failed (disk full, no permission, a lost connection); `path` is where."""

    def __init__(self, path: str, cause: BaseException) -> None:
        detail = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
        super().__init__(f"cannot write the cache file {path}: {detail}")
        self.path = path


class DiskCache:
    """Raises CacheUnavailable when `url` names no usable cache (an unknown protocol, an unreachable server, a
    file where the folder should be, a folder that cannot be written)."""

    def __init__(self, url: str) -> None:
        self.url = str(url)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except (ValueError, ImportError) as exc:  # an unknown protocol, or one whose package is not installed
            raise CacheUnavailable(self.url, str(exc), "pass a folder, or an fsspec URL whose protocol is "
                                   "installed, such as memory:// or s3:// with s3fs") from exc
        marker = posixpath.join(self.root, _MARKER)
        try:
            self.fs.makedirs(self.root, exist_ok=True)
            if not self.fs.exists(marker):
                with atomic_write(marker, fs=self.fs) as handle:
                    handle.write(json.dumps({"vdgraph_cache_format": FORMAT}).encode())
        except Exception as exc:  # fsspec backends raise anything from OSError to aiohttp errors
            raise CacheUnavailable(self.url, f"{type(exc).__name__}: {exc}", "pass a writable folder, or a "
                                   "reachable fsspec URL") from exc

    def where(self, key: str) -> str:
        """The entry's folder, as the user would write it (a path, or a URL on a remote filesystem)."""
        path = self._entry(key)
        return path if isinstance(self.fs, LocalFileSystem) else self.fs.unstrip_protocol(path)

    def _entry(self, key: str) -> str:
        return posixpath.join(self.root, "objects", key[:2], key)

    # -- reading -------------------------------------------------------------------------------------------------

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored outputs for `key`, or None when absent or unusable (then it is recomputed)."""
        try:
            return self.read(key)
        except UnusableEntry:
            return None

    def read(self, key: str) -> dict[str, Any] | None:
        """The stored outputs for `key`; None when there is no entry; UnusableEntry (saying what is wrong) when
        there is one that must not be served."""
        entry = self._entry(key)
        try:
            raw = self.fs.cat_file(posixpath.join(entry, _META))
        except FileNotFoundError:
            return None
        except Exception as exc:  # fsspec backends raise anything from OSError to aiohttp errors
            raise UnusableEntry(f"{_META}: {type(exc).__name__}: {exc}", "unreadable") from exc
        meta = _parse_meta(raw, key)
        payload = b""
        if meta["payload"] is not None:
            try:
                payload = self.fs.cat_file(posixpath.join(entry, _TENSORS))
            except FileNotFoundError as exc:
                raise UnusableEntry(f"{_TENSORS} is missing") from exc
            except Exception as exc:
                raise UnusableEntry(f"{_TENSORS}: {type(exc).__name__}: {exc}", "unreadable") from exc
            if len(payload) != meta["payload"]["bytes"]:
                raise UnusableEntry(f"{_TENSORS} has {len(payload)} bytes, not {meta['payload']['bytes']}: truncated")
            if hashlib.sha256(payload).hexdigest() != meta["payload"]["sha256"]:
                raise UnusableEntry("checksum mismatch in " + _TENSORS)
        tensors = _load_tensors(payload) if payload else {}
        try:
            value = decode(meta["outputs"], tensors)
        except Exception as exc:  # a codec's own decoder may raise anything; a bad entry is a miss, never a crash
            raise UnusableEntry(f"cannot rebuild the outputs: {type(exc).__name__}: {exc}") from exc
        if not isinstance(value, dict):
            raise UnusableEntry("the outputs are not a mapping of output names")
        return value

    # -- writing -------------------------------------------------------------------------------------------------

    def put(self, key: str, outputs: dict[str, Any]) -> bool:
        """Store `outputs` if every value is persistable; returns whether it was stored."""
        try:
            self.store(key, outputs)
        except NotPersistable:
            return False
        return True

    def store(self, key: str, outputs: dict[str, Any]) -> None:
        """Store `outputs`. Raises NotPersistable (naming the output and what it holds) when one cannot be stored
        safely, and CacheWriteError (naming the path) when writing fails; a failed write leaves no partial file."""
        tensors: dict[str, Any] = {}
        tree = {}
        for name, value in outputs.items():
            try:
                tree[name] = encode(value, tensors)
            except NotPersistable as exc:
                raise NotPersistable(f"output {name!r} holds {exc}") from None
        encoded = {"t": "dict", "v": tree}
        payload = _save_tensors(tensors) if tensors else None
        described = None if payload is None else {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
        meta = {"format": FORMAT, "key": key, "payload": described, "outputs": encoded}
        try:
            text = json.dumps({**meta, "sha256": _meta_digest(meta)})
        except ValueError as exc:  # an integer too long to write in decimal
            raise NotPersistable(f"a value JSON cannot hold ({exc})") from exc
        entry = self._entry(key)
        target = entry
        try:
            if payload is not None:
                target = posixpath.join(entry, _TENSORS)
                with atomic_write(target, fs=self.fs) as handle:
                    handle.write(payload)
            target = posixpath.join(entry, _META)
            with atomic_write(target, fs=self.fs) as handle:
                handle.write(text.encode())
        except Exception as exc:  # OSError locally; remote backends have their own exception types
            shown = target if isinstance(self.fs, LocalFileSystem) else self.fs.unstrip_protocol(target)
            raise CacheWriteError(shown, exc) from exc

    def __contains__(self, key: str) -> bool:
        return self.fs.exists(posixpath.join(self._entry(key), _META))

    # -- small JSON documents beside the objects ------------------------------------------------------------------

    def read_json(self, name: str) -> Any:
        """A small JSON document kept beside the objects (the explain store); None when absent or unreadable."""
        try:
            with self.fs.open(posixpath.join(self.root, name), "rb") as handle:
                return json.loads(handle.read())
        except (OSError, ValueError, RecursionError):
            return None

    def write_json(self, name: str, value: Any) -> None:
        """Raises CacheWriteError (naming the path) when the document cannot be written."""
        path = posixpath.join(self.root, name)
        try:
            with atomic_write(path, fs=self.fs) as handle:
                handle.write(json.dumps(value).encode())
        except Exception as exc:
            raise CacheWriteError(path if isinstance(self.fs, LocalFileSystem) else self.fs.unstrip_protocol(path),
                                  exc) from exc


def _meta_digest(meta: dict[str, Any]) -> str:
    """sha256 over the entry's format, key, payload description and outputs tree (one spelling: sorted keys)."""
    text = json.dumps([meta["format"], meta["key"], meta["payload"], meta["outputs"]], sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _parse_meta(raw: bytes, key: str) -> dict[str, Any]:
    """meta.json, checked field by field (it may be anything: truncated, hand-edited, another entry's)."""
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise UnusableEntry(f"{_META} is not valid JSON") from exc
    if not isinstance(meta, dict):
        raise UnusableEntry(f"{_META} holds {type(meta).__name__ if meta is not None else 'null'}, not an object")
    if meta.get("format") != FORMAT:
        if isinstance(meta.get("format"), int) and not isinstance(meta.get("format"), bool):
            raise UnusableEntry(f"written in cache format {meta['format']}, this vdgraph reads format {FORMAT}",
                                "format")
        raise UnusableEntry(f"{_META} has no valid format number")
    missing = [field for field in ("key", "payload", "outputs", "sha256") if field not in meta]
    if missing:
        raise UnusableEntry(f"{_META} lacks {', '.join(missing)}")
    if not isinstance(meta["sha256"], str) or meta["sha256"] != _meta_digest(meta):
        raise UnusableEntry("checksum mismatch in " + _META)
    if meta["key"] != key:
        raise UnusableEntry("it belongs to another key: a moved or swapped folder")
    payload = meta["payload"]
    if payload is not None and not (isinstance(payload, dict) and isinstance(payload.get("bytes"), int)
                                    and isinstance(payload.get("sha256"), str)):
        raise UnusableEntry(f"{_META} describes the tensor file wrongly")
    return meta


def _save_tensors(tensors: dict[str, Any]) -> bytes:
    from safetensors.torch import save

    return save({name: t.detach().to("cpu", copy=True).contiguous() for name, t in tensors.items()})


def _load_tensors(payload: bytes) -> dict[str, Any]:
    from safetensors.torch import load

    try:
        return load(payload)
    except Exception as exc:  # SafetensorError has no common base with OSError or ValueError
        raise UnusableEntry(f"{_TENSORS} is not a valid safetensors file: {exc}") from exc
