"""The typed event stream of a run. Listeners receive these in order; `to_json()` gives one JSON line each.

Order within one run: `run_started`, then for each visited node in topological order either `node_cached`, or
`node_started`, any number of `progress` (and `preview`, when the run asked for previews), and `node_finished` or `node_error`; finally `run_finished` (also after
a failure or a cancellation, with `error` / `cancelled` set). A `cache_warning` comes right before the
`node_started` of a node whose disk cache entry was unusable, and right after the `node_finished` of a node whose
outputs could not be written to the disk cache.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, Literal


@dataclasses.dataclass(frozen=True)
class Event:
    kind: Literal["run_started", "node_started", "node_cached", "node_finished", "progress", "node_error",
                  "cache_warning", "run_finished", "preview"]
    node: str | None = None
    node_type: str | None = None
    time: float = dataclasses.field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        """The event as one JSON-able dict (fields that are None left out)."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None:
                out[field.name] = list(value) if isinstance(value, tuple) else value
        return out


Listener = Callable[[Event], None]
"""Anything that receives events: a function, a bound method, a queue's put."""


@dataclasses.dataclass(frozen=True)
class RunStarted(Event):
    kind: Literal["run_started"] = "run_started"
    nodes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class NodeStarted(Event):
    kind: Literal["node_started"] = "node_started"
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class NodeCached(Event):
    kind: Literal["node_cached"] = "node_cached"
    source: Literal["memory", "disk"] = "memory"


@dataclasses.dataclass(frozen=True)
class NodeFinished(Event):
    kind: Literal["node_finished"] = "node_finished"
    seconds: float = 0.0
    peak_bytes: int | None = None


@dataclasses.dataclass(frozen=True)
class Progress(Event):
    kind: Literal["progress"] = "progress"
    step: int = 0
    total: int = 0
    message: str = ""


@dataclasses.dataclass(frozen=True)
class Preview(Event):
    """A small picture of what a running node is making (the denoiser's current x0 prediction, for example), sent
    every few steps when the run asks for previews (`vdgraph.previews.PreviewSettings`). `image` is the PNG file's
    bytes, base64-encoded (so the event stays one JSON line); `frames` how many video frames it shows side by side;
    `source` how it was made (`latent_rgb`: a fitted linear map from latents to colours; `vae`: a real decode)."""

    kind: Literal["preview"] = "preview"
    step: int = 0
    total: int = 0
    image: str = ""
    width: int = 0
    height: int = 0
    frames: int = 0
    source: str = ""


@dataclasses.dataclass(frozen=True)
class NodeError(Event):
    kind: Literal["node_error"] = "node_error"
    error: str = ""


@dataclasses.dataclass(frozen=True)
class CacheWarning(Event):
    """The disk cache entry of `node` at `path` could not be used (it runs again and rewrites it) or written
    (the run goes on without it). `node` is None for the explain history written at the end of a run."""

    kind: Literal["cache_warning"] = "cache_warning"
    message: str = ""
    path: str = ""


@dataclasses.dataclass(frozen=True)
class RunFinished(Event):
    kind: Literal["run_finished"] = "run_finished"
    seconds: float = 0.0
    ran: int = 0
    cached: int = 0
    cancelled: bool = False
    error: str | None = None
