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


@contextlib.contextmanager
def atomic_write(url_or_path: str | os.PathLike, mode: str = "wb", *, fs: fsspec.AbstractFileSystem | None = None,
                 **open_kwargs: Any) -> Iterator[IO]:
    """Open `<name>.tmp-<random>` for writing and move it onto the target only when the block succeeds.

    Locally the move is `os.replace` (atomic on POSIX); elsewhere it is the filesystem's `mv`. When the block
    raises, the temporary file is removed and the target is left as it was. Pass `fs` to write a path on an
    already-open filesystem (then `url_or_path` is a path on it, not a URL).
    """
    if "w" not in mode:
        raise ValueError(f"atomic_write writes; mode must contain 'w', got {mode!r}")
    if fs is None:
        fs, path = fsspec.core.url_to_fs(os.fspath(url_or_path))
    else:
        path = os.fspath(url_or_path)
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    temporary = f"{path}.tmp-{secrets.token_hex(6)}"
    try:
        with fs.open(temporary, mode, **open_kwargs) as handle:
            yield handle
        if isinstance(fs, LocalFileSystem):
            os.replace(temporary, path)
        else:
            fs.mv(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError, OSError):
            fs.rm(temporary)
        raise
