"""Node types by id, the pack each came from, and what went wrong loading packs.

A `Registry` is an ordinary object, not a module global: each executor may own one, and tests build their own
with `Registry()` + `register(MyNode)`. `Registry.discover()` knows the configured pack sources but imports a
pack only when one of its node ids is asked for (a node id starts with its pack's name), so validating a workflow
of core nodes imports no other pack: not the diffusion pack, not a folder pack that hangs or fails at import.
Listing and the schema load them all; "did you mean" suggestions look only in the named pack and in packs whose
name is close to it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from vdgraph.errors import NodeConflictError
from vdgraph.node import Node
from vdgraph.packs import (
    LoadProblem,
    PackSource,
    allow_override_from_env,
    configured_folders,
    folder_sources,
    installed_sources,
    load_nodes,
    local_nodes_from_env,
    skipped_local_folder,
)


@dataclasses.dataclass(frozen=True)
class NodeEntry:
    """A registered node type and the pack source that provided it."""

    cls: type[Node]
    source: PackSource


@dataclasses.dataclass(frozen=True)
class PackStatus:
    """Where a pack was (or would be) loaded from, whether it has been imported, and the node ids it gave."""

    source: PackSource
    imported: bool
    node_ids: tuple[str, ...]

    def to_json(self) -> dict:
        return {"name": self.source.name, "kind": self.source.kind, "target": self.source.target,
                "origin": self.source.origin, "imported": self.imported, "node_ids": list(self.node_ids)}


@dataclasses.dataclass(frozen=True)
class Missing:
    """Why a node id is not available: a stable problem code, a message and a hint."""

    code: str
    message: str
    hint: str = ""


class Registry:
    """Node types by id. Sources are imported lazily, per pack name, in the order given (later wins overrides)."""

    def __init__(self, sources: Iterable[PackSource] = (), allow_override: bool = False,
                 problems: Iterable[LoadProblem] = (), skipped_folders: Iterable[Path] = ()) -> None:
        self.allow_override = allow_override
        # pack folders that exist but were not loaded because the user did not opt in (./custom_nodes)
        self.skipped_folders: tuple[Path, ...] = tuple(skipped_folders)
        self._sources: dict[str, list[PackSource]] = {}
        for source in sources:
            self._sources.setdefault(source.name, []).append(source)
        self._pending: set[str] = set(self._sources)
        self._entries: dict[str, NodeEntry] = {}
        self._conflicts: dict[str, list[NodeEntry]] = {}
        self._problems: list[LoadProblem] = list(problems)

    @classmethod
    def discover(cls, folders: Iterable[str] = (), allow_override: bool | None = None,
                 env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None,
                 entry_points: bool = True, local: bool | None = None) -> Registry:
        """A registry of the installed packs plus the configured folder packs (see `vdgraph.packs`).

        `local` loads `./custom_nodes` of `cwd` too (None: as `VDGRAPH_LOCAL_NODES` says). Nothing is imported
        here. Raises PackFolderNotFound when a folder in `folders` or `VDGRAPH_NODES_PATH` does not exist.
        """
        local = local_nodes_from_env(env) if local is None else local
        configured = configured_folders(folders, env=env, cwd=cwd, local=local)
        found = folder_sources(configured)
        sources = [*(installed_sources() if entry_points else ()), *found]
        override = allow_override_from_env(env) if allow_override is None else allow_override
        skipped = skipped_local_folder(configured, cwd)
        return cls(sources, allow_override=override, skipped_folders=() if skipped is None else (skipped,))

    # -- registering -----------------------------------------------------------------------------------------

    def register(self, node_cls: type[Node], pack: str | None = None) -> None:
        """Register a node class from Python (tests, notebooks). Raises on a wrong prefix or an id clash."""
        _check_node_class(node_cls)
        pack = pack or node_cls.id.split(".", 1)[0]
        source = PackSource(pack, "python", "")
        problem = _prefix_problem(node_cls, source)
        if problem is not None:
            raise NodeConflictError(problem.message)
        clash = self._add(NodeEntry(node_cls, source))
        if clash is not None and not self.allow_override:
            raise NodeConflictError(clash.message + " (pass allow_override=True to let the later one win)")

    def _add(self, entry: NodeEntry) -> LoadProblem | None:
        """Add an entry; returns the clash problem (or override note) when the id was already taken."""
        node_id = entry.cls.id
        known = self._entries.get(node_id)
        if known is None and node_id not in self._conflicts:
            self._entries[node_id] = entry
            return None
        if known is not None and known.cls is entry.cls:
            return None  # the same class again (a pack imported twice in one process)
        first = known or self._conflicts[node_id][0]
        if self.allow_override:
            self._entries[node_id] = entry
            self._conflicts.pop(node_id, None)
            return LoadProblem("pack.override", entry.source.name,
                               f"node {node_id!r} from {entry.source} overrides the one from {first.source}",
                               node_ids=(node_id,), severity="note")
        self._entries.pop(node_id, None)
        self._conflicts.setdefault(node_id, [first]).append(entry)
        return LoadProblem("pack.duplicate-id", entry.source.name,
                           f"node {node_id!r} is defined by both {first.source} and {entry.source}",
                           node_ids=(node_id,))

    # -- loading ---------------------------------------------------------------------------------------------

    def load_pack(self, name: str) -> None:
        """Import the sources of pack `name` now (once); unknown names are ignored."""
        self._ensure_pack(name)

    def _ensure_pack(self, name: str) -> None:
        if name not in self._pending:
            return
        self._pending.discard(name)
        for source in self._sources[name]:
            self._load_source(source)

    def _load_source(self, source: PackSource) -> None:
        nodes, problem = load_nodes(source)
        if problem is not None:
            self._problems.append(problem)
            return
        for item in nodes:
            if not (isinstance(item, type) and issubclass(item, Node) and "id" in item.__dict__):
                self._problems.append(LoadProblem(
                    "pack.bad-nodes", source.name, f"NODES holds {item!r}, which is not a Node subclass with an id",
                    file=source.target or None))
                continue
            problem = _prefix_problem(item, source) or self._add(NodeEntry(item, source))
            if problem is not None:
                self._problems.append(problem)

    def load_all(self) -> None:
        """Import every known pack (for listings, the schema and suggestions)."""
        for name in sorted(self._pending):
            self._ensure_pack(name)

    # -- looking up ------------------------------------------------------------------------------------------

    def get(self, node_id: str) -> type[Node] | None:
        """The node class for `node_id`, importing its pack on first use; None if unavailable (see `missing`)."""
        entry = self._entries.get(node_id)
        if entry is not None:
            return entry.cls
        self._ensure_pack(node_id.split(".", 1)[0])
        entry = self._entries.get(node_id)
        return entry.cls if entry is not None else None

    def missing(self, node_id: str) -> Missing:
        """Why `get(node_id)` is None: a clash between packs, a pack that failed to load, or an unknown id."""
        pack = node_id.split(".", 1)[0]
        self._ensure_pack(pack)
        if node_id in self._conflicts:
            names = " and ".join(str(e.source) for e in self._conflicts[node_id])
            return Missing("node.conflict", f"node type {node_id!r} is defined by both {names}",
                           "remove one of them, or allow the later one to win with --allow-override "
                           "(VDGRAPH_ALLOW_OVERRIDE=1)")
        failed = [p for p in self._problems if p.pack == pack and p.code in ("pack.import-failed", "pack.bad-nodes")]
        if failed:
            first = failed[0]
            return Missing("node.pack-failed",
                           f"node type {node_id!r} comes from pack {pack!r}, which failed to load: "
                           f"{first.file or '?'}{':' + str(first.line) if first.line else ''}: {first.message}",
                           f"fix the pack; `vdgraph nodes` lists every pack problem")
        suggestions = difflib.get_close_matches(node_id, self._suggestable_ids(pack), n=3, cutoff=0.6)
        hint = ("did you mean " + " or ".join(repr(s) for s in suggestions) + "?") if suggestions else (
            "`vdgraph nodes` lists the available node types")
        return Missing("node.unknown-type", f"unknown node type {node_id!r}", hint)

    def _suggestable_ids(self, pack: str) -> list[str]:
        """Ids to suggest for a mistyped one: those of packs imported so far, plus, when no pack is called `pack`,
        the packs whose name is close to it ('vidoe.decode' -> the 'video' pack). Importing every pack to suggest a
        name would run code that no workflow asked for (and hang on a pack that hangs)."""
        if pack not in self._sources:
            for name in difflib.get_close_matches(pack, list(self._sources), n=3, cutoff=0.6):
                self._ensure_pack(name)
        return sorted(self._entries)

    def packs(self) -> list[PackStatus]:
        """Every configured pack source, in load order within each pack name, with what it has given so far."""
        return [PackStatus(source, name not in self._pending,
                           tuple(sorted(k for k, e in self._entries.items() if e.source == source)))
                for name, group in self._sources.items() for source in group]

    @property
    def sources(self) -> tuple[PackSource, ...]:
        """Every configured pack source, imported or not, in load order within each pack name."""
        return tuple(source for group in self._sources.values() for source in group)

    def ids(self) -> list[str]:
        self.load_all()
        return sorted(self._entries)

    def entries(self, load_all: bool = True) -> list[NodeEntry]:
        """Registered node types by id; with `load_all=False` only those of packs imported so far."""
        if load_all:
            self.load_all()
        return [self._entries[k] for k in sorted(self._entries)]

    def problems(self, load_all: bool = True) -> list[LoadProblem]:
        """Pack load problems (errors and override notes); with `load_all=False` only of packs imported so far."""
        if load_all:
            self.load_all()
        return list(self._problems)


def _check_node_class(node_cls: object) -> None:
    if not (isinstance(node_cls, type) and issubclass(node_cls, Node) and "id" in node_cls.__dict__):
        raise TypeError(f"register() takes a Node subclass with an id, got {node_cls!r}")


def _prefix_problem(node_cls: type[Node], source: PackSource) -> LoadProblem | None:
    """Node ids are namespaced by their pack: `core.math` must come from the pack named `core`."""
    if node_cls.id.split(".", 1)[0] == source.name:
        return None
    return LoadProblem("pack.wrong-prefix", source.name,
                       f"node id {node_cls.id!r} must start with the pack name: '{source.name}.'",
                       file=source.target or None, node_ids=(node_cls.id,))
