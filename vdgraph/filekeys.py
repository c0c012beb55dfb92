"""What a file a node reads adds to its cache key: the content hash of the file, or of every file in a folder.

A node declares the ports that name files it reads with `Input(..., reads_file=True)`; `Node.content_key` then
puts the content of each named file into the node's cache key, whatever feeds the port (a literal, a workflow
input, or a link: the executor runs the nodes feeding such a link before it looks the node up in a cache). So an
edited file is read again, never served stale from a cache. The engine only names files here; how a node turns a
name into a file (a models folder, a built-in name) is its `locate_file`.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import secrets
import stat
from typing import Any

# (real path, device, inode, size, modification and change times in ns) -> sha256 of the file's bytes: a file is
# hashed again only when it changed. The change time is in the memo because a copy that keeps times (`cp -p`,
# `rsync -t`, `touch -r`) can give new bytes the old size and modification time; no user call sets it back.
_DIGESTS: dict[tuple[str, int, int, int, int, int], str] = {}

NOT_REGULAR = "not a regular file"
"""What a FIFO, a socket or a device is keyed as: reading one may never end (a FIFO waits for a writer)."""


def file_digest(path: str) -> str:
    """sha256 of a regular file's bytes (remembered per real path and stat, so a key is cheap to compute again)."""
    info = os.stat(path)
    memo = (os.path.realpath(path), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    if memo not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[memo] = digest.hexdigest()
    return _DIGESTS[memo]


def folder_digest(path: str) -> str:
    """sha256 over the relative names and content hashes of every file under a folder (hidden files included:
    a model loader may read them; links are followed, as the loaders follow them, except a link back into a
    folder it lies in, which is keyed as a loop instead of walked without end). A FIFO, socket or device is keyed
    by its name only (`NOT_REGULAR`), and so is a link to nothing."""
    digest = hashlib.sha256()
    _hash_folder(path, "", digest, frozenset())
    return digest.hexdigest()


def _hash_folder(folder: str, prefix: str, digest: Any, ancestors: frozenset) -> None:
    info = os.stat(folder)
    here = (info.st_dev, info.st_ino)
    if here in ancestors:
        digest.update(f"{prefix}\0loop\0".encode())
        return
    files, dirs = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows links, as os.walk(followlinks=True) did
            except OSError:
                is_dir = False
            (dirs if is_dir else files).append(entry.name)
    for name in sorted(files):
        full = os.path.join(folder, name)
        try:
            mode = os.stat(full).st_mode
        except FileNotFoundError:  # a link to nothing (a partial download): keyed as such, the rest still hashed
            digest.update(f"{prefix}{name}\0broken link\0".encode())
            continue
        kind = file_digest(full) if stat.S_ISREG(mode) else NOT_REGULAR
        digest.update(f"{prefix}{name}\0{kind}\0".encode())
    for name in sorted(dirs):
        _hash_folder(os.path.join(folder, name), f"{prefix}{name}/", digest, ancestors | {here})


def files_content(folder: str, names: list[str]) -> str:
    """The cache-key spelling of the named files of a folder, for a node that reads only those (a PNG-frame
    folder's *.png): `sha256:<hex>` over their names and content hashes, as `folder_digest` spells a folder.
    Never raises."""
    digest = hashlib.sha256()
    try:
        for name in sorted(names):
            full = os.path.join(folder, name)
            kind = file_digest(full) if stat.S_ISREG(os.stat(full).st_mode) else NOT_REGULAR
            digest.update(f"{name}\0{kind}\0".encode())
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return "sha256:" + digest.hexdigest()


def content_of(path: str | None) -> str:
    """The cache-key spelling of what a local path holds: `sha256:<hex>` of a file or folder, a key never given
    twice for a FIFO, socket or device (a stream), else why there is nothing to hash (the name is then keyed as
    written: a URL, a hub id, a file that does not exist yet, whose run reports it). Never raises."""
    if path is None:
        return "not a local file"
    try:
        if os.path.isdir(path):
            return "sha256:" + folder_digest(path)
        if os.path.isfile(path):
            return "sha256:" + file_digest(path)
        if os.path.exists(path):  # a FIFO or device the node reads as a stream (`<(cmd)` in a shell): its bytes
            # cannot be known without consuming them, so the key is new each time and the node is never cached
            return f"{NOT_REGULAR}, read as a stream: {secrets.token_hex(8)}"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return "missing"


def local_input_path(path: str, search_dirs: tuple[str, ...] = ()) -> str:
    """The one rule for a relative path a node reads (a video, an image, a model folder, a mask): absolute
    paths and URLs as given; a relative path that exists in the working directory is taken from there, else it
    is relative to the first of `search_dirs` (the workflow's folder) where it exists; else as given."""
    if "://" in path or posixpath.isabs(path) or os.path.isabs(path) or os.path.exists(path):
        return path
    for folder in search_dirs:
        candidate = os.path.join(folder, path)
        if os.path.exists(candidate):
            return candidate
    return path


def search_dirs(workflow_dir: str | None) -> tuple[str, ...]:
    """Local folders a relative input path is also looked up in: the workflow's folder, when it is local."""
    return tuple(d for d in (workflow_dir,) if d and "://" not in d)
