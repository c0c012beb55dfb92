"""`vdgraph serve`: the HTTP API (FastAPI on uvicorn), the page at `/`, and the server's security rules.

API (docs/server.md; OpenAPI at /openapi.json, browsable at /docs):
  GET /api/workflows, POST /api/jobs, GET /api/jobs, GET /api/jobs/{id}, GET /api/jobs/{id}/events (Server-Sent
  Events), DELETE /api/jobs/{id}, GET /files/{job id}/{name}.

Security: binds 127.0.0.1 unless told otherwise, and any other address needs a token; with a token every call but
the page's static files needs `Authorization: Bearer TOKEN` (or `?token=TOKEN`, for the media and event stream a
browser loads by URL), else 401. Request bodies are limited (413). A job writes only inside its own folder under
the output directory, and with a token loads models only by built-in name or from inside the allowed model roots.
Workflows are data: nodes come from the packs installed when the server started, never from a request.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import os
import secrets
import socket
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from vdgraph.errors import Problem, VdgraphError, WorkflowInvalid

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
STATIC = Path(__file__).resolve().parent / "static"
SHIPPED_WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
"""The workflows shipped with vdgraph (the repository's workflows/ folder, next to the package)."""
MAX_PAGE = 200


class ServerRefused(VdgraphError):
    """The server cannot start with these settings."""


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8188
    output_dir: str = "out"
    workflow_dirs: tuple[str, ...] = ()
    cache_dir: str | None = None
    token: str | None = None
    model_roots: tuple[str, ...] = ()
    input_roots: tuple[str, ...] = ()
    max_body: int = 1_000_000
    device: str = "auto"
    dtype: str | None = None
    previews: Any = None

    def __post_init__(self) -> None:
        if self.host not in LOCAL_HOSTS and not self.token:
            raise ServerRefused(f"--host {self.host} would serve other machines: pass --token TOKEN too (every API "
                                "call must then carry it), or bind 127.0.0.1")
        if self.token is not None and len(self.token) < 8:
            raise ServerRefused("--token must be at least 8 characters")
        if not 0 <= self.port <= 65535:
            raise ServerRefused(f"--port must be from 0 to 65535, got {self.port}")
        if self.max_body < 1024:
            raise ServerRefused(f"--max-body must be at least 1024 bytes, got {self.max_body}")
        if not self.output_dir.strip() or "://" in self.output_dir:
            raise ServerRefused("--output-dir must be a local folder")
        for folder in (*self.workflow_dirs, *self.model_roots, *self.input_roots):
            if not os.path.isdir(folder):
                raise ServerRefused(f"{folder!r} is not a folder")
        if (self.model_roots or self.input_roots) and not self.token:
            print("vdgraph serve: note: --model-root and --input-root apply only with --token (on 127.0.0.1 without "
                  "a token, jobs may load any model and read any file the user can)", file=sys.stderr)


# -- workflows ----------------------------------------------------------------------------------------------------

def workflow_files(config: ServerConfig) -> dict[str, str]:
    """name (file stem) -> path of every served workflow: the shipped ones, then those of --workflows folders (a
    name already taken keeps its first file)."""
    found: dict[str, str] = {}
    for folder in (str(SHIPPED_WORKFLOWS), *config.workflow_dirs):
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.endswith(".json") and os.path.isfile(path):
                found.setdefault(name[:-5], os.path.abspath(path))
    return found


def describe_workflow(name: str, workflow: Any, path: str | None = None) -> dict:
    """What the page needs to build a form and draw the DAG."""
    from vdgraph.workflow import parse_link

    inputs = []
    for key, decl in workflow.inputs.items():
        entry = {"name": key, "type": decl.type, "description": decl.description, "required": not decl.has_default}
        if decl.has_default:
            entry["default"] = decl.default
        for attr in ("min", "max", "choices"):
            if getattr(decl, attr) is not None:
                entry[attr] = getattr(decl, attr)
        inputs.append(entry)
    nodes, edges = [], []
    for node_id, spec in workflow.nodes.items():
        nodes.append({"id": node_id, "type": spec.type, "description": spec.description})
        for port, links in spec.in_.items():
            for link in links if isinstance(links, list) else [links]:
                parsed = parse_link(link)
                if parsed is not None and parsed[0] != "inputs" and parsed[0] in workflow.nodes:
                    edges.append({"from": parsed[0], "to": node_id, "port": port})
    out = {"name": name, "title": workflow.display_name, "description": workflow.description, "inputs": inputs,
           "outputs": list(workflow.outputs), "graph": {"nodes": nodes, "edges": edges}}
    if path:
        out["file"] = os.path.basename(path)
    return out


# -- checks a server adds to validation --------------------------------------------------------------------------

def builtin_model_names() -> set[str]:
    return {ep.name for ep in metadata.entry_points(group="vdgraph.models")}


def flagged_ports(workflow: Any, registry: Any, *flags: str) -> Iterator[tuple[str, Any, Any]]:
    """(node id, node spec, Input) of every port of the workflow's nodes with one of `flags` set."""
    for node_id, spec in workflow.nodes.items():
        cls = registry.get(spec.type) if isinstance(spec.type, str) else None
        for port in cls.inputs if cls is not None else ():
            if any(getattr(port, flag) for flag in flags):
                yield node_id, spec, port


def port_values(workflow: Any, registry: Any, inputs: dict, flag: str) -> list[tuple[str, Any, Any]]:
    """(node id, Input, value) of every literal or workflow input (given or default) reaching a port with `flag`
    set; read from the workflow itself, so these problems come with validation's others, in one answer."""
    from vdgraph.workflow import parse_link

    found = []
    for node_id, spec, port in flagged_ports(workflow, registry, flag):
        if port.name in spec.params:
            value = spec.params[port.name]
        elif port.name in spec.in_:
            link = parse_link(spec.in_[port.name])
            if link is None or link[0] != "inputs" or link[1] not in workflow.inputs:
                continue  # a value made by another node is checked when the node writes
            decl = workflow.inputs[link[1]]
            value = inputs.get(link[1], decl.default)
        elif port.has_default:
            value = port.default
        else:
            continue
        found.append((node_id, port, value))
    return found


def node_links_into(workflow: Any, registry: Any, *flags: str) -> list[tuple[str, str, str]]:
    """(node id, port, link) of every port with one of `flags` set that another node's output feeds (not a
    workflow input): its value is known only when the workflow runs."""
    from vdgraph.workflow import parse_link

    found = []
    for node_id, spec, port in flagged_ports(workflow, registry, *flags):
        value = spec.in_.get(port.name)
        for item in value if isinstance(value, list) else [value]:  # a list port may gather several links
            link = parse_link(item)
            if link is not None and link[0] != "inputs":
                found.append((node_id, port.name, item))
                break
    return found


def _names(value: Any) -> list[str]:
    """The path names a port value holds (a str, or a list of them); empty ones name nothing."""
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, str) and item.strip()]


