"""Finding node packs and importing them, without letting one broken pack stop the tool.

A pack is a Python module that exposes `NODES: list[type[Node]]`. Importing a pack runs its code, so packs come
only from places the user configured:

* installed distributions, through the `vdgraph.packs` entry-point group (pack name = entry-point name);
* folders: the user's config folder (`$XDG_CONFIG_HOME/vdgraph/custom_nodes`, by default
  `~/.config/vdgraph/custom_nodes`) if it exists; `./custom_nodes` of the working directory only when opted in
  (`--local-nodes`, `VDGRAPH_LOCAL_NODES=1`), because a folder of someone else's workflows may ship one; then the
  folders in `VDGRAPH_NODES_PATH` (os.pathsep-separated); then the CLI's `--nodes DIR` options. A folder named
  in `VDGRAPH_NODES_PATH` or `--nodes` that does not exist is an error, not silently skipped. Each `*.py` file or
  sub-folder with an `__init__.py` in such a folder is one pack, named by its stem.

Later places win when overriding is allowed, so the most explicit configuration (a `--nodes` option) has the last
word. Folder packs are imported under a private module name (`vdgraph_custom.<stem>_<path hash>`), so a pack
called `json` cannot shadow the standard library and two folders may both hold a `mypack.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import threading
import traceback
import types
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from vdgraph.errors import PackFolderNotFound, PackImportInterrupted

ENTRY_POINT_GROUP = "vdgraph.packs"
NODES_PATH_ENV = "VDGRAPH_NODES_PATH"
LOCAL_NODES_ENV = "VDGRAPH_LOCAL_NODES"
ALLOW_OVERRIDE_ENV = "VDGRAPH_ALLOW_OVERRIDE"
DEFAULT_FOLDER = "custom_nodes"
PRIVATE_PACKAGE = "vdgraph_custom"

PACK_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class PackSource:
    """One place a pack is loaded from. `target` is an entry-point value (`module` or `module:attr`) or a path.

    `origin` says which setting made vdgraph look there (for a folder pack: `--nodes`, `VDGRAPH_NODES_PATH`,
    `user folder`, `--local-nodes`); it is for reports and does not take part in comparisons.
    """

    name: str
    kind: Literal["entry-point", "folder", "python"]
    target: str
    origin: str = dataclasses.field(default="", compare=False)

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


@dataclasses.dataclass(frozen=True)
class PackFolder:
    """A folder of packs and the setting that named it."""

    path: Path
    origin: str


def user_folder(env: Mapping[str, str] | None = None) -> Path | None:
    """The user's own pack folder: `$XDG_CONFIG_HOME/vdgraph/custom_nodes`, else `~/.config/vdgraph/custom_nodes`
    (`%APPDATA%\\vdgraph\\custom_nodes` on Windows); None when `env` names no home at all."""
    env = os.environ if env is None else env
    if env.get("XDG_CONFIG_HOME", "").strip():
        base = Path(env["XDG_CONFIG_HOME"])
    elif os.name == "nt" and env.get("APPDATA", "").strip():
        base = Path(env["APPDATA"])
    elif env.get("HOME", "").strip():
        base = Path(env["HOME"]) / ".config"
    else:
        return None
    return base / "vdgraph" / DEFAULT_FOLDER


def local_nodes_from_env(env: Mapping[str, str] | None = None) -> bool:
    return _flag((os.environ if env is None else env).get(LOCAL_NODES_ENV, ""))


def configured_folders(extra: Iterable[str] = (), env: Mapping[str, str] | None = None,
                       cwd: str | os.PathLike | None = None, local: bool = False) -> list[PackFolder]:
    """The pack folders in precedence order (lowest first), deduplicated.

    The user folder and `./custom_nodes` are defaults, taken only when they exist (`./custom_nodes` only with
    `local`); folders named in `VDGRAPH_NODES_PATH` or `extra` are kept even when missing, for `folder_sources`
    to refuse.
    """
    env = os.environ if env is None else env
    base = Path(cwd) if cwd is not None else Path.cwd()
    candidates: list[PackFolder] = []
    home = user_folder(env)
    if home is not None and home.is_dir():
        candidates.append(PackFolder(home, "user folder"))
    if local and (base / DEFAULT_FOLDER).is_dir():
        candidates.append(PackFolder(base / DEFAULT_FOLDER, "--local-nodes"))
    candidates += [PackFolder(Path(p), NODES_PATH_ENV) for p in env.get(NODES_PATH_ENV, "").split(os.pathsep)
                   if p.strip()]
    candidates += [PackFolder(Path(p), "--nodes") for p in extra]
    seen: set[Path] = set()
    folders = []
    for folder in candidates:
        resolved = (base / folder.path).resolve()
        if resolved not in seen:
            seen.add(resolved)
            folders.append(PackFolder(resolved, folder.origin))
    return folders


def skipped_local_folder(folders: Iterable[PackFolder], cwd: str | os.PathLike | None = None) -> Path | None:
    """`./custom_nodes` when it exists but none of `folders` is it (the user did not opt in): worth a note."""
    local = ((Path(cwd) if cwd is not None else Path.cwd()) / DEFAULT_FOLDER).resolve()
    if not local.is_dir() or any(folder.path == local for folder in folders):
        return None
    return local


def folder_sources(folders: Iterable[PackFolder]) -> list[PackSource]:
    """One source per `*.py` file or package folder. Raises PackFolderNotFound naming every configured folder that
    does not exist (or is not a folder): a mistyped `--nodes` must not leave the user wondering where the nodes are.
    """
    sources, missing = [], []
    for folder in folders:
        if not folder.path.is_dir():
            state = "is not a folder" if folder.path.exists() else "does not exist"
            missing.append(f"{str(folder.path)!r} (from {folder.origin}) {state}")
            continue
        for entry in sorted(folder.path.iterdir()):
            if entry.name.startswith((".", "_")):
                continue
            if entry.is_file() and entry.suffix == ".py":
                sources.append(PackSource(entry.stem, "folder", str(entry), folder.origin))
            elif entry.is_dir() and (entry / "__init__.py").is_file():
                sources.append(PackSource(entry.name, "folder", str(entry), folder.origin))
    if missing:
        raise PackFolderNotFound("node pack folder " + "; ".join(missing) +
                                 ": fix the path, or remove it from --nodes / " + NODES_PATH_ENV)
    return sources


def allow_override_from_env(env: Mapping[str, str] | None = None) -> bool:
    return _flag((os.environ if env is None else env).get(ALLOW_OVERRIDE_ENV, ""))


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def load_nodes(source: PackSource) -> tuple[list[Any], LoadProblem | None]:
    """Import the pack and return its `NODES` entries (unchecked), or the problem that prevented it."""
    if not PACK_NAME.match(source.name):
        return [], LoadProblem("pack.bad-name", source.name,
                               "a pack name must be a lowercase identifier (letters, digits, underscores)",
                               file=source.target)
    try:
        with _IMPORT_LOCK, _exit_raises():
            loaded = _import(source)
    except PackImportInterrupted:
        raise
    except KeyboardInterrupt as exc:  # Ctrl-C, typically because the pack hangs: say which pack, and where
        file, line = _failure_place(exc)
        at = f", at {file}:{line}" if file and line else ""
        raise PackImportInterrupted(f"interrupted while importing {source}{at}") from exc
    except BaseException as exc:  # a pack may raise anything (even SystemExit); it must not stop the tool
        return [], _import_problem(source, exc)
    nodes = loaded if isinstance(loaded, (list, tuple)) else getattr(loaded, "NODES", None)
    if not isinstance(nodes, (list, tuple)):
        file = getattr(loaded, "__file__", None) or source.target
        return [], LoadProblem("pack.bad-nodes", source.name,
                               "the pack imported but defines no NODES list (NODES = [MyNode, ...])", file=file)
    return list(nodes), None


class _ExitCalled(BaseException):
    """What os._exit raises while a pack is being imported (see `_exit_raises`)."""

    def __init__(self, status: object) -> None:
        super().__init__(status)
        self.status = status


_IMPORT_LOCK = threading.RLock()  # one pack import at a time: `_exit_raises` swaps a process-wide function


@contextlib.contextmanager
def _exit_raises() -> Iterator[None]:
    """Make os._exit raise instead of ending the process, for the duration of a pack's import.

    os._exit ends the process on the spot: no exception to catch, no `finally`, no output, and the exit status is
    whatever the pack passed (0 reads as success). A pack that calls it while being imported (a script's
    `os._exit(main())` pasted into a pack) would make vdgraph stop silently. While a pack is imported, os._exit
    raises `_ExitCalled`, which becomes a pack.import-failed problem like any other exception (sys.exit raises
    SystemExit and needs no help); the real function is restored in `finally`. This guards against accidents, not
    malice: a pack's code runs with the user's rights and could end the process by other means, which is why
    packs are imported only from places the user configured.
    """
    real_exit = os._exit

    def refuse_exit(status: int) -> None:
        raise _ExitCalled(status)

    os._exit = refuse_exit
    try:
        yield
    finally:
        os._exit = real_exit


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
    file, line = _failure_place(exc, _pack_root(source))
    if file is None:
        file = source.target if source.kind == "folder" else _module_file(source.target)
    if isinstance(exc, _ExitCalled):
        detail = (f"the pack called os._exit({exc.status!r}) while being imported, which would end vdgraph "
                  "silently; a pack must only define its nodes when imported")
    elif isinstance(exc, SystemExit):
        detail = (f"the pack called sys.exit({exc.code!r}) (SystemExit) while being imported; a pack must only "
                  "define its nodes when imported")
    else:
        detail = f"failed to import: {type(exc).__name__}: " + (exc.msg if isinstance(exc, SyntaxError) else
                                                                 _safe_str(exc))
    return LoadProblem("pack.import-failed", source.name, detail, file=file, line=line)


def _failure_place(exc: BaseException, root: str | None = None) -> tuple[str | None, int | None]:
    """Where in the pack the import went wrong: the innermost frame of the pack's own files (under `root`), so a
    declaration error raised inside the engine (a bad port type) names the pack's line that declared it; else the
    innermost frame outside vdgraph's engine and importlib (for a syntax error: the offending line)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return exc.filename, exc.lineno
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<frozen") and "importlib" not in f.filename]
    if root is not None:
        own = [f for f in frames if _is_under(f.filename, root)]
        if own:
            return own[-1].filename, own[-1].lineno
    engine = os.path.dirname(os.path.abspath(__file__))
    outside = [f for f in frames if not _is_under(f.filename, engine)]
    return (outside[-1].filename, outside[-1].lineno) if outside else (None, None)


def _is_under(file: str, root: str) -> bool:
    try:
        return os.path.commonpath([os.path.abspath(file), root]) == root
    except ValueError:  # different drives, or a relative and an absolute path
        return False


def _pack_root(source: PackSource) -> str | None:
    """The folder holding the pack's own source files (a folder pack's folder, an entry point's package)."""
    if source.kind == "folder":
        return os.path.abspath(source.target)
    origin = _module_file(source.target) if source.kind == "entry-point" else None
    if origin is None:
        return None
    return os.path.dirname(os.path.abspath(origin)) if os.path.basename(origin) == "__init__.py" else origin


def _safe_str(exc: BaseException) -> str:
    """str(exc), or a stand-in when the pack's exception cannot even describe itself."""
    try:
        return str(exc)
    except Exception:  # a hostile __str__ must not turn a load problem into a traceback
        return f"<{type(exc).__name__} whose message cannot be shown>"


def _module_file(target: str) -> str | None:
    try:
        spec = importlib.util.find_spec(target.split(":")[0])
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None else None
