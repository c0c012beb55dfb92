"""A real `vdgraph serve` process on a free localhost port, for the server and browser tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FAST_DEMO = {"steps": 4, "t0": 1, "t1": 2, "frames": 2}
"""text2video_zero on shapes-64 in a fraction of a second of denoising."""


class ServerProcess:
    """`python -m vdgraph serve --port 0 ...` in a subprocess; `url` once it listens."""

    def __init__(self, output_dir: Path, *args: str, token: str | None = None, timeout: float = 90.0) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        paths = [str(REPO), str(REPO / "nodes"), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        command = [sys.executable, "-m", "vdgraph", "serve", "--port", "0", "--output-dir", str(output_dir),
                   "--threads", "1", *args]
        if token:
            command += ["--token", token]
        self.token = token
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=env, cwd=str(output_dir.parent))
        self.lines: list[str] = []
        found = threading.Event()
        self.url = ""

        def read() -> None:
            for line in self.process.stdout:
                self.lines.append(line)
                match = re.search(r"listening on (http://\S+?)/? ", line)
                if match and not self.url:
                    self.url = match.group(1)
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(timeout) or not self.url:
            self.kill()
            raise RuntimeError("the server did not start:\n" + "".join(self.lines))

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def request(self, method: str, path: str, body: Any = None, token: str | None | bool = True,
                raw: bytes | None = None, headers: dict | None = None) -> tuple[int, Any]:
        """(status, JSON body or bytes) of one call; `token=True` sends the server's token, a str another one."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        chosen = self.token if token is True else (token or None)
        if chosen:
            request.add_header("Authorization", f"Bearer {chosen}")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, payload, kind = response.status, response.read(), response.headers.get("content-type", "")
        except urllib.error.HTTPError as exc:
            status, payload, kind = exc.code, exc.read(), exc.headers.get("content-type", "")
        return status, json.loads(payload) if "json" in kind else payload

    def submit(self, workflow: str, inputs: dict | None = None, **kw: Any) -> str:
        status, body = self.request("POST", "/api/jobs", {"workflow": workflow, "inputs": inputs or {}}, **kw)
        assert status == 201, (status, body)
        return body["id"]

    def wait(self, job_id: str, timeout: float = 60.0, states: tuple = ("done", "failed", "cancelled")) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, job = self.request("GET", f"/api/jobs/{job_id}")
            assert status == 200, (status, job)
            if job["state"] in states:
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not reach {states} in {timeout} s; log:\n{self.log}")

    def events(self, job_id: str, timeout: float = 60.0) -> list[dict]:
        """Every event of the job's stream, read until the stream ends (the job finished)."""
        request = urllib.request.Request(f"{self.url}/api/jobs/{job_id}/events")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        events = []
        with urllib.request.urlopen(request, timeout=timeout) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response:
                line = line.decode()
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        return events

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(20)