def _inside(name: str, roots: list[str]) -> bool:
    """`name` is an absolute local path whose real path is one of `roots` or below one."""
    if "://" in name or not os.path.isabs(name) or "\0" in name:  # no file has a NUL in its name (realpath raises)
        return False
    real = os.path.realpath(name)
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def confinement_problems(workflow: Any, registry: Any, inputs: dict, job_dir: str,
                         model_roots: tuple[str, ...] | None, input_roots: tuple[str, ...] = ()) -> list[Problem]:
    """Output files outside the job's folder; with `model_roots` (a token is set), models from elsewhere, other
    files read from outside `input_roots`, and links from other nodes into the ports that name either."""
    from vdgraph.outputs import OutputFolder, OutputRefused

    problems = []
    fields = {name: decl.default for name, decl in workflow.inputs.items()}
    folder = OutputFolder(job_dir, fields={"workflow": workflow.display_name, **fields, **inputs},
                          outside_hint="the server writes only into the job's own folder: use a name inside it")
    for node_id, port, value in port_values(workflow, registry, inputs, "output_path"):
        if isinstance(value, str):
            try:
                folder.for_node(node_id).claim(value, port=port.name)
            except OutputRefused as exc:
                if any(said in str(exc) for said in ("unknown field", "names no file", "NUL character")):
                    continue  # validation reports those (output.target)
                problems.append(Problem("output.outside", str(exc), "name a file inside the job's output folder, "
                                        "e.g. 'clip.mp4'; the server gives every job a folder of its own",
                                        node=node_id, port=port.name))
    if model_roots is None:
        return problems
    builtins = builtin_model_names()
    roots = [os.path.realpath(root) for root in model_roots]
    for node_id, port, value in port_values(workflow, registry, inputs, "model_path"):
        for name in _names(value):
            if name in builtins or _inside(name, roots):
                continue
            allowed = ", ".join(sorted(builtins)) or "none"
            where = (f"the allowed model roots ({', '.join(model_roots)})" if model_roots
                     else "the allowed model roots (this server has none: --model-root)")
            problems.append(Problem("server.model-outside", f"model {name!r} is not a built-in model nor a folder "
                                    f"inside {where}", f"use a built-in model ({allowed}) or an absolute path inside "
                                    "an allowed model root", node=node_id, port=port.name))
    readable = [os.path.realpath(root) for root in input_roots]
    for node_id, port, value in port_values(workflow, registry, inputs, "reads_file"):
        if port.model_path:
            continue  # checked above
        for name in _names(value):
            if not _inside(name, readable):
                where = ", ".join(input_roots) if input_roots else "none: --input-root"
                problems.append(Problem("server.file-outside", f"{name!r} is not a file inside the folders this "
                                        f"server lets jobs read ({where})", "give an absolute path inside an "
                                        "--input-root folder (or an earlier job's file under the output folder's "
                                        "jobs/)", node=node_id, port=port.name))
    for node_id, port, link in node_links_into(workflow, registry, "model_path", "reads_file"):
        problems.append(Problem("server.file-link", f"the port names a file to read and is fed by {link!r}, "
                                "whose value this server cannot check before the job runs", "give the path "
                                "as a literal or a workflow input", node=node_id, port=port))
    return problems


