"""The job server against a cold CLI process: `python bench/server.py [--rounds 3] [--jobs 30] [--threads 1]`.

1. The demo (workflows/text2video_zero.json, default inputs: 8 frames, 20 DDIM steps) as a cold `vdgraph run`
   process (imports, model loading, denoising, writing) against the same run submitted to a warm `vdgraph serve`
   (models and text encodings in its memory cache, as after any first job), submit to done, seen by the client on
   the job's event stream. Each round uses a new seed for both, so the denoising is never served from a cache.
   Target: a warm job in under 20% of the cold process's wall time.
2. The server's overhead per job: workflows/hello.json (three trivial nodes and a JSON file) submitted and
   followed to its end, minus the run's own time as the executor reports it (`run_finished.seconds`): HTTP,
   validation, the SQLite commits, the worker hand-off and the events. Target: under 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from server_fixtures import ServerProcess  # noqa: E402  (the tests' real-subprocess server)


def cold_cli(seed: int, out: Path, threads: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vdgraph", "run", str(REPO / "workflows" / "text2video_zero.json"),
                    "--set", f"seed={seed}", "--output-dir", str(out), "--threads", str(threads), "--quiet"],
                   check=True, env=env, stdout=subprocess.DEVNULL, cwd=str(out.parent))
    return time.perf_counter() - start


def follow(server: ServerProcess, workflow: str, inputs: dict) -> tuple[float, float, dict]:
    """(seconds from submit to the job_finished event, the run's own seconds, the job)."""
    start = time.perf_counter()
    body = json.dumps({"workflow": workflow, "inputs": inputs}).encode()
    request = urllib.request.Request(server.url + "/api/jobs", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        job_id = json.loads(response.read())["id"]
    run_seconds = 0.0
    with urllib.request.urlopen(f"{server.url}/api/jobs/{job_id}/events") as stream:
        for line in stream:
            if not line.startswith(b"data: "):
                continue
            event = json.loads(line[6:])
            if event["kind"] == "run_finished":
                run_seconds = event["seconds"]
            if event["kind"] == "job_finished":
                elapsed = time.perf_counter() - start
                assert event["state"] == "done", event
                break
    _, job = server.request("GET", f"/api/jobs/{job_id}")
    return elapsed, run_seconds, job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="cold CLI runs and warm server jobs of the demo")
    parser.add_argument("--jobs", type=int, default=30, help="hello.json jobs for the overhead figure")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, for both (as `make demo`)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vdgraph-bench-server-") as tmp:
        root = Path(tmp)
        server = ServerProcess(root / "server", "--threads", str(args.threads), "--preview-every", "1000")
        try:
            follow(server, "text2video_zero", {"seed": 999})  # the first job loads the model
            cold, warm = [], []
            for k in range(args.rounds):  # alternate, so both see the same machine load
                cold.append(cold_cli(100 + k, root / f"cli{k}", args.threads))
                warm.append(follow(server, "text2video_zero", {"seed": 100 + k})[0])
                print(f"round {k + 1}: cold CLI {cold[-1]:.2f} s, warm server job {warm[-1]:.2f} s", flush=True)
            overheads = []
            for _ in range(args.jobs):
                elapsed, run_seconds, _ = follow(server, "hello", {"name": "bench"})
                overheads.append(elapsed - run_seconds)
        finally:
            server.stop()
    ratio = statistics.median(warm) / statistics.median(cold)
    print(f"demo, cold `vdgraph run` process: median {statistics.median(cold):.2f} s ({', '.join(f'{c:.2f}' for c in cold)})")
    print(f"demo, warm server job (submit to done): median {statistics.median(warm):.2f} s "
          f"({', '.join(f'{w:.2f}' for w in warm)})")
    print(f"ratio warm / cold: {100 * ratio:.1f}% (target < 20%)")
    print(f"server overhead per job (hello.json, {args.jobs} jobs, submit to done minus the run itself): median "
          f"{1000 * statistics.median(overheads):.1f} ms, p90 {1000 * sorted(overheads)[int(0.9 * len(overheads))]:.1f} "
          f"ms (target < 50 ms)")


if __name__ == "__main__":
    main()
