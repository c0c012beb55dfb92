"""One exception root for everything vdgraph raises on purpose.

A user-facing failure is always a `VdgraphError`; the CLI prints those without a traceback. Library exceptions
that cause one are chained (`raise NodeRunError(...) from exc`), never swallowed.
"""

from __future__ import annotations

import dataclasses
from typing import Literal


class VdgraphError(Exception):
    """Root of every error vdgraph raises deliberately."""


class NodeDeclarationError(VdgraphError, TypeError):
    """A node class is declared wrongly (raised at import time, when the class statement runs)."""


class NodeConflictError(VdgraphError):
    """Two node classes claim the same node id and overriding was not allowed."""


class PackFolderNotFound(VdgraphError):
    """A node-pack folder the user configured (`--nodes`, `VDGRAPH_NODES_PATH`) does not exist."""


class PackImportInterrupted(KeyboardInterrupt):
    """Ctrl-C while a pack was being imported; the message names the pack and the file (and line) it was in.

    Still a KeyboardInterrupt, so code that stops on Ctrl-C keeps doing so; it only says where it happened, which
    is what a user needs when a pack hangs at import.
    """


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong (or suspicious) in a workflow, located as precisely as we can.

    `code` is stable and documented (tests and tools may match on it); `message` and `hint` are for people.
    """

    code: str
    message: str
    hint: str = ""
    node: str | None = None
    port: str | None = None
    severity: Literal["error", "warning"] = "error"
    file: str | None = None
    line: int | None = None
    column: int | None = None

    @property
    def where(self) -> str:
        place = self.file or "<workflow>"
        if self.line is not None:
            place += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        if self.node is not None:
            place += f": {self.node}" + (f".{self.port}" if self.port else "")
        elif self.port is not None:
            place += f": {self.port}"
        return place

    def __str__(self) -> str:
        text = f"{self.where}: {self.severity} [{self.code}] {self.message}"
        return text + (f" (hint: {self.hint})" if self.hint else "")

    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and v != ""}


class WorkflowInvalid(VdgraphError):
    """A workflow has errors; nothing was run. `problems` holds every one of them (warnings too)."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        errors = [p for p in self.problems if p.severity == "error"]
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"workflow is invalid ({len(errors)} error(s)):\n{lines}")


class NodeRunError(VdgraphError):
    """A node raised while running. The original exception is chained as `__cause__`."""

    def __init__(self, node_id: str, node_type: str, message: str):
        self.node_id = node_id
        self.node_type = node_type
        super().__init__(f"node {node_id!r} ({node_type}) failed: {message}")


class Cancelled(VdgraphError):
    """The run was cancelled (Ctrl-C or a `CancelToken`); completed nodes stay cached."""


class CacheUnavailable(VdgraphError):
    """The persistent cache named by `--cache` / `cache_dir` cannot be used; raised before anything runs."""

    def __init__(self, url: str, why: str, hint: str):
        self.url = url
        shown = url if len(url) <= 200 else url[:197] + "..."
        super().__init__(f"cannot use {shown!r} as the persistent cache: {why} (hint: {hint})")