def readable_roots(config: ServerConfig) -> tuple[str, ...]:
    """The folders a job may read input files from: the --input-root folders and the job folders under the output
    folder (earlier jobs' files), not the output folder itself, which holds the job store and may hold a cache."""
    return (*config.input_roots, os.path.join(config.output_dir, "jobs"))


class JobRequest(BaseModel):
    """The body of POST /api/jobs: a served workflow's name or a whole workflow document, and input values."""

    workflow: str | None = Field(None, description="the name of a served workflow (GET /api/workflows)")
    graph: dict[str, Any] | None = Field(None, description="a whole workflow document, instead of a name")
    inputs: Any = Field(default_factory=dict, description="workflow input name -> value")


# -- the app ------------------------------------------------------------------------------------------------------

class Server:
    """What the HTTP handlers share: settings, the job store, the event hub, the worker and its executor."""

    def __init__(self, config: ServerConfig, registry: Any = None) -> None:
        from vdgraph.executor import Executor
        from vdgraph.registry import Registry
        from vdgraph.server.store import JobStore
        from vdgraph.server.worker import EventHub, Worker

        self.config = config
        self.registry = registry if registry is not None else Registry.discover()
        self.output_dir = os.path.abspath(config.output_dir)
        try:
            jobs = os.path.join(self.output_dir, "jobs")
            if os.path.exists(jobs) and not os.path.isdir(jobs):
                raise ValueError(f"{jobs!r} is a file, where the server keeps its job folders; serve with another "
                                 "--output-dir, or move that file away")
            os.makedirs(jobs, exist_ok=True)
            self.store = JobStore(os.path.join(self.output_dir, "jobs.sqlite3"))
        except (OSError, ValueError) as exc:
            raise ServerRefused(f"--output-dir {config.output_dir!r}: {exc}") from None
        self.interrupted = self.store.recover()
        self.hub = EventHub()

        def executor() -> Executor:  # built in the worker thread: the server answers while torch is imported
            return Executor(self.registry, device=config.device, dtype=config.dtype, cache_dir=config.cache_dir)

        self.worker = Worker(self.store, self.hub, executor, self.output_dir, config.previews,
                             recheck=self.confinement)

    def confinement(self, job_id: str, workflow: Any, inputs: dict) -> list[Problem]:
        """What this server's settings refuse in a job (see confinement_problems): checked when it is submitted,
        and again when a job queued before a restart runs (the server may have restarted with other settings)."""
        roots = self.config.model_roots if self.config.token else None
        return confinement_problems(workflow, self.registry, inputs, self.worker.job_dir(job_id), roots,
                                    readable_roots(self.config))

    def start(self) -> None:
        if not self.worker.is_alive():
            self.worker.start()

    def stop(self) -> None:
        self.worker.stop()

    # -- jobs ---------------------------------------------------------------------------------------------------

    def submit(self, workflow_name: str | None, graph: dict | None, inputs: Any) -> dict:
        """Validate and queue a job; returns {"id"} or raises WorkflowInvalid (every problem)."""
        from vdgraph.validate import check
        from vdgraph.workflow import load_workflow, parse_text

        if not isinstance(inputs, dict):
            raise WorkflowInvalid([Problem("server.inputs", "inputs must be a JSON object of input name -> value",
                                           'send {"inputs": {"seed": 3}}')])
        if (workflow_name is None) == (graph is None):
            raise WorkflowInvalid([Problem("server.request", "name a served workflow (\"workflow\") or send a "
                                           "whole workflow document (\"graph\"), exactly one of them",
                                           "GET /api/workflows lists the served workflows")])
        if workflow_name is not None:
            files = workflow_files(self.config)
            path = files.get(workflow_name)
            if path is None:
                known = ", ".join(sorted(files)) or "none"
                raise WorkflowInvalid([Problem("server.workflow-unknown", f"no served workflow {workflow_name!r}",
                                               f"served workflows: {known}")])
            with open(path, "rb") as handle:
                document = handle.read().decode("utf-8")
            workflow, source = parse_text(document, path), path
        else:
            document, source = json.dumps(graph), None
            workflow = load_workflow(graph)
        problems, plan = check(workflow, self.registry, inputs, require_inputs=True)
        job_id = secrets.token_hex(8)
        problems += self.confinement(job_id, workflow, inputs)
        if plan is None or any(p.severity == "error" for p in problems):
            raise WorkflowInvalid(problems)
        self.worker.plans[job_id] = plan  # validated now: the worker runs it as is (after a restart, from the document)
        self.store.add(job_id, workflow.display_name, source, document, inputs)
        self.hub.publish(job_id, {"kind": "job_queued"})
        self.worker.wake()
        return {"id": job_id, "state": "queued", "position": self.store.position(job_id)}

    def job(self, job_id: str) -> dict | None:
        job = self.store.get(job_id)
        if job is None:
            return None
        job.pop("events", None)
        document = job.pop("document")
        job.pop("seq", None)
        if job["source"]:
            job["source"] = os.path.basename(job["source"])
        job["position"] = self.store.position(job_id) if job["state"] == "queued" else None
        if job["state"] == "running":
            job["nodes"] = self.worker.live_nodes(job_id) or job["nodes"]
        job["nodes"] = job["nodes"] or {}  # a job between being taken and its first event has none yet
        try:
            from vdgraph.workflow import load_workflow

            job["graph"] = describe_workflow(job["workflow"], load_workflow(json.loads(document)))["graph"]
        except (ValueError, VdgraphError):
            job["graph"] = None
        return job

    def cancel(self, job_id: str) -> dict | None:
        job = self.store.get(job_id)
        if job is None:
            return None
        if job["state"] == "queued" and self.store.cancel_queued(job_id):
            self.worker.plans.pop(job_id, None)
            self.hub.publish(job_id, {"kind": "job_finished", "state": "cancelled"}, close=True)
            return {"id": job_id, "state": "cancelled"}
        if self.worker.cancel_running(job_id):
            return {"id": job_id, "state": "cancelling"}
        job = self.store.get(job_id)
        return {"id": job_id, "state": job["state"] if job else "unknown"}


