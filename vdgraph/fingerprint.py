"""Code fingerprints: a node's cache key changes when its code changes, even if nobody bumped `version`.

The fingerprint of a node class is the sha256 of the class's name and bytecode, and of the source of its module
and of every module of its pack that its module imports, followed transitively (found with `ast`: `import a.b`,
`from a.b import c`, relative imports, imports inside functions too; nothing is imported to find them). A pack is
the top-level package of the class's module (for a folder pack, its private package). Any edit of those files
counts, comments included: a needless re-run is cheap, a stale result is not. Modules outside the pack (torch,
diffusers, the engine) are not followed: upgrading a library does not invalidate caches. Computed once per class
per process (each file is read and parsed once).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import re
import sys
import types
from typing import Any

from vdgraph.packs import PRIVATE_PACKAGE


@functools.lru_cache(maxsize=None)
def code_fingerprint(cls: type) -> str:
    """sha256 (hex, 16 digits are plenty for a key part) of the class's code and its pack modules' code."""
    digest = hashlib.sha256(_class_digest(cls).encode())
    root = _pack_root(cls.__module__)
    for name in sorted(pack_modules(cls.__module__)):
        # named relative to the pack, so a folder pack keeps its fingerprint when its folder moves
        digest.update(f"\0{name.removeprefix(root)}\0{_read(name)[0]}".encode())
    return digest.hexdigest()[:16]


def pack_modules(module: str) -> set[str]:
    """The module and every module of the same pack it imports, directly or through others."""
    root = _pack_root(module)
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(imported for imported in _read(name)[1]
                    if _pack_root(imported) == root and _origin(imported) is not None)
    return seen


def _pack_root(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == PRIVATE_PACKAGE else parts[0]


def _class_digest(cls: type) -> str:
    """The class's name and the bytecode of its own functions. Its module's source is hashed as a whole too;
    the bytecode tells apart two classes of one module with the same name (or of a module without a source
    file, built in a REPL or with exec). Line numbers and file paths are left out, so a moved folder or a
    shared cache on another machine keeps the same fingerprint."""
    digest = hashlib.sha256(cls.__qualname__.encode())
    for name, value in sorted(vars(cls).items()):
        function = getattr(value, "__func__", value)  # staticmethod, classmethod
        code = getattr(function, "__code__", None)
        if code is not None:
            digest.update(name.encode() + b"\0")
            _hash_code(code, digest)
    return digest.hexdigest()


def _hash_code(code: types.CodeType, digest: Any) -> None:
    digest.update(code.co_code)
    digest.update(repr((code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars)).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _hash_code(const, digest)
        else:
            digest.update(repr(const).encode())


def _origin(module: str) -> str | None:
    """The source file of a module, found without importing anything: the loaded module's file, or a path
    under the nearest loaded parent package (`a/b.py` or `a/b/__init__.py`). None when there is no .py file."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        path = getattr(loaded, "__file__", None)
        return path if isinstance(path, str) and path.endswith(".py") and os.path.isfile(path) else None
    parts = module.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        parent = sys.modules.get(".".join(parts[:cut]))
        search = getattr(parent, "__path__", None) if parent is not None else None
        if search is None:
            continue
        for folder in list(search):
            base = os.path.join(folder, *parts[cut:])
            for path in (base + ".py", os.path.join(base, "__init__.py")):
                if os.path.isfile(path):
                    return path
        return None
    return None


def _read(module: str) -> tuple[str, tuple[str, ...]]:
    """(digest, imported module names) of a module's source; ("no-source", ()) without a .py file."""
    path = _origin(module)
    if path is None:
        return "no-source", ()
    stat = os.stat(path)
    package = module if os.path.basename(path) == "__init__.py" else module.rpartition(".")[0]
    return _file_digest(path, package, stat.st_mtime_ns, stat.st_size)


# an import statement: `from m import (a,\n b)`, lines continued with a backslash, or one line
_IMPORT_STATEMENT = re.compile(r"^[ \t]*(?:from[ \t]+[\w.]+[ \t]+import[ \t]*\([^)]*\)"
                               r"|(?:from|import)[ \t](?:[^\\\n]|\\[\s\S])*)", re.MULTILINE)


@functools.lru_cache(maxsize=None)
def _file_digest(path: str, package: str, mtime_ns: int, size: int) -> tuple[str, tuple[str, ...]]:
    """(sha256 of the source, absolute names of what it imports: modules, or names that may be modules) of one
    source file; keyed by mtime and size too, so an edited file is read again."""
    with open(path, "rb") as handle:
        source = handle.read()
    digest = hashlib.sha256(source).hexdigest()
    names: list[str] = []
    # only the import statements are parsed: parsing whole files costs far more, for nothing else needed here
    for match in _IMPORT_STATEMENT.finditer(source.decode("utf-8", "replace")):
        try:
            statement = ast.parse(match.group(0).strip()).body[0]
        except (SyntaxError, ValueError, IndexError):  # an import-like line inside a string
            continue
        if isinstance(statement, ast.Import):
            names += [alias.name for alias in statement.names]
        elif isinstance(statement, ast.ImportFrom):
            base = _absolute(statement.module, statement.level, package)
            if base is None:
                continue
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in statement.names if alias.name != "*"]
    return digest, tuple(dict.fromkeys(names))


def _absolute(module: str | None, level: int, package: str | None) -> str | None:
    if level == 0:
        return module
    if not package:
        return None
    parts = package.split(".")
    if level - 1 > len(parts) - 1:
        return None
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{module}" if module else base
