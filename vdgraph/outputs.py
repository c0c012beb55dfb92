"""The run's output folder: every node that writes a file asks it for its target, and nothing else decides.

Rules (docs/engine.md, "Output files"), the same for every writer:

- A target name is relative to the output folder. An absolute path or a URL is accepted only when it lies inside
  the folder; `..`, an empty name, `.`, a name that resolves to the folder itself or leaves it (through `..`, an
  absolute path, a URL or a symbolic link) is refused, unless the run allows writing outside
  (`allow_outside=True`, `--allow-outside-output-dir`).
- An existing target is never replaced unless the run overwrites (`overwrite=True`, `--overwrite`): the writer
  adds a counter instead (`clip.mp4` -> `clip_00001.mp4`, one more than the highest already there). A name may
  hold `{counter}` (always numbered), `{workflow}`, `{node}` and any workflow input (`{seed}`); field values are
  made filename-safe. The chosen name is reserved atomically (`O_EXCL` for a file, `mkdir` for a folder), so two
  concurrent runs never pick the same one.
- Nothing is deleted that vdgraph did not write. A folder vdgraph writes (PNG frames) gets a marker file,
  `.vdgraph-output`, listing the files it wrote; with overwrite, an existing folder is replaced only when it holds
  that marker and nothing but the files it lists (or nothing at all: the reservation of a write that was killed).
  A target that is a symbolic link, a device, a pipe or a socket is never replaced.
- Stale temporaries (`<name>.tmp-<12 hex digits>` files or folders of an earlier write that was killed, untouched
  for `STALE_SECONDS`) beside a target are removed before the next write into that folder, inside the output
  folder only (a target outside it, allowed with `allow_outside`, lies in a folder that is not vdgraph's). A
  folder so named is removed only when it holds nothing vdgraph would not have written there (frame images, a
  recipe, the marker, as plain files): a user's folder that merely has such a name is left alone.

Local folders get all of this; on remote filesystems (fsspec URLs) the existence check and the reservation are
separate calls (no atomic reservation exists there) and stale temporaries are not looked for.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import posixpath
import re
import shutil
import stat
import time
from collections.abc import Mapping
from typing import Any

from vdgraph.errors import VdgraphError, short_repr
from vdgraph.io import filesystem, temporary_name

MARKER = ".vdgraph-output"
"""The file inside every folder vdgraph writes; it lists the files written there."""
STALE_SECONDS = 15 * 60
COUNTER_DIGITS = 5
MAX_COUNTER_TRIES = 100_000
_TEMPORARY = re.compile(r"\.tmp-[0-9a-f]{12}$")
_OURS_IN_A_FOLDER = re.compile(r"frame_\d{5,}\.(?:png|jpg|webp)|recipe\.json|" + re.escape(MARKER))
"""What a PNG-frame folder being written holds (video_io.write_image_frames, its recipe and marker)."""
_FIELD = re.compile(r"\{(\w*)\}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_FIELD_CHARS = 48


class OutputRefused(VdgraphError, ValueError):
    """A writer's target is not allowed: outside the output folder, not a file name, or not vdgraph's to replace."""


def safe_field(value: Any) -> str:
    """`value` as a piece of a file name: letters, digits, `.`, `_` and `-` only, no leading dot, at most 48."""
    text = _UNSAFE.sub("_", str(value)).strip("_").lstrip(".")
    return text[:_FIELD_CHARS] or "_"


class OutputFolder:
    """Where one run's writers put their files; `for_node` gives the view a node's `RunContext` carries.

    `root` is a local folder or an fsspec URL (created on the first write, not before). `fields` are the values
    a target name may use as `{name}` (the executor passes the workflow's name and input values).
    """

    def __init__(self, root: str | os.PathLike, *, overwrite: bool = False, allow_outside: bool = False,
                 fields: Mapping[str, Any] | None = None, node: str | None = None,
                 option: str = "--output-dir DIR, output_dir=",
                 outside_hint: str = "use a name inside the output folder, or allow writing outside it with "
                                     "--allow-outside-output-dir (allow_outside_output_dir=True in Python)") -> None:
        """`option` (how the user named the folder) and `outside_hint` (what a refused target outside it should
        do instead) are for messages: a caller with other options says its own (the previews, the server)."""
        if isinstance(root, os.PathLike):
            root = os.fspath(root)
        if not isinstance(root, str):
            raise TypeError(f"output_dir must be a folder path or URL (str or os.PathLike), got {root!r}")
        if not root.strip():
            raise OutputRefused("output_dir is empty (--output-dir ''): name the folder the run writes into (the "
                                "default is 'out')")
        if "://" not in root:
            root = os.path.expanduser(root)  # '~/out' is in the home folder, as for --cache (never a folder '~')
        _check_root(root, option)
        self.root = root
        self.overwrite = bool(overwrite)
        self.allow_outside = bool(allow_outside)
        self.fields = dict(fields or {})
        self.node = node
        self.outside_hint = outside_hint
        self.protected: frozenset[str] = frozenset()
        """Real paths no writer may replace, even with overwrite: the workflow file the run reads, and what else
        the run was made from (Executor.run's `protect`: the output a --from run reads its recipe from)."""

    def for_node(self, node_id: str) -> OutputFolder:
        view = copy.copy(self)  # the root was checked once, when the run made its folder
        view.fields, view.node = dict(self.fields), node_id
        return view

    def __repr__(self) -> str:
        return (f"OutputFolder({self.root!r}, overwrite={self.overwrite}, allow_outside={self.allow_outside}"
                + (f", node={self.node!r})" if self.node else ")"))

    def claim(self, name: str, *, port: str = "path", folder: bool = False, companion: str = "") -> Claim:
        """The target for `name` (a file, or a folder with `folder=True`), checked now and reserved on entering:

            with ctx.outputs.claim(path, port="path") as target:
                write the file at `target` (through a temporary name and a rename, as vdgraph.io.atomic_write does)

        On success a folder gets its marker; on failure the reservation is undone and a folder moved aside for
        overwriting is put back. `port` names the input the name came from, for messages. `companion` is the
        suffix of a file written beside the target (a recipe sidecar, ".recipe.json"): a name whose companion is
        taken counts as taken too (unless overwriting), so an old sidecar never passes for the new file's.
        """
        where = f"node {self.node!r} port {port!r}" if self.node else f"port {port!r}"
        expanded = self._expand(name, where)
        return Claim(self, self._resolve(expanded, name, where), folder, where, companion)

    # -- names ---------------------------------------------------------------------------------------------------

    def _expand(self, name: Any, where: str) -> str:
        if not isinstance(name, str):
            raise OutputRefused(f"{where}: the target must be a file name (str), got {type(name).__name__}")
        fields = {**self.fields, **({"node": self.node} if self.node else {})}

        def field(match: re.Match) -> str:
            key = match.group(1)
            if key == "counter":
                return match.group(0)  # filled in when the name is reserved
            if key not in fields:
                known = ", ".join(["counter", *sorted(fields)])
                raise OutputRefused(f"{where}: {short_repr(name)} uses the unknown field {{{key}}} "
                                    f"(known: {known})")
            return safe_field(fields[key])

        expanded = _FIELD.sub(field, name)
        head, _, tail = expanded.replace("\\", "/").rstrip("/").rpartition("/")
        if "{counter}" in head:
            raise OutputRefused(f"{where}: {short_repr(name)} has {{counter}} in a folder name; put it in the "
                                "file name")
        if tail.count("{counter}") > 1:
            raise OutputRefused(f"{where}: {short_repr(name)} has {{counter}} more than once")
        return expanded

    def _resolve(self, text: str, given: str, where: str) -> str:
        """The target path or URL for the expanded name `text`; refuses what leaves the folder."""
        outside_hint = self.outside_hint
        text = _local(text)
        last = text.replace("\\", "/").rstrip("/").rpartition("/")[2]
        if not text.strip() or last in ("", ".", ".."):
            raise OutputRefused(f"{where}: {short_repr(given)} names no file; give a file or folder name such as "
                                f"'clip.mp4' (it goes into the output folder {self.root!r})")
        if "\0" in text:  # the OS refuses it in any path (os.path.realpath raises ValueError)
            raise OutputRefused(f"{where}: {short_repr(given)} holds a NUL character, which no file name can hold; "
                                "remove it")
        root = _local(self.root)
        is_url, root_is_url = "://" in text, "://" in root
        if is_url:
            target = text.rstrip("/")
        elif os.path.isabs(text):
            target = os.path.normpath(text)
        elif root_is_url:
            target = root.rstrip("/") + "/" + posixpath.normpath(text.replace("\\", "/"))
        else:
            target = os.path.normpath(os.path.join(root, text))
        if not is_url and not root_is_url and _same_place(target, root):
            raise OutputRefused(f"{where}: {short_repr(given)} is the output folder itself; give a file name")
        if self.allow_outside:
            return target
        if ".." in re.split(r"[\\/]", text):
            raise OutputRefused(f"{where}: {short_repr(given)} leaves the output folder {self.root!r} ('..'); "
                                f"{outside_hint}")
        if root_is_url or is_url:
            if not (root_is_url and target.startswith(root.rstrip("/") + "/")):
                raise OutputRefused(f"{where}: {short_repr(given)} is outside the output folder {self.root!r}; "
                                    f"{outside_hint}")
            return target
        root_real = os.path.realpath(root)
        real = os.path.join(os.path.realpath(os.path.dirname(target)), os.path.basename(target))
        if not real.startswith(root_real.rstrip(os.sep) + os.sep):
            how = "is" if os.path.isabs(text) else f"resolves through a symbolic link to {real!r},"
            raise OutputRefused(f"{where}: {short_repr(given)} {how} outside the output folder {self.root!r}; "
                                f"{outside_hint}")
        return target


class Claim:
    """One writer's target: checked by `OutputFolder.claim`, reserved by `with`, finished or undone on exit."""

    def __init__(self, outputs: OutputFolder, target: str, folder: bool, where: str, companion: str = "") -> None:
        self.outputs = outputs
        self.requested = target
        self.folder = folder
        self.where = where
        self.companion = companion
        self.path = ""
        """The final path or URL, set on entering."""
        self._files = _Files.for_target(target)
        self._reserved = False
        self._aside: str | None = None

    def __enter__(self) -> str:
        files = self._files
        parent = files.parent(self.requested)
        files.makedirs(parent)
        if _inside(parent, self.outputs.root):  # outside (--allow-outside-output-dir) nothing is vdgraph's to clean
            files.remove_stale_temporaries(parent)
        name = files.basename(self.requested)
        if "{counter}" in name:
            prefix, _, suffix = name.partition("{counter}")
            self.path = self._reserve_numbered(parent, prefix, suffix)
        elif (self.outputs.overwrite or not self._companion_taken(self.requested)) \
                and files.reserve(self.requested, self.folder):
            self.path, self._reserved = self.requested, True
        elif self.outputs.overwrite:
            self.path = self.requested
            self._prepare_overwrite()
        else:
            stem, ext = posixpath.splitext(name)
            self.path = self._reserve_numbered(parent, f"{stem}_", ext)
        return self.path

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        files = self._files
        if kind is None:
            if self.folder:
                files.mark(self.path)
            if self._aside is not None:
                files.remove_tree(self._aside)  # the replaced folder: vdgraph's, checked on entering
            return
        with contextlib.suppress(OSError):  # undo, keeping the writer's error as the one reported
            if self._aside is not None:
                files.remove_if_empty(self.path)
                files.move(self._aside, self.path)
            elif self._reserved:
                files.remove_if_empty(self.path)

    def _reserve_numbered(self, parent: str, prefix: str, suffix: str) -> str:
        pattern = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix) + r"$")
        taken = [int(m.group(1)) for n in self._files.listdir(parent) if (m := pattern.match(n))]
        start = max(taken, default=0) + 1
        for counter in range(start, start + MAX_COUNTER_TRIES):
            candidate = self._files.join(parent, f"{prefix}{counter:0{COUNTER_DIGITS}d}{suffix}")
            if not self._companion_taken(candidate) and self._files.reserve(candidate, self.folder):
                self._reserved = True
                return candidate
        raise OutputRefused(f"{self.where}: no free name like {prefix}{'N' * COUNTER_DIGITS}{suffix} in {parent!r} "
                            f"after {MAX_COUNTER_TRIES} tries")

    def _companion_taken(self, path: str) -> bool:
        if not self.companion:
            return False
        other = path + self.companion
        return self._files.islink(other) or self._files.isdir(other) or self._files.isfile(other)

    def _refuse_protected(self, path: str) -> None:
        if "://" not in path and os.path.realpath(path) in self.outputs.protected:
            raise OutputRefused(f"{self.where}: {path!r} is what this run reads (its workflow, or the output its "
                                f"recipe comes from); vdgraph never replaces it, even with --overwrite: choose "
                                f"another name or output folder")

    def check_replaceable(self) -> None:
        """Before anything runs (Executor): with overwrite, refuse an existing target that no write could replace,
        whether the node writes a file or a folder there: a link, a file the run reads, a folder vdgraph did not
        write (or that holds what it did not write), a device or pipe. What depends on which the node writes is
        checked when it writes."""
        files, path = self._files, self.requested
        if not self.outputs.overwrite or "{counter}" in files.basename(path):
            return
        if files.islink(path):
            self._refuse_link(path)
        if files.isdir(path):
            self._refuse_protected(path)
            self._refuse_foreign(path)
        elif files.isfile(path):
            self._refuse_protected(path)
        elif "://" not in path and os.path.lexists(path):
            self._refuse_special(path)

    def _refuse_link(self, path: str) -> None:
        raise OutputRefused(f"{self.where}: {path!r} is a symbolic link; vdgraph never replaces links, even "
                            f"with --overwrite: choose another name")

    def _refuse_special(self, path: str) -> None:
        raise OutputRefused(f"{self.where}: {path!r} is not a regular file (a device, a pipe or a socket); "
                            f"vdgraph replaces only files, even with --overwrite: choose another name")

    def _refuse_foreign(self, path: str) -> None:
        foreign = self._files.foreign_entries(path)
        if foreign is not None:
            listed = ", ".join(repr(n) for n in foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            why = (f"holds files vdgraph did not write ({listed})" if foreign
                   else f"was not written by vdgraph (it has no {MARKER} marker)")
            raise OutputRefused(f"{self.where}: the folder {path!r} {why}; vdgraph never deletes what it did not "
                                f"write, even with --overwrite: choose another name, or remove it yourself")

    def _prepare_overwrite(self) -> None:
        """Check that the existing target may be replaced; a folder is moved aside until the write succeeds."""
        files, path = self._files, self.path
        if files.islink(path):
            self._refuse_link(path)
        is_dir = files.isdir(path)
        if not self.folder:
            if is_dir:
                raise OutputRefused(f"{self.where}: {path!r} is a folder and this node writes a file; choose "
                                    f"another name (vdgraph never deletes a folder to write a file)")
            if not files.isfile(path):
                self._refuse_special(path)
            self._refuse_protected(path)
            return  # the writer replaces the file atomically
        if not is_dir:
            raise OutputRefused(f"{self.where}: {path!r} is a file and this node writes a folder; choose another "
                                f"name")
        self._refuse_protected(path)
        self._refuse_foreign(path)
        self._aside = temporary_name(path)
        files.move(path, self._aside)
        if not files.reserve(path, folder=True):
            files.move(self._aside, path)
            self._aside = None
            raise OutputRefused(f"{self.where}: {path!r} was created by someone else while it was being replaced")


class _Files:
    """The few filesystem operations a claim needs: local ones with os (atomic), others through fsspec."""

    @staticmethod
    def for_target(target: str) -> _Files:
        if "://" not in target:
            return _LocalFiles()
        import fsspec

        return _RemoteFiles(fsspec.core.url_to_fs(target)[0])


class _LocalFiles(_Files):
    def parent(self, path: str) -> str:
        return os.path.dirname(path) or "."

    def basename(self, path: str) -> str:
        return os.path.basename(path)

    def join(self, parent: str, name: str) -> str:
        return os.path.join(parent, name)

    def makedirs(self, path: str) -> None:
        try:
            os.makedirs(path, exist_ok=True)
        except FileExistsError as exc:
            raise OSError(exc.errno, "a file is in the way of the output folder", path) from exc

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def reserve(self, path: str, folder: bool) -> bool:
        """Create `path` (an empty file or folder) only if nothing is there; False if something is."""
        try:
            if folder:
                os.mkdir(path)
            else:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), 0o666))
        except FileExistsError:
            return False
        return True

    def islink(self, path: str) -> bool:
        return os.path.islink(path)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def isfile(self, path: str) -> bool:
        return _is_plain_file(path)

    def move(self, source: str, target: str) -> None:
        os.rename(source, target)

    def remove_tree(self, path: str) -> None:
        shutil.rmtree(path)

    def remove_if_empty(self, path: str) -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            os.rmdir(path)  # raises when not empty: then it is not ours to remove
        elif os.lstat(path).st_size == 0:
            os.remove(path)

    def mark(self, folder: str) -> None:
        names = sorted(n for n in os.listdir(folder) if n != MARKER)
        with open(os.path.join(folder, MARKER), "w", encoding="utf-8") as handle:
            json.dump({"written_by": "vdgraph", "files": names}, handle, indent=1)

    def foreign_entries(self, folder: str) -> list[str] | None:
        """None when vdgraph wrote `folder` and it holds nothing else, or when it is empty (replacing it deletes
        nothing: it is typically the reservation of a write that was killed); else what it holds that vdgraph did
        not write (an empty list: the marker is missing or unreadable)."""
        if not os.listdir(folder):
            return None
        try:
            with open(os.path.join(folder, MARKER), encoding="utf-8") as handle:
                listed = set(json.load(handle)["files"])
        except (OSError, ValueError, KeyError, TypeError):
            return []
        present = [n for n in sorted(os.listdir(folder)) if n != MARKER]
        foreign = [n for n in present if n not in listed or not self._ours(os.path.join(folder, n))]
        return foreign or None

    def _ours(self, path: str) -> bool:
        """A listed entry is still vdgraph's: a plain file, or a folder (not a link) that is itself marked and
        holds nothing else (a sweep's job folders, a frame folder inside one)."""
        if _is_plain_file(path):
            return True
        return os.path.isdir(path) and not os.path.islink(path) and self.foreign_entries(path) is None

    def remove_stale_temporaries(self, folder: str) -> None:
        now = time.time()
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                if not _TEMPORARY.search(entry.name):
                    continue
                with contextlib.suppress(OSError):
                    info = entry.stat(follow_symlinks=False)
                    if now - info.st_mtime < STALE_SECONDS:
                        continue  # perhaps a write still under way
                    if stat.S_ISDIR(info.st_mode):
                        if self._only_ours(entry.path):
                            shutil.rmtree(entry.path)
                    else:
                        os.remove(entry.path)

    def _only_ours(self, folder: str) -> bool:
        """A temporary folder vdgraph may remove: its marker lists all it holds, or it holds only plain files named
        as a frame-folder write names them (a write killed before its marker)."""
        if self.foreign_entries(folder) is None:
            return True
        return all(_OURS_IN_A_FOLDER.fullmatch(name) and _is_plain_file(os.path.join(folder, name))
                   for name in os.listdir(folder))