def create_app(server: Server) -> Any:
    from vdgraph.server.worker import dumps

    config = server.config
    app = FastAPI(title="vdgraph", version="1", description="Job server for vdgraph workflows (docs/server.md).",
                  redirect_slashes=False)
    app.add_middleware(_Guard, token=config.token, max_body=config.max_body)
    app.state.server = server

    @app.exception_handler(WorkflowInvalid)
    def invalid(request: Request, exc: WorkflowInvalid) -> JSONResponse:
        return JSONResponse({"detail": "the job is invalid; nothing was queued", "valid": False,
                             "problems": [p.to_json() for p in exc.problems]}, status_code=422)

    @app.get("/api/workflows", summary="The served workflows with their declared inputs and DAG")
    def list_workflows() -> dict:
        from vdgraph.workflow import load_workflow

        out = []
        for name, path in workflow_files(config).items():
            try:
                out.append(describe_workflow(name, load_workflow(path), path))
            except (VdgraphError, OSError, ValueError) as exc:
                out.append({"name": name, "file": os.path.basename(path), "error": str(exc)})
        return {"workflows": out}

    @app.post("/api/jobs", status_code=201, summary="Validate and queue a job (422 with every problem)")
    def submit(request: JobRequest) -> dict:
        return server.submit(request.workflow, request.graph, request.inputs)

    @app.get("/api/jobs", summary="History, newest first")
    def history(limit: int = Query(20, ge=1, le=MAX_PAGE), offset: int = Query(0, ge=0),
                state: str | None = Query(None, pattern="^(queued|running|done|failed|cancelled)$")) -> dict:
        jobs, total = server.store.history(limit, offset, state)
        for job in jobs:
            job.pop("seq", None)
            if job["state"] == "queued":
                job["position"] = server.store.position(job["id"])
        more = offset + len(jobs) < total
        return {"jobs": jobs, "total": total, "offset": offset, "next_offset": offset + len(jobs) if more else None}

    @app.get("/api/jobs/{job_id}", summary="A job's state, queue position, per-node report, outputs and error")
    def job(job_id: str) -> dict:
        found = server.job(job_id)
        if found is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return found

    @app.delete("/api/jobs/{job_id}", summary="Cancel a queued or running job (a running one stops at its next "
                                                 "step)")
    def cancel(job_id: str) -> dict:
        found = server.cancel(job_id)
        if found is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return found

    @app.get("/api/jobs/{job_id}/events", summary="The job's typed events as Server-Sent Events")
    async def events(job_id: str, request: Request) -> StreamingResponse:
        stored = server.store.get(job_id)
        if stored is None:
            raise HTTPException(404, f"no job {job_id!r}")
        last = request.headers.get("last-event-id", "")
        start = int(last) + 1 if last.isdigit() else 0
        entry = server.hub.stream(job_id, create=stored["state"] in ("queued", "running"))

        async def replay() -> Any:  # a job that ended before this server started: its saved events
            for n, record in enumerate(stored.get("events") or []):
                if n >= start:
                    yield f"id: {n}\nevent: {record['kind']}\ndata: {dumps(record)}\n\n"
            final = {"kind": "job_finished", "state": stored["state"]}
            if stored.get("error"):
                final["error"] = stored["error"]
            yield f"event: job_finished\ndata: {dumps(final)}\n\n"

        async def live() -> Any:
            async for record in server.hub.follow(job_id, start):
                yield f"id: {record['seq']}\nevent: {record['kind']}\ndata: {dumps(record)}\n\n"

        stream = live() if entry is not None else replay()
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/files/{job_id}/{name:path}", summary="A file a job wrote (confined to the job folders)")
    def files(job_id: str, name: str) -> FileResponse:
        if "\0" in job_id or "\0" in name:  # no file name holds one (realpath would raise)
            raise HTTPException(404, "no such output file")
        root = os.path.realpath(os.path.join(server.output_dir, "jobs"))
        real = os.path.realpath(os.path.join(root, job_id, name))
        if not real.startswith(root + os.sep) or not os.path.isfile(real):
            raise HTTPException(404, "no such output file")
        return FileResponse(real)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


