"""The one worker thread that runs jobs with one long-lived Executor, and the per-job event streams it feeds.

Models and cached node results stay in the executor between jobs. Each job writes into its own folder,
`<output dir>/jobs/<job id>/`, so no job replaces another's files (writers write through temporary names and
renames: vdgraph.outputs). Events of a job are kept in memory for the most recent jobs (previews included, for the
page) and saved without previews in the job's row when it ends (for the history and after a restart).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator
from typing import Any

from vdgraph.context import CancelToken
from vdgraph.errors import Cancelled, NodeRunError, VdgraphError, WorkflowInvalid
from vdgraph.events import Event
from vdgraph.server.store import JobStore

KEEP_STREAMS = 200
"""How many jobs' event streams (with previews) stay in memory."""


class JobEvents:
    """One job's events in order, and who is waiting for more."""

    def __init__(self) -> None:
        self.items: list[dict] = []
        self.closed = False
        self.waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()


class EventHub:
    """Event streams by job id, fed from the worker thread, read by HTTP handlers in the event loop."""

    def __init__(self, keep: int = KEEP_STREAMS) -> None:
        self.keep = keep
        self._streams: collections.OrderedDict[str, JobEvents] = collections.OrderedDict()
        self._lock = threading.Lock()

    def stream(self, job_id: str, create: bool = True) -> JobEvents | None:
        with self._lock:
            entry = self._streams.get(job_id)
            if entry is None and create:
                entry = self._streams[job_id] = JobEvents()
                while len(self._streams) > self.keep:
                    old_id, old = next(iter(self._streams.items()))
                    if not old.closed:
                        break
                    del self._streams[old_id]
            return entry

    def publish(self, job_id: str, record: dict, close: bool = False) -> None:
        entry = self.stream(job_id)
        with self._lock:
            record["seq"] = len(entry.items)
            entry.items.append(record)
            entry.closed = entry.closed or close
            waiters = list(entry.waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed: its reader is gone
                pass

    async def follow(self, job_id: str, start: int = 0) -> AsyncIterator[dict]:
        """The job's events from index `start`, waiting for new ones until the job's stream is closed."""
        entry = self.stream(job_id)
        wake = asyncio.Event()
        waiter = (asyncio.get_running_loop(), wake)
        with self._lock:
            entry.waiters.add(waiter)
        try:
            n = start
            while True:
                with self._lock:
                    wake.clear()
                    batch, closed = entry.items[n:], entry.closed
                for item in batch:
                    yield item
                n += len(batch)
                if not batch:
                    if closed:
                        return
                    await wake.wait()
        finally:
            with self._lock:
                entry.waiters.discard(waiter)


def node_state(nodes: dict[str, dict], event: Event) -> None:
    """Update the per-node states shown while a job runs from one event."""
    record = event.to_json()
    kind = record["kind"]
    if kind == "run_started":
        for node in record.get("nodes", []):
            nodes.setdefault(node, {"state": "waiting"})
        return
    node = record.get("node")
    if node is None:
        return
    entry = nodes.setdefault(node, {"state": "waiting"})
    if record.get("node_type"):
        entry["type"] = record["node_type"]
    if kind == "node_started":
        entry["state"] = "running"
    elif kind == "node_cached":
        entry["state"] = "cached"
    elif kind == "node_finished":
        entry.update(state="done", seconds=record.get("seconds", 0.0))
    elif kind == "node_error":
        entry.update(state="failed", error=record.get("error", ""))
    elif kind == "progress":
        entry.update(step=record["step"], total=record["total"])


class Worker(threading.Thread):
    """Runs queued jobs one at a time, oldest first."""

    def __init__(self, store: JobStore, hub: EventHub, make_executor: Any, output_dir: str, previews: Any,
                 recheck: Any = None) -> None:
        super().__init__(name="vdgraph-worker", daemon=True)
        self.store = store
        self.hub = hub
        self.make_executor = make_executor
        self.executor: Any = None
        self.executor_error: str | None = None
        self.output_dir = output_dir
        self.previews = previews
        self.recheck = recheck  # (job id, workflow, inputs) -> the server's problems with a job, or None
        self.plans: dict[str, Any] = {}
        """job id -> the plan validated when the job was submitted (this process only)."""
        self.live: dict[str, dict[str, dict]] = {}
        """job id -> node id -> state, for the job running now."""
        self.current: str | None = None
        self._token: CancelToken | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()  # not _stop: threading.Thread has a _stop method join() calls
        self._lock = threading.Lock()

    def live_nodes(self, job_id: str) -> dict[str, dict] | None:
        """A copy of the running job's per-node states (the worker thread updates them as events come)."""
        with self._lock:
            nodes = self.live.get(job_id)
            return None if nodes is None else {k: dict(v) for k, v in nodes.items()}

    def job_dir(self, job_id: str) -> str:
        return os.path.join(self.output_dir, "jobs", job_id)

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self.cancel_running()
        self._wake.set()
        if self.is_alive():
            self.join(timeout)

    def cancel_running(self, job_id: str | None = None) -> bool:
        """Cancel the running job (the one with `job_id`, when given); it stops at its next step."""
        with self._lock:
            if self._token is None or (job_id is not None and job_id != self.current):
                return False
            self._token.cancel()
            return True

    def run(self) -> None:
        try:
            self.executor = self.make_executor()
            self.executor.registry.load_all()  # import the packs now, not while the first job waits
        except Exception as exc:  # a device that does not exist: every job fails saying so
            self.executor_error = f"the server cannot run jobs: {exc}"
            print(f"vdgraph serve: {self.executor_error}", file=sys.stderr, flush=True)
        while not self._stopping.is_set():
            self._wake.clear()
            job = self.store.claim_next()
            if job is None:
                self._wake.wait(1.0)
                continue
            try:
                self.run_job(job)
            except Exception:  # never let one job take the worker down
                traceback.print_exc()

    def run_job(self, job: dict) -> None:
        from vdgraph.display import value_json
        from vdgraph.workflow import parse_text

        job_id = job["id"]
        token = CancelToken()
        with self._lock:
            self.current, self._token = job_id, token
        nodes: dict[str, dict] = {}
        self.live[job_id] = nodes
        started = {"kind": "job_started", "time": time.time()}
        kept: list[dict] = [dict(started)]

        def listen(event: Event) -> None:
            with self._lock:
                node_state(nodes, event)
            record = event.to_json()
            if record["kind"] != "preview":
                kept.append(dict(record))
            self.hub.publish(job_id, record)

        self.hub.publish(job_id, started)
        state, error, error_node, report, outputs = "done", None, None, None, None
        try:
            if self.executor is None:
                raise VdgraphError(self.executor_error or "the server has no executor")
            plan = self.plans.pop(job_id, None)
            if plan is None:  # queued before a restart: validated again, with the server's own checks
                workflow = parse_text(job["document"], job["source"])
                refused = [p for p in (self.recheck(job_id, workflow, job["inputs"]) if self.recheck else [])
                           if p.severity == "error"]
                if refused:
                    raise WorkflowInvalid(refused)
                plan = self.executor.plan(workflow, job["inputs"])
            result = self.executor.run(plan, cancel=token, output_dir=self.job_dir(job_id), on_event=listen,
                                       previews=self.previews)
            report = [r.to_json() for r in result.report]
            outputs = {name: self.describe_output(job_id, value, value_json) for name, value in result.outputs.items()}
        except Cancelled:
            state = "cancelled"
        except NodeRunError as exc:
            state, error, error_node = "failed", str(exc), exc.node_id
        except WorkflowInvalid as exc:
            state, error = "failed", "\n".join(str(p) for p in exc.problems)
            error_node = next((p.node for p in exc.problems if p.node), None)
        except (VdgraphError, OSError, ValueError) as exc:
            state, error = "failed", str(exc)
        except Exception as exc:  # a bug: the job fails, the server goes on
            state, error = "failed", f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            with self._lock:
                self.current, self._token = None, None
        self.store.finish(job_id, state, error=error, error_node=error_node, nodes=nodes, report=report,
                          outputs=outputs, events=kept)
        self.live.pop(job_id, None)
        record = {"kind": "job_finished", "state": state, "time": time.time()}
        if error:
            record["error"] = error
        if error_node:
            record["node"] = error_node
        self.hub.publish(job_id, record, close=True)

    def describe_output(self, job_id: str, value: Any, value_json: Any) -> Any:
        """A file or folder the job wrote as {"file": name in the job's folder, "url": download URL}; other values
        as JSON (tensors described)."""
        if isinstance(value, str) and "://" not in value:
            root = os.path.realpath(self.job_dir(job_id))
            real = os.path.realpath(value)
            if real.startswith(root + os.sep) and os.path.exists(real):
                name = os.path.relpath(real, root).replace(os.sep, "/")
                out = {"file": name, "url": f"/files/{job_id}/{name}"}
                if os.path.isdir(real):
                    out["folder"] = True
                return out
        return value_json(value)


def dumps(record: dict) -> str:
    return json.dumps(record, default=str, separators=(",", ":"))
