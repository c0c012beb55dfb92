"""Text2Video-Zero: the workflow against diffusers' TextToVideoZeroPipeline on the same model, in one process.

    .venv/bin/python bench/text2video.py [--model FOLDER] [--size small|tiny] [--frames 8] [--steps 20]
                                         [--rounds 5] [--threads 1]

Without --model a random model is built from configs and saved to a temporary folder ("small": 64x64 images,
three UNet levels; "tiny": the test model). Both sides load that folder with safetensors.

* Cold time, alternating ours / reference for --rounds rounds, median of each, as wall time and as CPU time of
  the main thread (with one torch thread all the work runs there; on a shared machine CPU time is far less
  disturbed by other jobs than wall time):
  - ours: a fresh `vdgraph.Executor` per round (empty caches: no cache help), running text2video_zero.json up to
    its `frames` output (the writer is not requested, so no encoding either side): load + encode + denoise +
    decode, plus everything the engine does (validation, keys, events, immutability checks).
  - reference: load the pipeline from the same folder + call it (output_type "np").
  The same split without loading (ours: the node times minus the loader's; reference: the call alone) is
  printed too. The two outputs are compared: max abs difference must be 0.
* Peak memory, measured apart from the timing: a fresh subprocess per side runs it once while a thread samples
  the resident set size (RSS, /proc/self/statm) every millisecond; the figure is the highest RSS minus the RSS
  just before the run (after imports). tracemalloc cannot see torch's allocations (they come from the C
  allocator); RSS does. A fresh process per side keeps one side's freed-but-kept allocator memory from
  flattering the other. Weights are counted (both sides load the model inside the measured run).
* Warm cache: one Executor runs the full workflow (with the mp4 writer), then again with only fps changed; the
  second run's time is printed as a percentage of the cold full run (target: under 2%).

The machine may be shared: --threads 1 (the default) keeps torch from contending with other jobs for cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
WORKFLOW = REPO / "workflows" / "text2video_zero.json"
PROMPT = "a red circle on a blue background"
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRSS:
    """Samples RSS every millisecond while active; `peak` is the highest RSS minus the RSS at entry."""

    def __enter__(self):
        self.base = rss()
        self.high = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.high = max(self.high, rss())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.high = max(self.high, rss())
        self.peak = self.high - self.base


def inputs_for(args, folder: str, fps: float = 8.0, output: str = "bench.mp4") -> dict:
    return {"model": folder, "prompt": PROMPT, "frames": args.frames, "height": args.height, "width": args.width,
            "steps": args.steps, "t0": args.t0, "t1": args.t1, "guidance": 7.5, "motion_x": 12.0,
            "motion_y": 12.0, "motion_mode": "reference", "alpha_mode": "reference", "eta": 0.0, "seed": 0,
            "fps": fps, "output": output}


def run_ours(args, folder: str):
    """(frames, wall seconds, wall seconds without loading, CPU seconds)"""
    import vdgraph

    executor = vdgraph.Executor(device="cpu")
    start, cpu = time.perf_counter(), time.thread_time()
    result = executor.run(WORKFLOW, inputs_for(args, folder), outputs=["frames"])
    total, cpu = time.perf_counter() - start, time.thread_time() - cpu
    load = sum(r.seconds for r in result.report if r.id == "model")
    run_node_overhead.append(total - sum(r.seconds for r in result.report))
    return result["frames"], total, total - load, cpu


run_node_overhead: list[float] = []
"""Per run of ours: wall time outside the nodes (validation, keys, cache lookups, events, immutability checks)."""


def run_reference(args, folder: str):
    from video_fixtures import load_reference_pipeline

    start, cpu = time.perf_counter(), time.thread_time()
    pipe = load_reference_pipeline(folder)
    pipe.set_progress_bar_config(disable=True)
    loaded = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pipe(prompt=PROMPT, video_length=args.frames, height=args.height, width=args.width,
                   num_inference_steps=args.steps, t0=args.t0, t1=args.t1, guidance_scale=7.5, eta=0.0,
                   motion_field_strength_x=12, motion_field_strength_y=12,
                   generator=torch.Generator().manual_seed(0), output_type="np")
    end, cpu = time.perf_counter(), time.thread_time() - cpu
    return torch.from_numpy(out.images), end - start, end - loaded, cpu


def warm_fps_change(args, folder: str, workdir: str) -> tuple[float, float, list[str]]:
    import vdgraph

    executor = vdgraph.Executor(device="cpu")
    start = time.perf_counter()
    executor.run(WORKFLOW, inputs_for(args, folder, fps=8.0), output_dir=workdir)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    again = executor.run(WORKFLOW, inputs_for(args, folder, fps=12.0), output_dir=workdir)
    warm = time.perf_counter() - start
    return cold, warm, again.ran


def memory_child(args) -> None:
    """Subprocess body: one run of one side; prints its peak RSS growth as JSON."""
    warnings.filterwarnings("ignore")
    import diffusers  # noqa: F401  (imports count as baseline, not as the run's memory)
    import transformers  # noqa: F401
    from diffusers import TextToVideoZeroPipeline  # noqa: F401
    from transformers import CLIPTextModel  # noqa: F401

    import vdgraph  # noqa: F401
    import vdgraph_video  # noqa: F401

    torch.set_num_threads(args.threads)
    with PeakRSS() as m:
        (run_ours if args.child == "ours" else run_reference)(args, args.model)
    print(json.dumps({"peak": m.peak}))


def memory_in_subprocess(args, side: str, folder: str) -> int:
    command = [sys.executable, __file__, "--child", side, "--model", folder, "--frames", str(args.frames),
               "--steps", str(args.steps), "--t0", str(args.t0), "--t1", str(args.t1), "--height",
               str(args.height), "--width", str(args.width), "--threads", str(args.threads)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak"]


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a diffusers-format folder (default: a random model built from configs)")
    parser.add_argument("--size", choices=["small", "tiny"], default="small")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--t0", type=int, default=14)
    parser.add_argument("--t1", type=int, default=17)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", choices=["ours", "reference"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    side = 64 if args.size == "small" else 32
    args.height = args.height or side
    args.width = args.width or side
    if args.child:
        memory_child(args)
        return
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory(prefix="vdgraph-bench-")
    folder = args.model
    if folder is None:
        from video_fixtures import save_tiny_model

        folder = save_tiny_model(os.path.join(tmp.name, "model"), "2d", size=args.size)
    print(f"model {folder if args.model else args.size + ' random model'}; {args.frames} frames "
          f"{args.height}x{args.width}, {args.steps} DDIM steps, t0/t1 {args.t0}/{args.t1}; "
          f"torch {torch.__version__}, {args.threads} thread(s)")

    run_ours(args, folder)  # one untimed round each: imports, kernel selection, file cache
    run_reference(args, folder)
    ours: dict[str, list[float]] = {"wall": [], "gen": [], "cpu": []}
    ref: dict[str, list[float]] = {"wall": [], "gen": [], "cpu": []}
    max_diff = 0.0
    for _ in range(args.rounds):
        frames, *times = run_ours(args, folder)
        for key, value in zip(("wall", "gen", "cpu"), times):
            ours[key].append(value)
        expected, *times = run_reference(args, folder)
        for key, value in zip(("wall", "gen", "cpu"), times):
            ref[key].append(value)
        max_diff = max(max_diff, (frames - expected).abs().max().item())

    med = statistics.median
    for key, label in (("cpu", "CPU time, load included"), ("wall", "wall time, load included"),
                       ("gen", "wall time, generation only")):
        print(f"cold, {label:<27} ours {med(ours[key]):7.3f} s   reference {med(ref[key]):7.3f} s   "
              f"ratio {med(ours[key]) / med(ref[key]):.3f}")
    print("per-round CPU-time ratios: " + ", ".join(f"{o / r:.3f}" for o, r in zip(ours["cpu"], ref["cpu"])))
    print(f"engine time outside the nodes (median): {1000 * med(run_node_overhead):.1f} ms per run")
    print(f"max abs difference of the frames: {max_diff}")
    print(f"peak RSS growth of one run in a fresh process: ours {mib(memory_in_subprocess(args, 'ours', folder))}, "
          f"reference {mib(memory_in_subprocess(args, 'reference', folder))}")
    cold, warm, ran = warm_fps_change(args, folder, tmp.name)
    print(f"\nwarm cache, only fps changed: {warm * 1000:.1f} ms = {100 * warm / cold:.2f}% of the cold full run "
          f"({cold:.3f} s, mp4 writer included); re-ran: {', '.join(ran)}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