class _Guard:
    """ASGI middleware: the token on everything but the page's own files, and the request body limit."""

    OPEN = ("/", "/favicon.ico")

    def __init__(self, app: Any, token: str | None, max_body: int) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.token and path not in self.OPEN and not path.startswith("/static/") and not self.authorised(scope):
            await _reply(send, 401, {"detail": "missing or wrong token: send 'Authorization: Bearer TOKEN' (or "
                                               "?token=TOKEN)"}, {"www-authenticate": "Bearer"})
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _reply(send, 413, {"detail": f"the request body is larger than {self.max_body} bytes"})
            return
        # read the whole body here (at most max_body bytes), so a chunked body without a length is limited too
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                await _reply(send, 413, {"detail": f"the request body is larger than {self.max_body} bytes"})
                return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def authorised(self, scope: dict) -> bool:
        expected = self.token.encode()
        for key, value in scope.get("headers") or []:
            if key == b"authorization" and value.startswith(b"Bearer "):
                return hmac.compare_digest(value[7:].strip(), expected)
        from urllib.parse import parse_qs

        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        return bool(given) and hmac.compare_digest(given.encode("latin-1"), expected)


async def _reply(send: Any, status: int, body: dict, headers: dict | None = None) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


def serve(config: ServerConfig, registry: Any = None) -> int:
    """Run the server until interrupted (Ctrl-C or SIGTERM); prints the address it listens on."""
    import uvicorn

    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        raise ServerRefused(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them: the address works once printed
    port = sock.getsockname()[1]
    server = Server(config, registry)
    for job_id in server.interrupted:
        print(f"vdgraph serve: job {job_id} was running when the server stopped: marked failed (interrupted)",
              file=sys.stderr)
    app = create_app(server)
    host = f"[{config.host}]" if ":" in config.host else config.host
    server.start()
    print(f"vdgraph serve: listening on http://{host}:{port}/ (queue: {server.store.path})", flush=True)
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)).run(sockets=[sock])
    finally:
        server.stop()
        server.store.close()
    return 0
