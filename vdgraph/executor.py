"""Running a workflow: validate, key every node, serve what the caches hold, run the rest in topological order.

The executor owns everything a run touches (memory cache, disk cache, last recipes, listeners); nothing lives
in module globals, so two executors in one process share no cache, progress or cancellation.

Demand-driven: all cache keys are computed first (they hash recipes, not data), then resolution walks back from
the requested outputs. A node whose outputs are cached needs nothing upstream: a second process with a warm
disk cache of the final outputs does not even load the models, and one resuming after a cancellation rebuilds
only the models the interrupted node needs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from vdgraph.cache import DEFAULT_CACHE_BYTES, MemoryCache
from vdgraph.context import CancelToken, RunContext
from vdgraph.arguments import (
    check_inputs_argument,
    check_listener_argument,
    check_registry_argument,
    check_run_arguments,
)
from vdgraph.diskcache import CacheWriteError, DiskCache, UnusableEntry
from vdgraph.errors import (
    Cancelled,
    NodeRunError,
    Problem,
    ReentrantRun,
    VdgraphError,
    WorkflowInvalid,
    describe_exception,
)
from vdgraph.events import (
    CacheWarning,
    Event,
    Listener,
    NodeCached,
    NodeError,
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from vdgraph.explain import RecipeMemory, reason
from vdgraph.immutability import changed_inputs, input_versions
from vdgraph.keys import cache_key, file_links, recipe, recipe_names
from vdgraph.outputs import OutputFolder
from vdgraph.persist import NotPersistable
from vdgraph.previews import PreviewSettings
from vdgraph.plan import InputRef, LinkRef, NodePlan, Plan
from vdgraph.recipe import json_value
from vdgraph.registry import Registry
from vdgraph.representable import unrepresentable
from vdgraph.runtime import resolve_device, resolve_dtype
from vdgraph.validate import check, validate
from vdgraph.workflow import Workflow, load_workflow

Status = Literal["ran", "cached-memory", "cached-disk"]


@dataclasses.dataclass(frozen=True)
class NodeReport:
    """What happened to one node in a run. `seconds` is the node's wall time, or for `cached-disk` the time
    spent reading its outputs (0 for `cached-memory`)."""

    id: str
    type: str
    status: Status
    seconds: float = 0.0
    peak_bytes: int | None = None
    reason: str | None = None
    """Why it ran (with `explain=True`): first run, which param / input / upstream node changed ..."""
    key: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True)
class RunResult:
    outputs: dict[str, Any]
    """Requested output name -> value (tensors stay tensors)."""
    report: list[NodeReport]
    """One entry per node visited, in the order they were visited."""
    seconds: float = 0.0

    @property
    def ran(self) -> list[str]:
        return [r.id for r in self.report if r.status == "ran"]

    @property
    def cached(self) -> list[str]:
        return [r.id for r in self.report if r.status != "ran"]

    def __getitem__(self, name: str) -> Any:
        return self.outputs[name]


class Executor:
    """Runs workflows repeatedly with one shared cache (one run at a time; use one executor per thread for
    parallel runs, or cancel a run from another thread through its CancelToken).

    `device` is auto, cpu, cuda or cuda:N; `dtype` defaults to float16 on CUDA and float32 elsewhere; both are
    part of every cache key. `cache_bytes` bounds the memory cache; `cache_dir` (a path or fsspec URL) adds the
    persistent cache (CacheUnavailable, at once, when it cannot be used). `on_event` receives every event of
    every run.
    """

    def __init__(self, registry: Registry | None = None, device: Any = "auto", dtype: Any = None,
                 cache_bytes: int = DEFAULT_CACHE_BYTES, cache_dir: str | None = None,
                 on_event: Listener | None = None) -> None:
        check_registry_argument(registry)
        check_listener_argument(on_event)
        self.registry = registry if registry is not None else Registry.discover()
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.cache = MemoryCache(cache_bytes)
        if cache_dir is not None and not str(cache_dir).strip():
            raise ValueError("cache_dir is empty: give a folder or fsspec URL, or None for no persistent cache")
        self.disk = DiskCache(cache_dir) if cache_dir is not None else None
        self.recipes = RecipeMemory(self.disk)
        self.listeners: list[Listener] = [on_event] if on_event is not None else []
        self.runtime = {"device": str(self.device), "dtype": str(self.dtype).removeprefix("torch.")}
        self._lock = threading.Lock()  # one run at a time per executor: the caches are not shared concurrently
        self._running_in: int | None = None  # the thread running a workflow now (a listener runs in it too)

    def validate(self, workflow: Workflow | str | Mapping, inputs: Mapping[str, Any] | None = None) -> list[Problem]:
        """Every problem of the workflow with these run inputs (missing required inputs included)."""
        check_inputs_argument(inputs)
        return validate(load_workflow(workflow), self.registry, inputs, require_inputs=True)

    def plan(self, workflow: Workflow | str | Mapping, inputs: Mapping[str, Any] | None = None) -> Plan:
        """The compiled workflow; raises WorkflowInvalid (with every problem) when it has errors."""
        check_inputs_argument(inputs)
        problems, plan = check(load_workflow(workflow), self.registry, inputs, require_inputs=True)
        if plan is None:
            raise WorkflowInvalid(problems)
        return plan

    def run(self, workflow: Workflow | Plan | str | Mapping, inputs: Mapping[str, Any] | None = None,
            outputs: Iterable[str] | None = None, cancel: CancelToken | None = None,
            output_dir: str | os.PathLike = "out", explain: bool = False, on_event: Listener | None = None,
            overwrite: bool = False, allow_outside_output_dir: bool = False,
            previews: PreviewSettings | None = None, protect: Iterable[str | os.PathLike] = ()) -> RunResult:
        """Validate, then compute the requested outputs (all declared outputs by default).

        Raises WorkflowInvalid before running anything, NodeRunError (the node's exception chained) when a node
        fails, and Cancelled when `cancel` is triggered; what completed before stays cached either way.
        A `Plan` from `executor.plan()` (or `vdgraph.validate.check`) is run as is: it already holds its inputs.
        `outputs` is a list of output names (one name as a str is fine). Arguments of the wrong type are a
        TypeError naming the argument; calling `run` from inside this executor's own run (an event listener, a
        node) is a ReentrantRun error: it would wait for itself forever.

        Files go into `output_dir` (a folder or fsspec URL, created on the first write); an existing file is
        replaced only with `overwrite`, else a counter is added to the new name; a target outside the folder is
        refused unless `allow_outside_output_dir` (vdgraph.outputs has the rules). No writer replaces the workflow
        file being run, nor the local paths in `protect` (the output a `--from` run reads its recipe from), even
        with `overwrite`.
        `previews` (vdgraph.previews.PreviewSettings) asks nodes that can for `preview` events while they run.
        """
        if self._running_in == threading.get_ident():
            raise ReentrantRun("Executor.run was called from inside a run of the same executor (an event listener "
                               "or a node): it would wait for itself forever; use a second Executor, or start the "
                               "next run after this one returns")
        outputs = check_run_arguments(inputs, outputs, cancel, on_event)
        if previews is not None and not isinstance(previews, PreviewSettings):
            raise TypeError(f"previews must be a vdgraph.previews.PreviewSettings or None, got {previews!r}")
        folder = OutputFolder(output_dir, overwrite=overwrite, allow_outside=allow_outside_output_dir)
        if isinstance(workflow, Plan):
            if inputs:
                raise ValueError("a Plan already holds its inputs; pass the workflow itself to set inputs")
            plan = workflow
        else:
            plan = self.plan(workflow, inputs)
        names = _requested(plan, outputs)
        listeners = self.listeners + ([on_event] if on_event is not None else [])
        folder.fields = {"workflow": plan.workflow.display_name, **plan.input_values}  # for names like {seed}
        source = plan.workflow.source  # the file being run is never an output, even with overwrite
        read = [source] if source else []
        folder.protected = frozenset(os.path.realpath(os.fspath(p)) for p in [*read, *protect]
                                     if "://" not in os.fspath(p))
        with self._lock:
            self._running_in = threading.get_ident()
            try:
                return _Run(self, plan, names, cancel or CancelToken(), folder, explain, listeners,
                            previews).execute()
            finally:
                self._running_in = None


    def sweep(self, workflow: Workflow | str | Mapping, sweeps: Mapping[str, Iterable[Any]],
              inputs: Mapping[str, Any] | None = None, outputs: Iterable[str] | None = None, **kwargs: Any):
        """Run `workflow` once per combination of the swept inputs' values (`{"seed": range(4), "prompt": [...]}`;
        the last input varies fastest), all through this executor, so what the swept inputs do not reach runs
        once. Every job is validated before the first runs. Returns a `vdgraph.sweep.SweepResult`: per job its
        values, output folder and RunResult, the sweep's folder and its grid contact sheet.

        Keyword arguments: `output_dir`, `overwrite`, `allow_outside_output_dir` as for `run` (each job writes into
        its own subfolder of `<output_dir>/<workflow>_sweep`), `on_job(job, total)` called after each job,
        `sheet=False` to skip the grid contact sheet, and `run`'s `cancel`, `explain`, `on_event`.
        """
        from vdgraph.sweep import run_sweep

        return run_sweep(self, workflow, sweeps, inputs, outputs, **kwargs)


def _requested(plan: Plan, outputs: list[str] | None) -> list[str]:
    if outputs == []:
        declared = ", ".join(plan.outputs)
        raise WorkflowInvalid([plan.workflow.problem(
            "output.none", "outputs=[] requests no output, so nothing would run",
            f"pass outputs=None for all of them, or name some: {declared}")])
    names = list(plan.outputs) if outputs is None else outputs
    unknown = [n for n in names if n not in plan.outputs]
    if unknown:
        declared = ", ".join(plan.outputs)
        raise WorkflowInvalid([plan.workflow.problem("output.unknown", f"requested output {n!r} is not declared",
                                                     f"declared outputs: {declared}", port=n) for n in unknown])
    return names


class _Run:
    """The state of one run. Created per call, so nothing leaks from one run into the next."""

    def __init__(self, executor: Executor, plan: Plan, names: list[str], token: CancelToken,
                 outputs: OutputFolder, explain: bool, listeners: list[Listener],
                 previews: PreviewSettings | None = None) -> None:
        self.ex = executor
        self.previews = previews
        self.plan = plan
        self.names = names
        self.token = token
        self.outputs = outputs
        self.explain = explain
        self.listeners = listeners
        self.workflow_name = plan.workflow.display_name
        self.workflow_dir = plan.workflow.directory
        self.cuda = executor.device.type == "cuda"
        self.keys: dict[str, str] = {}
        self.recipes: dict[str, dict] = {}
        self.volatile: set[str] = set()
        self.values: dict[str, dict[str, Any]] = {}
        self.to_run: set[str] = set()
        self.done: set[str] = set()
        # nodes that ran and would give other outputs on the next run even with the drawn values put back as
        # literals: non-deterministic ones, and those fed by one over a link whose value is not JSON
        self.unrepeatable: set[str] = set()
        self.linked_values: dict[str, Any] = {}  # "node.port" -> the JSON value it received over a link
        self.drawn: dict[str, Any] = {}  # the same for links from unrepeatable nodes (None: not JSON)  # nodes this run has served or run (their values are in self.values)
        self.served: dict[str, Status] = {}  # node id -> where its cached outputs came from
        self.unusable: dict[str, UnusableEntry] = {}  # node id -> what was wrong with its disk cache entry
        self.outcomes: dict[str, str] = {}  # node id -> what became of it: stored, not stored: why, served ...
        self.load_seconds: dict[str, float] = {}  # time spent reading disk-cached outputs
        self.report: list[NodeReport] = []

    def emit(self, event: Event) -> None:
        for listener in self.listeners:
            listener(event)

    def check_targets(self, visit: list[str]) -> None:
        """Refuse, before any node runs, a file a writer will not be allowed to write (outside the output folder,
        not a file name, or with overwrite an existing target no write may replace): minutes of denoising must not
        end in a refused target. Targets are checked, not reserved; the writer reserves its name when it runs."""
        for node_id in visit:
            if node_id not in self.to_run:
                continue
            node = self.plan.nodes[node_id]
            for port in node.cls.inputs:
                if not port.output_path:
                    continue
                if port.name in node.inputs:
                    ref = node.inputs[port.name]
                    value = self.plan.input_values.get(ref.name)
                else:
                    value = node.params.get(port.name)
                if isinstance(value, str):  # a name linked from another node's output is checked when written
                    self.outputs.for_node(node_id).claim(value, port=port.name).check_replaceable()

    def execute(self) -> RunResult:
        start = time.perf_counter()
        needed = self.plan.needed(self.names)
        self.compute_keys(needed)
        visited: list[str] = []
        keep = {ref.node for name in self.names if isinstance(ref := self.plan.outputs[name], LinkRef)}
        try:
            while len(self.keys) < len(needed):  # a key waits on a file a link names: compute what feeds the link
                sources = self.file_sources(needed)
                assert sources, "a key waits on no file source: compute_keys and file_sources disagree"
                visit = self.resolve(needed, sources)
                self.visit(visit, visited, keep | set(visit))  # kept: the last pass may read them too
                self.compute_keys(needed)
            visit = self.resolve(needed, {ref.node for name in self.names
                                          if isinstance(ref := self.plan.outputs[name], LinkRef)})
            self.visit(visit, visited, keep)
        except Cancelled:
            self.remember(visited, "cancelled")
            self.finish(start, cancelled=True)
            raise
        except VdgraphError as exc:
            self.remember(visited, "failed")
            self.finish(start, error=str(exc))
            raise
        except BaseException:
            self.remember(visited, "interrupted")
            raise
        self.remember(visited)
        outputs = {name: self.output_value(self.plan.outputs[name]) for name in self.names}
        seconds = self.finish(start)
        return RunResult(outputs, self.report, seconds)

    def visit(self, visit: list[str], visited: list[str], keep: set[str]) -> None:
        """Serve or run each node of `visit` in order (the first call announces the run: `run_started`)."""
        self.check_targets(visit)
        if not visited:  # nodes whose keys wait on files that links name may be visited later: announced here too
            waiting = [node_id for node_id in self.plan.needed(self.names) if node_id not in self.keys]
            self.emit(RunStarted(nodes=tuple(visit + waiting)))
        visited.extend(visit)
        remaining = self.count_consumers(visit)
        for node_id in visit:
            if self.token.cancelled:
                raise Cancelled(f"cancelled before node {node_id!r}")
            if node_id in self.to_run:
                self.run_node(self.plan.nodes[node_id])
                self.release_inputs(self.plan.nodes[node_id], remaining, keep)
            else:
                self.serve_cached(node_id)
            self.done.add(node_id)

    def remember(self, visit: list[str], stopped: str = "failed") -> None:
        """Keep each visited node's recipe and what became of it, for `--explain` in later runs; `stopped` is what
        happened to a node that was running when the run ended early (cancelled, failed, interrupted)."""
        history = {}
        for node_id in visit:
            outcome = self.outcomes.get(node_id, "not reached")
            history[node_id] = {**self.recipes[node_id], "outcome": stopped if outcome == "running" else outcome}
        self.ex.recipes.remember(self.workflow_name, history)
        try:
            self.ex.recipes.save(self.workflow_name)
        except CacheWriteError as exc:
            self.emit(CacheWarning(message=f"{exc}; later processes cannot explain this run's re-runs",
                                   path=exc.path))

    def finish(self, start: float, cancelled: bool = False, error: str | None = None) -> float:
        seconds = time.perf_counter() - start
        ran = sum(1 for r in self.report if r.status == "ran")
        self.emit(RunFinished(seconds=seconds, ran=ran, cached=len(self.report) - ran, cancelled=cancelled,
                              error=error))
        return seconds

    # -- keys and cache resolution -----------------------------------------------------------------------------

    def compute_keys(self, needed: list[str]) -> None:
        """Every needed node's recipe and key, upstream first. Non-deterministic nodes and nodes with side effects
        get a per-run nonce, so they and everything downstream of them never come from a cache. A node with a
        `reads_file` port fed by a link gets its key once the linked value is known (the content of the file it
        names is part of the key), and so do the nodes downstream of it: called again after those values exist."""
        nonce = secrets.token_hex(8)
        runtime = self.ex.runtime
        for node_id in needed:
            node = self.plan.nodes[node_id]
            if node_id in self.keys or any(up not in self.keys for up in node.upstream):
                continue
            ports = file_links(node)
            if any(ref.node not in self.done for port in ports for ref in _refs(node.links[port])):
                continue
            linked_files = {port: self.link_input(node.links[port]) for port in ports}
            cls = node.cls
            fresh = not cls.deterministic or cls.side_effects
            node_nonce = f"{nonce}:{node_id}" if fresh else None
            node_recipe = recipe(node, self.plan.input_values, self.keys, runtime, node_nonce, self.workflow_dir,
                                 linked_files)
            self.keys[node_id] = cache_key(node_recipe)
            if fresh:
                node_recipe["volatile"] = ("side effects: runs every time" if cls.side_effects
                                           else "non-deterministic: runs every time")
            if fresh or any(up in self.volatile for up in node.upstream):
                self.volatile.add(node_id)
            node_recipe["names"] = recipe_names(node)
            self.recipes[node_id] = node_recipe

    def file_sources(self, needed: list[str]) -> set[str]:
        """The nodes feeding `reads_file` links of the nodes whose keys can be computed next (all upstream keys
        known): they are computed (or served from a cache) before those keys."""
        sources: set[str] = set()
        for node_id in needed:
            node = self.plan.nodes[node_id]
            if node_id not in self.keys and all(up in self.keys for up in node.upstream):
                sources.update(ref.node for port in file_links(node) for ref in _refs(node.links[port]))
        return sources - self.done

    def resolve(self, needed: list[str], demanded: set[str]) -> list[str]:
        """Walk back from the `demanded` nodes (the requested outputs' nodes); a cached node, or one this run
        already has, stops the walk. Returns the nodes to visit, in order."""
        demanded = set(demanded)
        visit: set[str] = set()
        for node_id in reversed(needed):
            if node_id not in demanded or node_id in self.done:
                continue
            visit.add(node_id)
            if node_id not in self.volatile and self.lookup(node_id):
                continue
            self.to_run.add(node_id)
            demanded.update(self.plan.nodes[node_id].upstream)
        return [node_id for node_id in needed if node_id in visit]

    def lookup(self, node_id: str) -> bool:
        """Whether the node's outputs are cached (memory first, then disk); found values join this run's."""
        key = self.keys[node_id]
        value = self.ex.cache.get(key)
        if value is not None:
            self.served[node_id] = "cached-memory"
        elif self.ex.disk is not None and (value := self._read_disk(node_id, key)) is not None:
            self.ex.cache.put(key, value)
            self.served[node_id] = "cached-disk"
        else:
            return False
        self.values[node_id] = value
        return True

    def _read_disk(self, node_id: str, key: str) -> dict[str, Any] | None:
        """The node's outputs from the disk cache; None when absent or unusable (what was wrong is kept, for the
        warning and --explain when the node runs again)."""
        start = time.perf_counter()
        try:
            value = self.ex.disk.read(key)  # type: ignore[union-attr]
            if value is not None and value.keys() != self.plan.nodes[node_id].cls.output_map.keys():
                raise UnusableEntry(f"it holds the outputs {', '.join(map(repr, value))}, not the node's "
                                    f"{', '.join(map(repr, self.plan.nodes[node_id].cls.output_map))}")
        except UnusableEntry as exc:
            self.unusable[node_id] = exc
            value = None
        self.load_seconds[node_id] = time.perf_counter() - start
        return value

    def serve_cached(self, node_id: str) -> None:
        node = self.plan.nodes[node_id]
        self.outcomes[node_id] = "served"
        status = self.served[node_id]
        source = "memory" if status == "cached-memory" else "disk"
        self.emit(NodeCached(node=node_id, node_type=node.cls.id, source=source))
        self.report.append(NodeReport(node_id, node.cls.id, status, self.load_seconds.get(node_id, 0.0),
                                      key=self.keys[node_id]))

    # -- running a node ----------------------------------------------------------------------------------------

    def run_node(self, node: NodePlan) -> None:
        cls = node.cls
        kwargs = self.gather_inputs(node)
        unusable = self.report_unusable(node)
        why = reason(self.previous(node.id), self.recipes[node.id], self.volatile, unusable,
                     self.ex.disk is not None) if self.explain else None
        ctx = RunContext(node.id, cls.id, self.ex.device, self.ex.dtype, workflow_dir=self.workflow_dir,
                         emit=self.emit, cancel_token=self.token, outputs=self.outputs.for_node(node.id),
                         workflow_document=self.plan.workflow.document, workflow_inputs=self.plan.input_values,
                         workflow_source=self.plan.workflow.source, linked_values=self.linked_values,
                         drawn=self.drawn,
                         previews=self.previews)
        versions = input_versions(kwargs)
        self.outcomes[node.id] = "running"
        self.emit(NodeStarted(node=node.id, node_type=cls.id, reason=why or ""))
        if self.cuda:
            _reset_peak_memory(self.ex.device)
        start = time.perf_counter()
        try:
            with _no_grad():
                outputs = cls.normalise_outputs(cls().run(ctx, **kwargs))
        except Cancelled:
            raise
        except Exception as exc:
            error = NodeRunError(node.id, cls.id, describe_exception(exc))
            self.emit(NodeError(node=node.id, node_type=cls.id, error=str(error)))
            raise error from exc
        seconds = time.perf_counter() - start
        mutated = changed_inputs(versions)
        if mutated:
            message = (f"changed its input {', '.join(repr(p) for p in mutated)} in place; nodes must return new "
                       f"values (clone the tensor, or copy the model before patching it)")
            error = NodeRunError(node.id, cls.id, message)
            self.emit(NodeError(node=node.id, node_type=cls.id, error=str(error)))
            raise error
        for name, value in outputs.items():  # before caching: a NaN is never stored, a huge int never spelled
            wrong = unrepresentable(value)
            if wrong:
                error = NodeRunError(node.id, cls.id, f"output {name!r}: {wrong}")
                self.emit(NodeError(node=node.id, node_type=cls.id, error=str(error)))
                raise error
        peak_bytes = _peak_memory(self.ex.device) if self.cuda else None
        self.emit(NodeFinished(node=node.id, node_type=cls.id, seconds=seconds, peak_bytes=peak_bytes))
        self.values[node.id] = outputs
        self.store(node.id, outputs)
        self.report.append(NodeReport(node.id, cls.id, "ran", seconds, peak_bytes, why, self.keys[node.id]))

    def report_unusable(self, node: NodePlan) -> str | None:
        """Warn about the node's unusable disk cache entry, if it had one; returns the --explain reason."""
        problem = self.unusable.get(node.id)
        if problem is None:
            return None
        if problem.kind == "format":  # merely an older format: expected after an upgrade, not worth a warning
            return f"cache entry unusable ({problem})"
        state = "is corrupt" if problem.kind == "corrupt" else "could not be read"
        where = self.ex.disk.where(self.keys[node.id])  # type: ignore[union-attr]
        self.emit(CacheWarning(node=node.id, node_type=node.cls.id, path=where,
                               message=f"the cache entry of node {node.id!r} {state} ({problem}): running the "
                                       f"node again, which rewrites {where}"))
        return f"cache entry {problem.kind} ({problem})"

    def previous(self, node_id: str) -> dict | None:
        return self.ex.recipes.previous(self.workflow_name).get(node_id)

    def gather_inputs(self, node: NodePlan) -> dict[str, Any]:
        kwargs = dict(node.params)
        for port, ref in node.inputs.items():
            value = self.plan.input_values[ref.name]
            kwargs[port] = ref.convert(value) if ref.convert else value
        settled = node.cls.deterministic
        for port, link in node.links.items():
            kwargs[port] = value = self.link_input(link)
            recorded = json_value(value)
            if recorded is not None:
                self.linked_values[f"{node.id}.{port}"] = recorded
            if any(ref.node in self.unrepeatable for ref in _refs(link)):
                self.drawn[f"{node.id}.{port}"] = recorded
                settled = settled and recorded is not None
        if not settled:  # its outputs differ on the next run even with the drawn values put back
            self.unrepeatable.add(node.id)
        return kwargs

    def link_input(self, link: LinkRef | tuple[LinkRef, ...]) -> Any:
        """The value a port fed by `link` receives (a list for a port fed by several outputs)."""
        return self.link_value(link) if isinstance(link, LinkRef) else [self.link_value(ref) for ref in link]

    def link_value(self, ref: LinkRef) -> Any:
        value = self.values[ref.node][ref.output]
        return ref.convert(value) if ref.convert else value

    def output_value(self, ref: LinkRef | InputRef) -> Any:
        if isinstance(ref, InputRef):
            return self.plan.input_values[ref.name]
        return self.values[ref.node][ref.output]

    def store(self, node_id: str, outputs: dict[str, Any]) -> None:
        """Cache a finished node right away, so a later failure or cancellation keeps it. A disk cache write that
        fails is a warning: the run goes on (the outputs are still in memory)."""
        if node_id in self.volatile:
            self.outcomes[node_id] = "not stored: runs every time"
            return
        key = self.keys[node_id]
        stored = self.ex.cache.put(key, outputs)
        self.outcomes[node_id] = "stored" if stored else "not stored: bigger than the memory cache (cache_bytes)"
        if self.ex.disk is None:
            return
        try:
            self.ex.disk.store(key, outputs)
            self.outcomes[node_id] = "stored"
        except NotPersistable as exc:
            self.outcomes[node_id] = f"not stored: {exc}"
        except CacheWriteError as exc:
            self.outcomes[node_id] = f"not stored: {exc}"
            node_type = self.plan.nodes[node_id].cls.id
            self.emit(CacheWarning(node=node_id, node_type=node_type, path=exc.path,
                                   message=f"{exc}; the run goes on without caching node {node_id!r} on disk"))

    def count_consumers(self, visit: list[str]) -> dict[str, int]:
        remaining: dict[str, int] = {}
        for node_id in visit:
            if node_id in self.to_run:
                for up in self.plan.nodes[node_id].upstream:
                    remaining[up] = remaining.get(up, 0) + 1
        return remaining

    def release_inputs(self, node: NodePlan, remaining: dict[str, int], keep: set[str]) -> None:
        """Drop this run's reference to upstream values nobody else in the run reads (the cache may keep them)."""
        for up in node.upstream:
            remaining[up] -= 1
            if remaining[up] == 0 and up not in keep:
                self.values.pop(up, None)


def _refs(link: LinkRef | tuple[LinkRef, ...]) -> tuple[LinkRef, ...]:
    return (link,) if isinstance(link, LinkRef) else link


def _no_grad() -> Any:
    """torch.no_grad() once torch is imported (no tensor exists before), else nothing: a graph of inference nodes
    never builds autograd graphs, even when a node calls a model whose parameters require grad. A node that trains
    opts back in with `torch.enable_grad()`."""
    torch = sys.modules.get("torch")
    return torch.no_grad() if torch is not None else contextlib.nullcontext()


def _reset_peak_memory(device: Any) -> None:
    import torch

    torch.cuda.reset_peak_memory_stats(device)


def _peak_memory(device: Any) -> int:
    """Peak CUDA memory allocated since the last reset (no cheap per-node measure exists on other devices)."""
    import torch

    return int(torch.cuda.max_memory_allocated(device))
