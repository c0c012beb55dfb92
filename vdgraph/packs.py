"""Finding node packs and importing them, without letting one broken pack stop the tool.

A pack is a Python module that exposes `NODES: list[type[Node]]`. Packs come from two kinds of places:

* installed distributions, through the `vdgraph.packs` entry-point group (pack name = entry-point name);
* folders the user configured: `./custom_nodes` if it exists, then the folders in `VDGRAPH_NODES_PATH`
  (os.pathsep-separated), then the CLI's `--nodes DIR` options. Each `*.py` file or sub-folder with an
  `__init__.py` in such a folder is one pack, named by its stem.

Later places win when overriding is allowed, so the most explicit configuration (a `--nodes` option) has the last
word. Folder packs are imported under a private module name (`vdgraph_custom.<stem>_<path hash>`), so a pack
called `json` cannot shadow the standard library and two folders may both hold a `mypack.py`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import traceback
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

ENTRY_POINT_GROUP = "vdgraph.packs"
NODES_PATH_ENV = "VDGRAPH_NODES_PATH"
ALLOW_OVERRIDE_ENV = "VDGRAPH_ALLOW_OVERRIDE"
DEFAULT_FOLDER = "custom_nodes"
PRIVATE_PACKAGE = "vdgraph_custom"

PACK_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class PackSource:
    """One place a pack is loaded from. `target` is an entry-point value (`module` or `module:attr`) or a path."""

    name: str
    kind: Literal["entry-point", "folder", "python"]
    target: str

    def __str__(self) -> str:
        where = {"entry-point": "entry point", "folder": "folder pack", "python": "registered from Python"}[self.kind]
        return f"pack {self.name!r} ({where} {self.target})" if self.target else f"pack {self.name!r} ({where})"


@dataclasses.dataclass(frozen=True)
class LoadProblem:
    """Something wrong with a pack, found while loading it. Notes (an allowed override) are not errors.

    Codes: pack.import-failed, pack.bad-nodes, pack.bad-name, pack.wrong-prefix, pack.duplicate-id,
    pack.override (a note).
    """

    code: str
    pack: str
    message: str
    file: str | None = None
    line: int | None = None
    node_ids: tuple[str, ...] = ()
    severity: Literal["error", "note"] = "error"

    @property
    def where(self) -> str:
        if self.file is None:
            return f"pack {self.pack!r}"
        return f"pack {self.pack!r} ({self.file}" + (f":{self.line})" if self.line else ")")

    def __str__(self) -> str:
        return f"{self.where}: {self.severity} [{self.code}] {self.message}"

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, ())}
        if self.node_ids:
            out["node_ids"] = list(self.node_ids)
        return out


@functools.cache
def installed_sources() -> tuple[PackSource, ...]:
    """Packs of the installed distributions (memoised: reading package metadata costs tens of milliseconds)."""
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return tuple(PackSource(ep.name, "entry-point", ep.value) for ep in sorted(found, key=lambda ep: ep.name))


def configured_folders(extra: Iterable[str] = (), env: Mapping[str, str] | None = None,
                       cwd: str | os.PathLike | None = None) -> list[Path]:
    """The pack folders in precedence order (lowest first), deduplicated; missing folders are kept for reports."""
    env = os.environ if env is None else env
    base = Path(cwd) if cwd is not None else Path.cwd()
    candidates: list[Path] = []
    if (base / DEFAULT_FOLDER).is_dir():
        candidates.append(base / DEFAULT_FOLDER)
    candidates += [Path(p) for p in env.get(NODES_PATH_ENV, "").split(os.pathsep) if p.strip()]
    candidates += [Path(p) for p in extra]
    seen: set[Path] = set()
    folders = []
    for folder in candidates:
        resolved = (base / folder).resolve()
        if resolved not in seen:
            seen.add(resolved)
            folders.append(resolved)
    return folders


def folder_sources(folders: Iterable[Path]) -> tuple[list[PackSource], list[LoadProblem]]:
    """One source per `*.py` file or package folder; a configured folder that does not exist is a problem."""
    sources, problems = [], []
    for folder in folders:
        if not folder.is_dir():
            problems.append(LoadProblem("pack.import-failed", folder.name, "the configured pack folder does not exist",
                                        file=str(folder)))
            continue
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith((".", "_")):
                continue
            if entry.is_file() and entry.suffix == ".py":
                sources.append(PackSource(entry.stem, "folder", str(entry)))
            elif entry.is_dir() and (entry / "__init__.py").is_file():
                sources.append(PackSource(entry.name, "folder", str(entry)))
    return sources, problems


def allow_override_from_env(env: Mapping[str, str] | None = None) -> bool:
    value = (os.environ if env is None else env).get(ALLOW_OVERRIDE_ENV, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def load_nodes(source: PackSource) -> tuple[list[Any], LoadProblem | None]:
    """Import the pack and return its `NODES` entries (unchecked), or the problem that prevented it."""
    if not PACK_NAME.match(source.name):
        return [], LoadProblem("pack.bad-name", source.name,
                               "a pack name must be a lowercase identifier (letters, digits, underscores)",
                               file=source.target)
    try:
        loaded = _import(source)
    except BaseException as exc:  # a pack may raise anything (even SystemExit); it must not stop the tool
        if isinstance(exc, KeyboardInterrupt):
            raise
        return [], _import_problem(source, exc)
    nodes = loaded if isinstance(loaded, (list, tuple)) else getattr(loaded, "NODES", None)
    if not isinstance(nodes, (list, tuple)):
        file = getattr(loaded, "__file__", None) or source.target
        return [], LoadProblem("pack.bad-nodes", source.name,
                               "the pack imported but defines no NODES list (NODES = [MyNode, ...])", file=file)
    return list(nodes), None


def _import(source: PackSource) -> Any:
    if source.kind == "entry-point":
        return importlib.metadata.EntryPoint(source.name, source.target, ENTRY_POINT_GROUP).load()
    return _import_folder_pack(Path(source.target), source.name)


def _import_folder_pack(path: Path, stem: str) -> types.ModuleType:
    """Import a file or package from a pack folder under a private, path-unique module name.

    Re-importing the same unchanged file in one process reuses the module (its classes stay identical, so
    registering it twice is harmless).
    """
    init = path / "__init__.py" if path.is_dir() else path
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    name = f"{PRIVATE_PACKAGE}.{stem}_{digest}"
    mtime = init.stat().st_mtime_ns
    known = sys.modules.get(name)
    if known is not None and getattr(known, "__vdgraph_mtime__", None) == mtime:
        return known
    if PRIVATE_PACKAGE not in sys.modules:
        parent = types.ModuleType(PRIVATE_PACKAGE, "folder node packs, imported by vdgraph under private names")
        parent.__path__ = []
        sys.modules[PRIVATE_PACKAGE] = parent
    search = [str(path)] if path.is_dir() else None
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=search)
    assert spec is not None and spec.loader is not None, f"cannot build an import spec for {init}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
        raise
    module.__vdgraph_mtime__ = mtime
    return module


def _import_problem(source: PackSource, exc: BaseException) -> LoadProblem:
    """Name the file and line where the import went wrong (for a syntax error: the offending line)."""
    file, line = None, None
    if isinstance(exc, SyntaxError) and exc.filename:
        file, line = exc.filename, exc.lineno
    else:
        frames = traceback.extract_tb(exc.__traceback__)
        own = [f for f in frames if not f.filename.startswith("<frozen") and "importlib" not in f.filename]
        if own:
            file, line = own[-1].filename, own[-1].lineno
    if file is None:
        file = source.target if source.kind == "folder" else _module_file(source.target)
    detail = str(exc) if not isinstance(exc, SyntaxError) else f"{exc.msg}"
    return LoadProblem("pack.import-failed", source.name, f"failed to import: {type(exc).__name__}: {detail}",
                       file=file, line=line)


def _module_file(target: str) -> str | None:
    try:
        spec = importlib.util.find_spec(target.split(":")[0])
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None else None
