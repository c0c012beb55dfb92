"""AnimateDiff + ControlNet: workflows/animatediff_controlnet.json against diffusers' AnimateDiffControlNetPipeline
on the same components.

    .venv/bin/python bench/animatediff_controlnet.py [--frames 16] [--steps 10] [--rounds 3] [--threads 1]
                                                     [--memory-frames 16]

A random "small" 2-D model (64x64 images, three UNet levels, two layers per block; tests/video_fixtures.py), a
random motion adapter and a ControlNetModel.from_unet made for it are saved to a temporary folder, with a PNG-frame
folder of seeded random 64x64 condition images; both sides load everything (weights with safetensors, the PNG
frames) inside the measured region and take the frames as condition images as they are (condition "video").

* Cold time, alternating ours / reference for --rounds rounds, medians of the main thread's CPU time (with one
  torch thread all the work runs there; far less disturbed by other jobs than wall time) and of wall time:
  ours is a fresh `vdgraph.Executor` per round running animatediff_controlnet.json up to `frames`; the reference
  loads the components, builds the pipeline (which inflates the UNet) and calls it (output_type "np"). The frames
  are compared: max abs difference 0.
* Peak RSS of one run at each of --memory-frames, in a fresh subprocess per side and size: the highest RSS sampled
  every millisecond minus the RSS before the run (after imports); weights are counted.
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
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
WORKFLOW = REPO / "workflows" / "animatediff_controlnet.json"
PROMPT = "a red circle on a blue background"


def run_ours(folders: dict, frames: int, steps: int):
    """(frames, wall seconds, CPU seconds)"""
    import vdgraph

    inputs = {"model": folders["model"], "motion_adapter": folders["adapter"], "controlnet": folders["controlnet"],
              "control_video": folders["control"], "condition": "video", "prompt": PROMPT, "frames": frames,
              "height": 64, "width": 64, "steps": steps, "guidance": 7.5, "seed": 0}
    executor = vdgraph.Executor(device="cpu")
    start, cpu = time.perf_counter(), time.thread_time()
    result = executor.run(WORKFLOW, inputs, outputs=["frames"])
    return result["frames"], time.perf_counter() - start, time.thread_time() - cpu


def run_reference(folders: dict, frames: int, steps: int):
    from animatediff_controlnet_fixtures import load_animatediff_controlnet_pipeline, png_frames

    start, cpu = time.perf_counter(), time.thread_time()
    pipe = load_animatediff_controlnet_pipeline(folders["model"], folders["adapter"], folders["controlnet"])
    condition = png_frames(folders["control"])[:frames]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pipe(prompt=PROMPT, num_frames=frames, height=64, width=64, num_inference_steps=steps,
                   guidance_scale=7.5, conditioning_frames=condition, generator=torch.Generator().manual_seed(0),
                   output_type="np")
    return torch.from_numpy(out.frames[0]), time.perf_counter() - start, time.thread_time() - cpu


def memory_child(args) -> None:
    """Subprocess body: one run of one side; prints its peak RSS growth as JSON."""
    warnings.filterwarnings("ignore")
    import diffusers  # noqa: F401  (imports count as baseline, not as the run's memory)
    from diffusers import AnimateDiffControlNetPipeline  # noqa: F401
    from text2video import PeakRSS

    import vdgraph  # noqa: F401
    import vdgraph_video  # noqa: F401

    torch.set_num_threads(args.threads)
    run = run_ours if args.child == "ours" else run_reference
    with PeakRSS() as m:
        run(json.loads(args.folders), args.frames, args.steps)
    print(json.dumps({"peak": m.peak}))


def peak_in_subprocess(args, side: str, folders: dict, frames: int) -> int:
    command = [sys.executable, __file__, "--child", side, "--folders", json.dumps(folders), "--frames", str(frames),
               "--steps", str(args.memory_steps), "--threads", str(args.threads)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory-frames", default="16", help='frame counts for peak RSS ("": none)')
    parser.add_argument("--memory-steps", type=int, default=2)
    parser.add_argument("--skip-timing", action="store_true", help="only the peak RSS figures")
    parser.add_argument("--child", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--folders", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        memory_child(args)
        return
    from text2video import mib
    from video_fixtures import SMALL, save_controlnet_for, save_motion_adapter_for, save_tiny_model, write_png_frames

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory(prefix="vdgraph-bench-animatediff-controlnet-")
    most = max([args.frames] + [int(f) for f in args.memory_frames.split(",") if f])
    model = save_tiny_model(os.path.join(tmp.name, "model"), "2d", size="small")
    folders = {"model": model,
               "adapter": save_motion_adapter_for(os.path.join(tmp.name, "adapter"), model_folder=model),
               "controlnet": save_controlnet_for(model, os.path.join(tmp.name, "controlnet")),
               "control": write_png_frames(os.path.join(tmp.name, "control"), most, 64)}
    print(f"small random model {SMALL['unet']['block_out_channels']} + motion adapter + ControlNet; {args.frames} "
          f"frames 64x64, {args.steps} DDIM steps, guidance 7.5; torch {torch.__version__}, {args.threads} thread(s)")

    if not args.skip_timing:
        timing(args, folders)
    if args.memory_frames:
        print(f"\npeak RSS growth of one run, {args.memory_steps} step(s), fresh process per run:")
        for frames in (int(f) for f in args.memory_frames.split(",")):
            ours, ref = (peak_in_subprocess(args, side, folders, frames) for side in ("ours", "reference"))
            print(f"  {frames:3d} frames: ours {mib(ours)}, reference {mib(ref)}")
    tmp.cleanup()


def timing(args, folders: dict) -> None:
    run_ours(folders, 2, 1)  # one untimed round each: imports, kernel selection, file cache
    run_reference(folders, 2, 1)
    ours: dict[str, list[float]] = {"wall": [], "cpu": []}
    ref: dict[str, list[float]] = {"wall": [], "cpu": []}
    max_diff = 0.0
    for _ in range(args.rounds):
        frames, wall, cpu = run_ours(folders, args.frames, args.steps)
        ours["wall"].append(wall)
        ours["cpu"].append(cpu)
        expected, wall, cpu = run_reference(folders, args.frames, args.steps)
        ref["wall"].append(wall)
        ref["cpu"].append(cpu)
        max_diff = max(max_diff, (frames - expected).abs().max().item())
    med = statistics.median
    for key, label in (("cpu", "CPU time, load included"), ("wall", "wall time, load included")):
        print(f"cold, {label:<24} ours {med(ours[key]):7.3f} s   reference {med(ref[key]):7.3f} s   "
              f"ratio {med(ours[key]) / med(ref[key]):.3f}")
    print("per-round CPU-time ratios: " + ", ".join(f"{o / r:.3f}" for o, r in zip(ours["cpu"], ref["cpu"])))
    print(f"max abs difference of the frames: {max_diff}")


if __name__ == "__main__":
    main()
