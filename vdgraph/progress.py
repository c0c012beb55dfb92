"""Event listeners for the command line: progress bars on stderr, and the event stream as JSON lines."""

from __future__ import annotations

import json
from typing import IO, Any

from vdgraph.events import Event, NodeError, NodeFinished, NodeStarted, Progress


class ProgressBars:
    """One tqdm bar per node that reports progress ticks; closed when the node ends."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.bars: dict[str, Any] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            bar = self.bars.get(event.node or "")
            if bar is None:
                from tqdm import tqdm

                bar = tqdm(total=event.total, desc=event.node, file=self.stream, leave=False, dynamic_ncols=True)
                self.bars[event.node or ""] = bar
            bar.total = event.total
            bar.n = event.step
            if event.message:
                bar.set_postfix_str(event.message, refresh=False)
            bar.refresh()
        elif isinstance(event, (NodeFinished, NodeError)):
            self.close(event.node or "")
        elif isinstance(event, NodeStarted):
            self.stream.write(f"running {event.node} ({event.node_type})" +
                              (f": {event.reason}" if event.reason else "") + "\n")

    def close(self, node: str | None = None) -> None:
        for name in [node] if node is not None else list(self.bars):
            bar = self.bars.pop(name, None)
            if bar is not None:
                bar.close()


class EventLog:
    """Writes each event as one JSON line and flushes, so the file can be followed while the run goes on."""

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle

    def __call__(self, event: Event) -> None:
        self.handle.write(json.dumps(event.to_json(), default=str) + "\n")
        self.handle.flush()