class _RemoteFiles(_Files):
    def __init__(self, fs: Any) -> None:
        self.fs = fs
        self.protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]

    def _path(self, url: str) -> str:
        return self.fs._strip_protocol(url)

    def parent(self, url: str) -> str:
        return url.rstrip("/").rsplit("/", 1)[0]

    def basename(self, url: str) -> str:
        return url.rstrip("/").rsplit("/", 1)[1]

    def join(self, parent: str, name: str) -> str:
        return f"{parent.rstrip('/')}/{name}"

    def makedirs(self, url: str) -> None:
        self.fs.makedirs(self._path(url), exist_ok=True)

    def listdir(self, url: str) -> list[str]:
        try:
            return [posixpath.basename(p.rstrip("/")) for p in self.fs.ls(self._path(url), detail=False)]
        except FileNotFoundError:
            return []

    def reserve(self, url: str, folder: bool) -> bool:
        """Not atomic (no filesystem call can be): False when the target exists; nothing is created."""
        return not self.fs.exists(self._path(url))

    def islink(self, url: str) -> bool:
        return False

    def isdir(self, url: str) -> bool:
        return self.fs.isdir(self._path(url))

    def isfile(self, url: str) -> bool:
        return True  # fsspec filesystems hold no devices or pipes

    def move(self, source: str, target: str) -> None:
        self.fs.mv(self._path(source), self._path(target), recursive=True)

    def remove_tree(self, url: str) -> None:
        self.fs.rm(self._path(url), recursive=True)

    def remove_if_empty(self, url: str) -> None:
        path = self._path(url)
        if self.fs.exists(path) and self.fs.isdir(path) and not self.fs.ls(path, detail=False):
            self.fs.rm(path, recursive=True)

    def mark(self, url: str) -> None:
        names = sorted(n for n in self.listdir(url) if n != MARKER)
        text = json.dumps({"written_by": "vdgraph", "files": names}, indent=1)
        self.fs.pipe(self._path(url).rstrip("/") + "/" + MARKER, text.encode())

    def foreign_entries(self, url: str) -> list[str] | None:
        if not self.listdir(url):
            return None  # empty: replacing it deletes nothing
        try:
            listed = set(json.loads(self.fs.cat(self._path(url).rstrip("/") + "/" + MARKER))["files"])
        except (OSError, ValueError, KeyError, TypeError):
            return []
        present = [n for n in self.listdir(url) if n != MARKER]
        return [n for n in present if n not in listed] or None

    def remove_stale_temporaries(self, url: str) -> None:
        return None  # modification times are not uniform across fsspec filesystems


