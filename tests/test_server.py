"""`vdgraph serve` for real: a uvicorn server in a subprocess on a free localhost port, the built-in model.

Covers the HTTP API (submit, the event stream in order, downloads, cancel, 422 validation with codes, history),
the security rules (401 without the token, path confinement, body limit, no public bind without a token), ten
jobs at once with distinct outputs, and a SIGKILL followed by a restart that loses no acknowledged job.
"""

from __future__ import annotations

import base64
import concurrent.futures
import http.client
import json
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest

import vdgraph
from server_fixtures import FAST_DEMO, REPO, ServerProcess

LONG_DEMO = {"steps": 1000, "t0": 1, "t1": 2, "frames": 2}
"""Long enough to be running when the test cancels it or kills the server (the final node has 998 steps)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    extra = root / "more_workflows"
    extra.mkdir()
    (extra / "shout.json").write_text(json.dumps({
        "vdgraph": 1, "name": "shout", "description": "a workflow from a --workflows folder",
        "inputs": {"text": {"type": "str", "default": "hi"}, "times": {"type": "int", "default": 2, "min": 1,
                                                                      "max": 5}},
        "nodes": {"f": {"type": "core.format", "in": {"a": "inputs.text", "b": "inputs.times"},
                        "params": {"template": "$a x$b"}}},
        "outputs": {"text": "f.text"}}))
    process = ServerProcess(root / "out", "--preview-every", "1", "--workflows", str(extra))
    yield process
    process.stop()


def wait_running_step(server: ServerProcess, job_id: str, timeout: float = 60.0) -> dict:
    """Wait until the job's denoiser has done at least one step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, job = server.request("GET", f"/api/jobs/{job_id}")
        if job["state"] == "running" and any(n.get("step", 0) >= 1 for n in job["nodes"].values()):
            return job
        assert job["state"] in ("queued", "running"), job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached a denoising step:\n{server.log}")


def test_workflows_lists_the_shipped_ones_and_those_of_workflows_folders_with_declared_inputs(server):
    status, body = server.request("GET", "/api/workflows")
    assert status == 200
    workflows = {w["name"]: w for w in body["workflows"]}
    assert {"text2video_zero", "hello", "shout"} <= set(workflows)
    inputs = {i["name"]: i for i in workflows["text2video_zero"]["inputs"]}
    assert inputs["frames"] == {"name": "frames", "type": "int", "default": 8, "min": 2, "max": 64,
                                "required": False, "description": inputs["frames"]["description"]}
    assert inputs["sampler"]["choices"][:2] == ["ddim", "model"]
    assert inputs["prompt"]["description"] == "what the video shows"
    graph = workflows["text2video_zero"]["graph"]
    shipped = json.loads((REPO / "workflows" / "text2video_zero.json").read_text())
    assert [n["id"] for n in graph["nodes"]] == list(shipped["nodes"])  # every node of the file, in its order
    assert {"from": "model", "to": "text", "port": "text_encoder"} in graph["edges"]
    assert workflows["shout"]["inputs"][1]["max"] == 5
    status, spec = server.request("GET", "/openapi.json")  # the API documents itself
    assert status == 200 and {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/events",
                              "/api/workflows"} <= set(spec["paths"])


