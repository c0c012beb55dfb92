"""Writing files so that nothing half-written is ever visible, locally or through any fsspec filesystem."""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
from collections.abc import Iterator
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from vdgraph.errors import LocationUnavailable


def temporary_name(path: str) -> str:
    """Where a write goes before it is renamed onto `path`: `<path>.tmp-<12 hex digits>`. The output folder
    removes such names left by a killed write once they are stale (vdgraph.outputs.STALE_SECONDS)."""
    return f"{path}.tmp-{secrets.token_hex(6)}"


@contextlib.contextmanager
def atomic_write(url_or_path: str | os.PathLike, mode: str = "wb", *, fs: fsspec.AbstractFileSystem | None = None,
                 **open_kwargs: Any) -> Iterator[IO]:
    """Open `<name>.tmp-<random>` for writing and move it onto the target only when the block succeeds.

    Locally the move is `os.replace` (atomic on POSIX); elsewhere it is the filesystem's `mv`. When the block
    raises, the temporary file is removed and the target is left as it was. An OSError (a full disk, a missing
    permission) is raised again naming the target. Pass `fs` to write a path on an already-open filesystem (then
    `url_or_path` is a path on it, not a URL).

    This replaces what is at the target: a node gets its target from `ctx.outputs.claim(...)` first, which never
    hands out a file the user did not ask to replace.
    """
    if "w" not in mode:
        raise ValueError(f"atomic_write writes; mode must contain 'w', got {mode!r}")
    shown = os.fspath(url_or_path)
    if fs is None:
        fs, path = filesystem(shown)
    else:
        path = shown
    with naming_the_path(shown):
        if isinstance(fs, LocalFileSystem):
            with _local_atomic_write(path, mode, open_kwargs) as handle:
                yield handle
            return
        parent = posixpath.dirname(path)
        if parent:
            fs.makedirs(parent, exist_ok=True)
        temporary = temporary_name(path)
        try:
            with fs.open(temporary, mode, **open_kwargs) as handle:
                yield handle
            fs.mv(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError, OSError):
                fs.rm(temporary)
            raise


def filesystem(url_or_path: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and the path on it that `url_or_path` names. Text without `://` is a local path, taken
    exactly as written, as `os` and `vdgraph.outputs` take it: fsspec alone would read `a::b` as a chain of
    filesystems (writing `a`) and expand a leading `~`, so a writer would write elsewhere than its output folder
    checked and reserved (and replace a file there that it was never given)."""
    text = os.fspath(url_or_path)
    if "://" not in text:
        return LocalFileSystem(), text
    try:
        return fsspec.core.url_to_fs(text)
    except (ValueError, ImportError) as exc:  # an unknown protocol, or one whose package is not installed
        shown = text if len(text) <= 200 else text[:197] + "..."
        raise LocationUnavailable(f"cannot write to {shown!r}: {exc} (use a local path, or an fsspec URL whose "
                                  "protocol is installed, such as memory:// or s3:// with s3fs)") from exc


@contextlib.contextmanager
def _local_atomic_write(path: str, mode: str, open_kwargs: dict[str, Any]) -> Iterator[IO]:
    """atomic_write on the local disk, with os calls only (no glob, no `~` expansion: the path is the path)."""
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    temporary = temporary_name(path)
    try:
        with open(temporary, mode, **open_kwargs) as handle:
            yield handle
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


@contextlib.contextmanager
def naming_the_path(path: str) -> Iterator[None]:
    """Raise an OSError of the block (ENOSPC, EACCES ...) again as one of the same kind that names `path`, so a
    message says which file could not be written, not only why."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None or exc.filename == path:
            raise
        raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), path) from exc
