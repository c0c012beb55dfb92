"""AnimateDiff: workflows/animatediff.json against diffusers' AnimateDiffPipeline on the same components.

    .venv/bin/python bench/animatediff.py [--frames 16] [--steps 10] [--rounds 3] [--threads 1]
                                          [--memory-frames 16,32,64] [--memory-steps 2]

A random "small" 2-D model (64x64 images, three UNet levels, two layers per block; tests/video_fixtures.py) and a
random motion adapter made for it (motion window 32 frames) are saved to a temporary folder; both sides load them
with safetensors inside the measured region.

* Cold time, alternating ours / reference for --rounds rounds (ABBA: the side that runs first changes every
  round; garbage is collected, untimed, before each run), medians of the main thread's CPU time (with one
  torch thread all the work runs there; far less disturbed by other jobs than wall time) and of wall time:
  ours is a fresh `vdgraph.Executor` per round running animatediff.json up to `frames` (load, inflate, encode,
  denoise, decode and everything the engine does); the reference loads the components, builds the pipeline
  (which inflates the UNet) and calls it (output_type "np"). The frames are compared: max abs difference 0.
* Peak RSS with FreeNoise context windows (context_length 16, stride 4, shuffled-context noise) at each of
  --memory-frames, without and with split inference (spatial layers 16 frames per call, motion modules 256 pixel
  sequences), in a fresh subprocess per side, size and setting: the highest RSS sampled every millisecond minus the
  RSS before the run (after imports); weights are counted. --skip-timing gives only these.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
WORKFLOW = REPO / "workflows" / "animatediff.json"
PROMPT = "a red circle on a blue background"


def inputs_for(model: str, adapter: str, frames: int, steps: int, windows: bool, split: int = 0) -> dict:
    inputs = {"model": model, "motion_adapter": adapter, "prompt": PROMPT, "frames": frames, "height": 64,
              "width": 64, "steps": steps, "guidance": 7.5, "seed": 0}
    if windows:
        inputs.update(prompt="0: " + PROMPT, context_length=16, context_stride=4, context_split_frames=split)
    return inputs


def run_ours(model, adapter, frames, steps, windows=False, split=0):
    """(frames, wall seconds, CPU seconds)"""
    import vdgraph

    executor = vdgraph.Executor(device="cpu")
    start, cpu = time.perf_counter(), time.thread_time()
    result = executor.run(WORKFLOW, inputs_for(model, adapter, frames, steps, windows, split), outputs=["frames"])
    return result["frames"], time.perf_counter() - start, time.thread_time() - cpu


def run_reference(model, adapter, frames, steps, windows=False, split=0):
    from video_fixtures import load_animatediff_pipeline

    start, cpu = time.perf_counter(), time.thread_time()
    pipe = load_animatediff_pipeline(model, adapter)
    if windows:
        pipe.enable_free_noise(context_length=16, context_stride=4)
    if split:
        pipe.enable_free_noise_split_inference(256, split)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pipe(prompt=PROMPT, num_frames=frames, height=64, width=64, num_inference_steps=steps,
                   guidance_scale=7.5, generator=torch.Generator().manual_seed(0), output_type="np")
    return torch.from_numpy(out.frames[0]), time.perf_counter() - start, time.thread_time() - cpu


def memory_child(args) -> None:
    """Subprocess body: one run of one side with context windows; prints its peak RSS growth as JSON."""
    warnings.filterwarnings("ignore")
    import diffusers  # noqa: F401  (imports count as baseline, not as the run's memory)
    from diffusers import AnimateDiffPipeline  # noqa: F401
    from text2video import PeakRSS

    import vdgraph  # noqa: F401
    import vdgraph_video  # noqa: F401

    torch.set_num_threads(args.threads)
    run = run_ours if args.child == "ours" else run_reference
    with PeakRSS() as m:
        run(args.model, args.adapter, args.frames, args.steps, windows=True, split=args.split)
    print(json.dumps({"peak": m.peak}))


def peak_in_subprocess(args, side: str, model: str, adapter: str, frames: int, split: int) -> int:
    command = [sys.executable, __file__, "--child", side, "--model", model, "--adapter", adapter, "--frames",
               str(frames), "--steps", str(args.memory_steps), "--threads", str(args.threads), "--split", str(split)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory-frames", default="16,32,64", help='frame counts for peak RSS ("": none)')
    parser.add_argument("--memory-steps", type=int, default=1)
    parser.add_argument("--split", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--skip-timing", action="store_true", help="only the peak RSS figures")
    parser.add_argument("--child", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--adapter", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        memory_child(args)
        return
    from text2video import mib
    from video_fixtures import SMALL, save_motion_adapter_for, save_tiny_model

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory(prefix="vdgraph-bench-animatediff-")
    model = save_tiny_model(os.path.join(tmp.name, "model"), "2d", size="small")
    adapter = save_motion_adapter_for(os.path.join(tmp.name, "adapter"), model_folder=model)
    print(f"small random model {SMALL['unet']['block_out_channels']} + motion adapter; {args.frames} frames 64x64, "
          f"{args.steps} DDIM steps, guidance 7.5; torch {torch.__version__}, {args.threads} thread(s)")

    if not args.skip_timing:
        timing(args, model, adapter)
    if not args.memory_frames:  # --memory-frames "": timing only
        tmp.cleanup()
        return
    print(f"\npeak RSS growth of one run with context windows (16 frames, stride 4), {args.memory_steps} step(s), "
          "fresh process per run; without / with split inference (16 frames, 256 pixels per call):")
    for frames in (int(f) for f in args.memory_frames.split(",")):
        row = [mib(peak_in_subprocess(args, side, model, adapter, frames, split))
               for split in (0, 16) for side in ("ours", "reference")]
        print(f"  {frames:3d} frames: ours {row[0]}, reference {row[1]}; split: ours {row[2]}, reference {row[3]}")
    tmp.cleanup()


def timing(args, model: str, adapter: str) -> None:
    # one untimed round each at the measured size (one step): imports, kernel selection, file cache, and the
    # process's memory grown to the run's size (else the first timed run pays ~0.4 s of page faults)
    run_ours(model, adapter, args.frames, 1)
    run_reference(model, adapter, args.frames, 1)
    ours: dict[str, list[float]] = {"wall": [], "cpu": []}
    ref: dict[str, list[float]] = {"wall": [], "cpu": []}
    max_diff = 0.0
    for round_ in range(args.rounds):
        # ABBA: the side that goes first changes every round, so drift of a loaded machine and whatever the run
        # before leaves behind (freed memory, caches) do not fall on one side; garbage is collected untimed
        order = ((run_ours, ours), (run_reference, ref))
        results = {}
        for run, times in (order if round_ % 2 == 0 else order[::-1]):
            gc.collect()
            results[run], wall, cpu = run(model, adapter, args.frames, args.steps)
            times["wall"].append(wall)
            times["cpu"].append(cpu)
        max_diff = max(max_diff, (results[run_ours] - results[run_reference]).abs().max().item())
    med = statistics.median
    for key, label in (("cpu", "CPU time, load included"), ("wall", "wall time, load included")):
        print(f"cold, {label:<24} ours {med(ours[key]):7.3f} s   reference {med(ref[key]):7.3f} s   "
              f"ratio {med(ours[key]) / med(ref[key]):.3f}")
    print("per-round CPU-time ratios (odd rounds ran ours first): "
          + ", ".join(f"{o / r:.3f}" for o, r in zip(ours["cpu"], ref["cpu"])))
    print(f"max abs difference of the frames: {max_diff}")


if __name__ == "__main__":
    main()
