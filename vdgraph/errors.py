"""One exception root for everything vdgraph raises on purpose.

A user-facing failure is always a `VdgraphError`; the CLI prints those without a traceback. Library exceptions
that cause one are chained (`raise NodeRunError(...) from exc`), never swallowed.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Literal


class VdgraphError(Exception):
    """Root of every error vdgraph raises deliberately."""


class ReentrantRun(VdgraphError, RuntimeError):
    """`Executor.run` was called from inside a run of the same executor (an event listener or a node)."""


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

    def __post_init__(self) -> None:
        # the last guard against a message that echoes megabytes: whatever a check quoted from the file (a name,
        # a type, a link), no run of text without spaces stays longer than LONGEST_WORD characters
        for field in ("message", "hint", "node", "port"):
            text = getattr(self, field)
            if isinstance(text, str) and len(text) > LONGEST_WORD:
                object.__setattr__(self, field, cut_long_words(text))

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


class LocationUnavailable(VdgraphError, ValueError):
    """A path or URL to write names a filesystem this process cannot use: an unknown protocol (`bogus://x`), or
    one whose package is not installed (`s3://` without s3fs)."""


# -- values in messages -------------------------------------------------------------------------------------------

SHORT = 60
"""About how many characters of a value a message shows."""

LONGEST_WORD = 200
"""No run of characters without a space in a Problem is longer than this (see `cut_long_words`)."""

_LONG_WORD = re.compile(r"\S{%d,}" % (LONGEST_WORD + 1))


def cut_long_words(text: str) -> str:
    """`text` with every run of non-space characters over LONGEST_WORD cut to SHORT and its length stated."""
    return _LONG_WORD.sub(lambda m: f"{m.group()[:SHORT]}... ({len(m.group()):,} characters)", text)


def short_repr(value: Any, limit: int = SHORT) -> str:
    """repr(value) cut to about `limit` characters, for messages that echo what the user wrote.

    Safe on any value: an integer too long for str() (Python refuses over 4,300 digits), a string of megabytes,
    a list nested thousands deep, an object whose __repr__ raises. Long values keep their start and say their size.
    """
    return _short(value, limit, depth=2)


def _short(value: Any, limit: int, depth: int) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return _short_int(value, limit)
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{repr(value[:limit])[:-1]}...{repr(value)[0]} ({len(value):,} characters)"
    if isinstance(value, (list, tuple, dict)):
        return _short_container(value, limit, depth)
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a message must never fail because of the value it shows
        return f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[:limit] + "..."


def _short_int(value: int, limit: int) -> str:
    bits = value.bit_length()
    if bits > 14_000:  # over ~4,200 digits: str() may raise, and nobody reads the digits anyway
        return f"<an integer of about {int(bits * math.log10(2)) + 1:,} digits>"
    text = repr(value)
    if len(text) <= limit:
        return text
    digits = len(text.lstrip("-"))
    return f"{text[:limit // 2]}...{text[-6:]} ({digits:,} digits)"


def _short_container(value: list | tuple | dict, limit: int, depth: int) -> str:
    opening, closing = {list: "[]", tuple: "()", dict: "{}"}.get(type(value), "[]")
    if depth <= 0:
        return f"{opening}...{closing}"
    parts: list[str] = []
    used = 0
    items = value.items() if isinstance(value, dict) else value
    for item in items:
        if isinstance(value, dict):
            key, val = item
            part = f"{_short(key, limit // 2, depth - 1)}: {_short(val, limit // 2, depth - 1)}"
        else:
            part = _short(item, limit // 2, depth - 1)
        if used + len(part) > limit and parts:
            parts.append("...")
            break
        parts.append(part)
        used += len(part) + 2
    text = opening + ", ".join(parts) + ("," if isinstance(value, tuple) and len(value) == 1 else "") + closing
    if parts and parts[-1] == "...":
        text += f" ({len(value):,} items)"
    return text


def describe_exception(exc: BaseException, limit: int = 2_000) -> str:
    """`Type: message` of an exception, even when its __str__ raises or returns megabytes."""
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a node's broken exception must still give a usable message
        message = f"<the exception's message could not be shown: its __str__ raised> args={short_repr(exc.args)}"
    if not isinstance(message, str):
        message = short_repr(message)
    if len(message) > limit:
        message = message[:limit] + f"... ({len(message):,} characters)"
    name = type(exc).__name__
    return f"{name}: {message}" if message else name