def _check_root(root: str, option: str = "--output-dir DIR, output_dir=") -> None:
    """Refuse, before anything runs, an output folder no write could use: a URL whose protocol is unknown or not
    installed, or a local path where a file is (or is above it), or a path that is not Unicode text (a non-UTF-8
    byte of the command line arrives as a lone surrogate: the file would be written, then every path naming it
    refused as an output). Nothing is created here."""
    try:
        root.encode("utf-8")
    except UnicodeEncodeError:
        raise OutputRefused(f"the output folder {root!r} is not Unicode text (it holds a byte that is not UTF-8); "
                            "name a folder whose name is UTF-8") from None
    if "://" in _local(root):
        filesystem(root)  # raises LocationUnavailable; connects to nothing
        return
    path = os.path.abspath(_local(root))
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        where = "is a file" if path == os.path.abspath(_local(root)) else f"is inside the file {path!r}"
        raise OutputRefused(f"the folder {root!r} {where}; name a folder ({option})")


def mark_folder(path: str) -> None:
    """Write the marker of a folder vdgraph filled through its own writes (a sweep's job folder), so that a later
    overwrite may replace it: local folders only (elsewhere nothing is looked up by marker)."""
    files = _Files.for_target(path)
    if isinstance(files, _LocalFiles) and os.path.isdir(path):
        files.mark(path)


def _is_plain_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _inside(path: str, root: str) -> bool:
    """Whether the local `path` is the folder `root` or lies in it (symbolic links resolved)."""
    if "://" in path or "://" in _local(root):
        return False
    real, real_root = os.path.realpath(path), os.path.realpath(_local(root))
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def _same_place(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _local(text: str) -> str:
    """A `file://` URL as the local path it names (everything local goes through os, atomically)."""
    return text[len("file://"):] if text.startswith("file://") else text