def test_a_job_runs_its_events_arrive_in_order_and_its_files_download(server):
    job_id = server.submit("text2video_zero", {**FAST_DEMO, "prompt": "a white square on a black background"})
    events = server.events(job_id)
    kinds = [e["kind"] for e in events]
    assert kinds[0] in ("job_queued", "job_started") and kinds[-2:] == ["run_finished", "job_finished"]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert events[-1]["state"] == "done"
    run_started = next(e for e in events if e["kind"] == "run_started")
    for node in run_started["nodes"]:  # each node: started, its progress ticks counting up, finished
        mine = [e for e in events if e.get("node") == node]
        assert mine[0]["kind"] == "node_started" and mine[-1]["kind"] == "node_finished", (node, mine)
        steps = [e["step"] for e in mine if e["kind"] == "progress"]
        assert steps == sorted(steps)
    final = [e for e in events if e.get("node") == "final"]
    assert [e["step"] for e in final if e["kind"] == "progress"] == [0, 1, 2, 3]
    assert {e["total"] for e in final if e["kind"] == "progress"} == {3}
    previews = [e for e in final if e["kind"] == "preview"]  # every step (--preview-every 1) of the final node
    assert [p["step"] for p in previews] == [1, 2, 3]
    png = base64.b64decode(previews[-1]["image"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and previews[-1]["frames"] == 2
    assert previews[-1]["source"] == "latent_rgb" and previews[-1]["width"] == 2 * previews[-1]["height"]

    status, job = server.request("GET", f"/api/jobs/{job_id}")
    assert status == 200 and job["state"] == "done" and job["position"] is None and job["error"] is None
    assert [r["id"] for r in job["report"]] == run_started["nodes"]
    assert all(n["state"] == "done" for n in job["nodes"].values())
    video, sheet = job["outputs"]["video"], job["outputs"]["contact_sheet"]
    assert video["url"] == f"/files/{job_id}/text2video_zero.mp4"
    status, data = server.request("GET", video["url"])
    assert status == 200 and data[4:8] == b"ftyp" and len(data) > 500
    status, data = server.request("GET", sheet["url"])
    assert status == 200 and data[:8] == b"\x89PNG\r\n\x1a\n"
    assert job["outputs"]["frames"] == {"tensor": {"shape": [2, 64, 64, 3], "dtype": "float32", "device": "cpu"}}


def test_cancel_a_running_job_stops_it_at_the_next_step_and_a_queued_one_never_starts(server):
    running = server.submit("text2video_zero", {**LONG_DEMO, "seed": 1})
    queued = server.submit("shout", {"text": "never"})
    _, job = server.request("GET", f"/api/jobs/{queued}")
    assert job["state"] == "queued" and job["position"] >= 1
    wait_running_step(server, running)
    assert server.request("DELETE", f"/api/jobs/{queued}") == (200, {"id": queued, "state": "cancelled"})
    start = time.monotonic()
    status, body = server.request("DELETE", f"/api/jobs/{running}")
    assert status == 200 and body["state"] == "cancelling"
    job = server.wait(running, timeout=30)
    assert job["state"] == "cancelled" and time.monotonic() - start < 10
    stopped = [n for n in job["nodes"].values() if n["state"] == "running"]  # the node it stopped in, mid-loop
    assert len(stopped) == 1 and 0 < stopped[0]["step"] < stopped[0]["total"]
    _, job = server.request("GET", f"/api/jobs/{queued}")
    assert job["state"] == "cancelled" and job["started"] is None
    assert server.events(queued)[-1] == {"kind": "job_finished", "state": "cancelled", "seq": 1}
    assert server.request("DELETE", "/api/jobs/nosuchjob")[0] == 404


def test_an_invalid_job_is_a_422_with_every_problem_and_its_codes_and_nothing_is_queued(server):
    _, before = server.request("GET", "/api/jobs?limit=1")
    status, body = server.request("POST", "/api/jobs", {"workflow": "text2video_zero", "inputs": {
        "frames": 1000, "sampler": "nope", "guidance": "high", "colour": "red"}})
    assert status == 422 and body["valid"] is False
    codes = sorted((p["code"], p["port"]) for p in body["problems"])
    assert codes == [("input.type", "guidance"), ("input.unknown", "colour"), ("param.choice", "sampler"),
                     ("param.range", "frames")]
    ranged = next(p for p in body["problems"] if p["code"] == "param.range")
    assert ranged["node"] and ranged["hint"]
    # the same problems as `vdgraph validate --json` gives (the function behind it, with the same values)
    expected = vdgraph.validate(str(REPO / "workflows" / "text2video_zero.json"),
                                {"frames": 1000, "sampler": "nope", "guidance": "high", "colour": "red"})
    assert [p.to_json() for p in expected] == body["problems"]

    status, body = server.request("POST", "/api/jobs", {"workflow": "nosuch"})
    assert status == 422 and body["problems"][0]["code"] == "server.workflow-unknown"
    assert "text2video_zero" in body["problems"][0]["hint"]
    status, body = server.request("POST", "/api/jobs", {"workflow": "hello", "graph": {"vdgraph": 1}})
    assert status == 422 and body["problems"][0]["code"] == "server.request"
    status, body = server.request("POST", "/api/jobs", {"workflow": "hello", "inputs": [1, 2]})
    assert status == 422 and body["problems"][0]["code"] == "server.inputs"
    graph = {"vdgraph": 1, "nodes": {"x": {"type": "core.no_such_node"}}, "outputs": {"y": "x.value"}}
    status, body = server.request("POST", "/api/jobs", {"graph": graph})
    assert status == 422 and "node.unknown-type" in [p["code"] for p in body["problems"]]
    _, after = server.request("GET", "/api/jobs?limit=1")
    assert after["total"] == before["total"]


def test_a_whole_workflow_document_runs_and_history_is_newest_first_and_paginated(server):
    graph = {"vdgraph": 1, "name": "inline", "inputs": {"n": {"type": "int", "default": 2}},
             "nodes": {"m": {"type": "core.int_math", "in": {"a": "inputs.n"}, "params": {"b": 21, "op": "mul"}}},
             "outputs": {"answer": "m.result"}}
    server.wait(server.submit("shout", {"text": "first"}))  # a third job, so there is a second page on its own
    status, body = server.request("POST", "/api/jobs", {"graph": graph, "inputs": {"n": 2}})
    assert status == 201
    job = server.wait(body["id"])
    assert job["state"] == "done" and job["outputs"] == {"answer": 42} and job["workflow"] == "inline"
    second = server.submit("shout", {"text": "last"})
    server.wait(second)
    status, page = server.request("GET", "/api/jobs?limit=2")
    assert status == 200 and [j["id"] for j in page["jobs"]] == [second, body["id"]]
    assert page["next_offset"] == 2 and page["total"] >= 3
    _, rest = server.request("GET", f"/api/jobs?limit=2&offset={page['next_offset']}")
    assert not {j["id"] for j in rest["jobs"]} & {second, body["id"]}
    assert server.request("GET", "/api/jobs?limit=100000")[0] == 422


def test_outputs_stay_inside_the_output_directory(server):
    for target in ("../escape.mp4", "/tmp/escape.mp4", "jobs/../../escape.mp4"):
        status, body = server.request("POST", "/api/jobs", {"workflow": "text2video_zero",
                                                            "inputs": {**FAST_DEMO, "output": target}})
        assert status == 422, target
        problem = next(p for p in body["problems"] if p["code"] == "output.outside")
        assert problem["node"] == "write" and problem["port"] == "path"
        assert "--allow-outside-output-dir" not in problem["message"], problem  # not an option of serve
    host = urllib.parse.urlsplit(server.url).netloc
    for path in ("/files/../jobs.sqlite3", "/files/x/../../jobs.sqlite3", "/files/%2e%2e/jobs.sqlite3",
                 "/files/x/%2e%2e/%2e%2e/jobs.sqlite3", "/files/x//etc/passwd", "/files/jobs.sqlite3",
                 "/files/%00/x", "/files/x/hello.json%00.txt"):
        connection = http.client.HTTPConnection(host, timeout=10)
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        assert response.status == 404 and b"SQLite" not in body and b"root:" not in body, path


def test_a_nul_in_a_path_a_node_reads_is_a_422_naming_node_and_port(server):
    status, body = server.request("POST", "/api/jobs", {"workflow": "video2video",
                                                        "inputs": {"video": "/tmp/\u0000x.mp4"}})
    assert status == 422, body
    problem = next(p for p in body["problems"] if p["code"] == "input.path")
    assert problem["node"] == "read" and problem["port"] == "path"


@pytest.mark.parametrize("occupant, says", [("jobs.sqlite3", "is not a job database"), ("jobs", "is a file")])
def test_serve_refuses_an_output_dir_whose_queue_is_not_its_own_and_leaves_it(tmp_path, occupant, says):
    (tmp_path / occupant).write_text("a user's notes")
    done = subprocess.run([sys.executable, "-m", "vdgraph", "serve", "--port", "0", "--output-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode != 0 and says in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert (tmp_path / occupant).read_text() == "a user's notes"


def raw_post(server: ServerProcess, head: bytes, body_parts: list[bytes]) -> bytes:
    """Send a hand-made request and return what the server answered (read even when it stopped reading)."""
    address = urllib.parse.urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=20) as sock:
        sock.sendall(head)
        try:
            for part in body_parts:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer


def test_request_bodies_are_size_limited(server):
    # a declared length over the limit is refused before the body is read
    answer = raw_post(server, b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Content-Length: 2000000\r\nConnection: close\r\n\r\n", [])
    assert answer.startswith(b"HTTP/1.1 413") and b"larger than 1000000 bytes" in answer
    # a chunked body (no length) is counted as it arrives
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    answer = raw_post(server, b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                      [chunk] * 17 + [b"0\r\n\r\n"])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert server.request("POST", "/api/jobs", {"workflow": "hello", "inputs": {"name": "x" * 1000}})[0] == 201


def test_ten_jobs_submitted_at_once_all_finish_with_distinct_outputs(server):
    def submit(k: int) -> str:
        return server.submit("text2video_zero", {**FAST_DEMO, "seed": k % 5})  # identical pairs too

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        ids = list(pool.map(submit, range(10)))
    assert len(set(ids)) == 10
    jobs = [server.wait(job_id, timeout=120) for job_id in ids]
    assert [j["state"] for j in jobs] == ["done"] * 10
    urls = [j["outputs"]["video"]["url"] for j in jobs] + [j["outputs"]["contact_sheet"]["url"] for j in jobs]
    assert len(set(urls)) == 20
    videos = [server.request("GET", j["outputs"]["video"]["url"]) for j in jobs]
    assert all(status == 200 and data[4:8] == b"ftyp" for status, data in videos)
    assert videos[0][1] == videos[5][1]  # the same inputs made the same video, in two files


def test_with_a_token_every_call_needs_it_and_models_come_from_the_allowed_roots(tmp_path):
    token = "s3cret-token-for-tests"
    models = tmp_path / "models"
    models.mkdir()
    clips = tmp_path / "clips"
    clips.mkdir()
    server = ServerProcess(tmp_path / "out", "--model-root", str(models), "--input-root", str(clips), token=token)
    try:
        for path in ("/api/workflows", "/api/jobs", "/api/jobs/x", "/openapi.json", "/files/x/y.mp4"):
            assert server.request("GET", path, token=False)[0] == 401, path
            assert server.request("GET", path, token="wrong-token-123")[0] == 401, path
        assert server.request("POST", "/api/jobs", {"workflow": "hello"}, token=False)[0] == 401
        assert server.request("GET", "/api/workflows")[0] == 200
        assert server.request("GET", f"/api/jobs?token={token}", token=False)[0] == 200
        status, page = server.request("GET", "/", token=False)  # the page itself holds no data
        assert status == 200 and b"<title>vdgraph</title>" in page
        assert server.request("GET", "/static/app.js", token=False)[0] == 200

        for model in ("/etc", str(tmp_path), "relative/folder", "file:///etc", str(models / ".." / "out")):
            status, body = server.request("POST", "/api/jobs", {"workflow": "text2video_zero",
                                                                "inputs": {**FAST_DEMO, "model": model}})
            assert status == 422, model
            problem = next(p for p in body["problems"] if p["code"] == "server.model-outside")
            assert problem["node"] == "model" and problem["port"] == "model"
        inside = models / "mine"
        inside.mkdir()
        status, body = server.request("POST", "/api/jobs", {"workflow": "text2video_zero",
                                                            "inputs": {**FAST_DEMO, "model": str(inside)}})
        assert "server.model-outside" not in [p["code"] for p in body.get("problems", [])]
        # other files a job reads (an input video): only from inside an --input-root (or the output folder)
        for video in ("/etc/passwd", str(clips / ".." / "elsewhere.mp4"), "clip.mp4", "file:///etc/passwd"):
            status, body = server.request("POST", "/api/jobs", {"workflow": "video2video", "inputs": {"video": video}})
            assert status == 422, video
            problem = next(p for p in body["problems"] if p["code"] == "server.file-outside")
            assert problem["node"] == "read" and problem["port"] == "path" and video in problem["message"]
        for video in (str(clips / "clip.mp4"), str(tmp_path / "out" / "jobs" / "x" / "clip.mp4")):
            status, body = server.request("POST", "/api/jobs", {"workflow": "video2video", "inputs": {"video": video}})
            assert "server.file-outside" not in [p["code"] for p in body.get("problems", [])], video
        # a path made by another node is known only at run time: refused
        graph = {"vdgraph": 1, "inputs": {"x": {"type": "str", "default": "passwd"}}, "nodes": {
            "name": {"type": "core.format", "params": {"template": "/etc/$a"}, "in": {"a": "inputs.x"}},
            "read": {"type": "video.read_image", "in": {"path": "name.text"}}}, "outputs": {"frames": "read.frames"}}
        status, body = server.request("POST", "/api/jobs", {"graph": graph})
        assert status == 422
        assert [(p["node"], p["port"]) for p in body["problems"] if p["code"] == "server.file-link"] == [("read", "path")]
        job_id = server.submit("hello", {"name": "token"})
        job = server.wait(job_id)
        assert job["state"] == "done"
        url = job["outputs"]["file"]["url"]
        assert server.request("GET", url, token=False)[0] == 401
        assert server.request("GET", f"{url}?token={token}", token=False)[0] == 200
    finally:
        server.stop()


def test_binding_another_address_requires_a_token():
    result = subprocess.run([sys.executable, "-m", "vdgraph", "serve", "--host", "0.0.0.0", "--port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--token" in result.stderr


def test_a_sigkilled_server_restarts_without_losing_an_acknowledged_job(tmp_path):
    out = tmp_path / "out"
    server = ServerProcess(out)
    try:
        finished = server.submit("hello", {"name": "before"})
        server.wait(finished)
        running = server.submit("text2video_zero", LONG_DEMO)
        queued = [server.submit("text2video_zero", {**FAST_DEMO, "seed": 7}), server.submit("hello", {"name": "q"})]
        wait_running_step(server, running)
    finally:
        server.kill()  # SIGKILL: no chance to tidy up
    assert server.process.returncode == -9

    again = ServerProcess(out)
    try:
        job = again.wait(running)
        assert job["state"] == "failed" and job["error"].startswith("interrupted")
        assert f"job {running} was running when the server stopped" in again.log
        for job_id in queued:  # acknowledged and queued: they run after the restart
            assert again.wait(job_id, timeout=120)["state"] == "done"
        job = again.wait(finished)
        assert job["state"] == "done" and job["outputs"]["greeting"].startswith("Hello, before!")
        assert [r["id"] for r in job["report"]] and again.request("GET", job["outputs"]["file"]["url"])[0] == 200
        kinds = [e["kind"] for e in again.events(finished)]  # the stream of a job from before the restart
        assert kinds[0] == "job_started" and kinds[-2:] == ["run_finished", "job_finished"]
    finally:
        again.stop()
