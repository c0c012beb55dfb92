"""Why a node re-ran: its recipe compared with the one it had the last time it was visited, and what became of
that visit (stored, not storable, cancelled, ...) when the recipe is the same.

Recipes of the last visit are kept per (workflow name, node id) in the executor; with a disk cache they are
also saved as JSON under the cache root, so a second process can explain its re-runs too.
"""

from __future__ import annotations

import hashlib
from typing import Any

from vdgraph.diskcache import DiskCache


class RecipeMemory:
    """The last recipe of each node, per workflow name. Belongs to one executor (no global state)."""

    def __init__(self, disk: DiskCache | None = None) -> None:
        self.disk = disk
        self._workflows: dict[str, dict[str, dict]] = {}

    def previous(self, workflow: str) -> dict[str, dict]:
        """node id -> last recipe for this workflow (loaded from the disk cache on first use)."""
        known = self._workflows.get(workflow)
        if known is None:
            stored = self.disk.read_json(_store_name(workflow)) if self.disk is not None else None
            nodes = stored.get("nodes") if isinstance(stored, dict) else None
            # a hand-edited or damaged file is ignored record by record, never trusted blindly
            known = {node: record for node, record in nodes.items() if _well_formed(record)} if isinstance(
                nodes, dict) else {}
            self._workflows[workflow] = known
        return known

    def remember(self, workflow: str, recipes: dict[str, dict]) -> None:
        self.previous(workflow).update(recipes)

    def save(self, workflow: str) -> None:
        """Raises CacheWriteError (naming the path) when the disk cache cannot be written."""
        if self.disk is not None:
            self.disk.write_json(_store_name(workflow), {"workflow": workflow, "nodes": self.previous(workflow)})


def _store_name(workflow: str) -> str:
    return f"explain/{hashlib.sha256(workflow.encode()).hexdigest()[:24]}.json"


def _well_formed(record: Any) -> bool:
    """Whether a stored record has every shape `reason` reads: a file another process (or a person) wrote may
    hold anything, and a record that does not fit is forgotten (the node is explained as a first run), never a
    crash of every later run with --explain."""
    if not isinstance(record, dict):
        return False
    if not all(isinstance(record.get(part, {}), dict) for part in ("runtime", "params", "inputs", "links", "names")):
        return False
    names = record.get("names", {})
    if not all(isinstance(names.get(part, {}), dict) for part in ("inputs", "links")):
        return False
    return all(isinstance(link, list) for link in record.get("links", {}).values())


def reason(before: dict | None, now: dict, volatile_upstream: set[str], unusable: str | None = None,
           persistent: bool = False) -> str:
    """A short sentence: why the node runs. `unusable` says what was wrong with the cache entry found for it, if
    one was found; else every change between the last recipe and this one (joined by '; '); else, with the
    same recipe, what became of the last visit (`persistent`: the history was kept with a disk cache)."""
    if "nonce" in now:
        return now.get("volatile", "non-deterministic: runs every time")
    if unusable is not None:
        return unusable
    if before is None:
        return "first run"
    changes: list[str] = []
    if before.get("type") != now["type"]:
        changes.append(f"node type changed {before.get('type')} -> {now['type']}")
    elif before.get("version") != now["version"]:
        changes.append(f"version changed {before.get('version')} -> {now['version']}")
    elif "code" in before and before["code"] != now["code"]:
        changes.append("code changed (its module, or a module of its pack that it imports, was edited)")
    for fact, value in now["runtime"].items():
        old = before.get("runtime", {}).get(fact)
        if old != value:
            changes.append(f"{fact} changed {old} -> {value}")
    changes += _param_changes(before.get("params", {}), now["params"])
    if before.get("content") != now.get("content"):
        changes.append("the content of a file it reads changed")
    changes += _input_changes(before, now)
    changes += _link_changes(before, now, volatile_upstream)
    if changes:
        return "; ".join(dict.fromkeys(changes))  # one upstream node feeding several ports is named once
    return _repeat_reason(before.get("outcome"), persistent)


def _repeat_reason(outcome: Any, persistent: bool) -> str:
    """Why a node whose recipe did not change is not in the cache: what became of its last visit."""
    if not isinstance(outcome, str):  # a history written before outcomes were recorded
        return "same recipe as last time, but not in the cache"
    if outcome.startswith("not stored: "):
        return outcome
    if outcome in ("stored", "served"):
        return ("same recipe as last time, but its cache entry is gone (deleted, or the cache was cleared)"
                if persistent else "same recipe as last time, but evicted from the memory cache (cache_bytes)")
    return _LAST_VISIT.get(outcome, "same recipe as last time, but not in the cache")


_LAST_VISIT = {"cancelled": "cancelled while it ran last time", "failed": "failed last time",
               "interrupted": "interrupted while it ran last time",
               "not reached": "the last run stopped before reaching it"}


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _param_changes(before: dict, now: dict) -> list[str]:
    return [f"param {name} changed {_show(before.get(name, '<unset>'))} -> {_show(now.get(name, '<unset>'))}"
            for name in sorted(set(before) | set(now)) if before.get(name, _UNSET) != now.get(name, _UNSET)]


_UNSET = object()


def _input_changes(before: dict, now: dict) -> list[str]:
    out = []
    names = now.get("names", {}).get("inputs", {})
    old_names = before.get("names", {}).get("inputs", {})
    for port, value in now["inputs"].items():
        name = names.get(port, port)
        if port not in before.get("inputs", {}):
            out.append(f"input {port} now comes from workflow input {name}")
        elif old_names.get(port, name) != name:
            out.append(f"input {port} now comes from workflow input {name} (was {old_names[port]})")
        elif before["inputs"][port] != value:
            out.append(f"workflow input {name} changed {_show(before['inputs'][port])} -> {_show(value)}")
    return out


def _link_changes(before: dict, now: dict, volatile_upstream: set[str]) -> list[str]:
    out = []
    names = now.get("names", {}).get("links", {})
    old_links = before.get("links", {})
    old_names = before.get("names", {}).get("links", {})
    for port, link in now["links"].items():
        source = names.get(port)
        if port not in old_links:
            out.append(f"input {port} is now linked from {source}")
        elif old_names.get(port, source) != source:
            out.append(f"input {port} is now linked from {source} (was {old_names[port]})")
        elif old_links[port] != link:
            out += _upstream_changes(old_links[port], link, source, volatile_upstream)
    for port in old_links:
        if port not in now["links"]:
            out.append(f"input {port} is no longer linked")
    return out


def _upstream_changes(before: list, now: list, source: str | list[str], volatile_upstream: set[str]) -> list[str]:
    """Which upstream nodes of one port changed: a single link is [key, output]; a gathered list is a list of
    those, compared item by item."""
    if isinstance(source, list):
        changed = [name for name, old, new in zip(source, before, now) if old != new] or source
    else:
        changed = [source]
    return [f"upstream node {name} is non-deterministic" if name in volatile_upstream
            else f"upstream node {name} changed" for name in changed]
