"""AnimateDiff workflows against their diffusers pipelines on the same components.

    .venv/bin/python bench/animatediff.py [--workflow animatediff|controlnet|video2video] [--frames 16] [--steps 10]
                                          [--rounds 3] [--threads 1] [--memory-frames 16,32,64] [--memory-steps 2]
                                          [--size small|real] [--device cpu] [--dtype float32]

| --workflow | ours | reference |
| --- | --- | --- |
| animatediff (default) | workflows/animatediff.json | AnimateDiffPipeline |
| controlnet | workflows/animatediff_controlnet.json (condition "video") | AnimateDiffControlNetPipeline |
| video2video | workflows/animatediff_video2video.json (strength 0.6) | AnimateDiffVideoToVideoPipeline |

A random 2-D model (tests/video_fixtures.py; `--size small`: 64x64 images, three UNet levels, two layers per block;
`--size real`: Stable Diffusion 1.5's configuration with random weights, 512x512, for a GPU machine), a random
motion adapter made for it (motion window 32 frames; with `real`, animatediff-motion-adapter-v1-5-2's
configuration) and, as the workflow needs them, a ControlNetModel.from_unet of it and a PNG-frame folder of seeded
random frames of the video's size (the control video, or the input video) are saved to a temporary folder; both
sides load everything (weights with safetensors, the PNG frames) inside the measured region, onto --device in
--dtype. On a GPU machine, AnimateDiff at the issue's size:

    .venv/bin/python bench/animatediff.py --size real --device cuda --dtype float16 --frames 16 --steps 25 \
        --rounds 2 --memory-frames 16,32

(on CUDA the timed figure is wall time, with the device synchronised; the memory figures add the CUDA peak).

* Cold time, alternating ours / reference for --rounds rounds (ABBA: the side that runs first changes every
  round; garbage is collected, untimed, before each run), medians of the main thread's CPU time (with one
  torch thread all the work runs there; far less disturbed by other jobs than wall time) and of wall time:
  ours is a fresh `vdgraph.Executor` per round running the workflow up to `frames` (load, inflate, encode,
  denoise, decode and everything the engine does); the reference loads the components, builds the pipeline
  (which inflates the UNet) and calls it (output_type "np"). The frames are compared: max abs difference 0.
* Peak RSS of one run at each of --memory-frames, in a fresh subprocess per side and size: the highest RSS sampled
  every millisecond minus the RSS before the run (after imports); weights are counted. For animatediff the runs use
  FreeNoise context windows (context_length 16, stride 4, shuffled-context noise), without and with split
  inference (spatial layers 16 frames per call, motion modules 256 pixel sequences). --skip-timing gives only these.
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
WORKFLOWS = {"animatediff": "animatediff.json", "controlnet": "animatediff_controlnet.json",
             "video2video": "animatediff_video2video.json"}
PROMPT = "a red circle on a blue background"
GUIDANCE, STRENGTH = 7.5, 0.6
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def our_inputs(workflow: str, folders: dict, frames: int, steps: int, windows: bool, split: int) -> dict:
    size = folders["size"]
    inputs = {"model": folders["model"], "motion_adapter": folders["adapter"], "prompt": PROMPT, "frames": frames,
              "height": size, "width": size, "steps": steps, "guidance": GUIDANCE, "seed": 0}
    if workflow == "controlnet":
        inputs.update(controlnet=folders["controlnet"], control_video=folders["video"], condition="video")
    elif workflow == "video2video":
        inputs.update(video=folders["video"], strength=STRENGTH)
    if windows:
        inputs.update(prompt="0: " + PROMPT, context_length=16, context_stride=4, context_split_frames=split)
    return inputs


def run_ours(workflow: str, folders: dict, frames: int, steps: int, windows: bool = False, split: int = 0):
    """(frames, wall seconds, CPU seconds)"""
    import vdgraph

    device = folders["device"]
    executor = vdgraph.Executor(device=device, dtype=DTYPES[folders["dtype"]])
    inputs = our_inputs(workflow, folders, frames, steps, windows, split)
    start, cpu = time.perf_counter(), time.thread_time()
    result = executor.run(REPO / "workflows" / WORKFLOWS[workflow], inputs, outputs=["frames"])
    sync(device)
    return result["frames"].float().cpu(), time.perf_counter() - start, time.thread_time() - cpu


def reference_pipeline(workflow: str, folders: dict):
    from video_fixtures import load_animatediff_pipeline

    if workflow == "controlnet":
        from animatediff_controlnet_fixtures import load_animatediff_controlnet_pipeline

        return load_animatediff_controlnet_pipeline(folders["model"], folders["adapter"], folders["controlnet"])
    pipe = load_animatediff_pipeline(folders["model"], folders["adapter"])
    if workflow == "video2video":
        from diffusers import AnimateDiffVideoToVideoPipeline

        pipe = AnimateDiffVideoToVideoPipeline.from_pipe(pipe)
        pipe.set_progress_bar_config(disable=True)
    return pipe


def run_reference(workflow: str, folders: dict, frames: int, steps: int, windows: bool = False, split: int = 0):
    from animatediff_controlnet_fixtures import png_frames

    start, cpu = time.perf_counter(), time.thread_time()
    pipe = reference_pipeline(workflow, folders)
    if (folders["device"], folders["dtype"]) != ("cpu", "float32"):  # else .to only walks the modules
        pipe = pipe.to(folders["device"], DTYPES[folders["dtype"]])
    if windows:
        pipe.enable_free_noise(context_length=16, context_stride=4)
    if split:
        pipe.enable_free_noise_split_inference(256, split)
    size = folders["size"]
    call = {"prompt": PROMPT, "height": size, "width": size, "num_inference_steps": steps, "guidance_scale": GUIDANCE,
            "generator": torch.Generator().manual_seed(0), "output_type": "np"}
    if workflow == "controlnet":
        call.update(num_frames=frames, conditioning_frames=png_frames(folders["video"])[:frames])
    elif workflow == "video2video":
        call.update(video=png_frames(folders["video"])[:frames], strength=STRENGTH)
    else:
        call.update(num_frames=frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pipe(**call)
    sync(folders["device"])
    return torch.from_numpy(out.frames[0]).float(), time.perf_counter() - start, time.thread_time() - cpu


def memory_child(args) -> None:
    """Subprocess body: one run of one side; prints its peak RSS growth as JSON."""
    warnings.filterwarnings("ignore")
    import diffusers  # noqa: F401  (imports count as baseline, not as the run's memory)
    from diffusers import AnimateDiffControlNetPipeline, AnimateDiffPipeline  # noqa: F401
    from text2video import PeakRSS

    import vdgraph  # noqa: F401
    import vdgraph_video  # noqa: F401

    torch.set_num_threads(args.threads)
    run = run_ours if args.child == "ours" else run_reference
    folders = json.loads(args.folders)
    cuda = folders["device"].startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as m:
        run(args.workflow, folders, args.frames, args.steps, windows=args.workflow == "animatediff", split=args.split)
    print(json.dumps({"peak": m.peak, **({"cuda_peak": torch.cuda.max_memory_allocated()} if cuda else {})}))


def peak_in_subprocess(args, side: str, folders: dict, frames: int, split: int) -> dict:
    """{"peak": RSS growth in bytes[, "cuda_peak": bytes]} of one run in a fresh process."""
    command = [sys.executable, __file__, "--workflow", args.workflow, "--child", side, "--folders",
               json.dumps(folders), "--frames", str(frames), "--steps", str(args.memory_steps), "--threads",
               str(args.threads), "--split", str(split)]
    out = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if out.returncode:
        raise SystemExit(f"{side} subprocess at {frames} frames failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workflow", choices=sorted(WORKFLOWS), default="animatediff")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory-frames", default="16,32,64", help='frame counts for peak RSS ("": none)')
    parser.add_argument("--memory-steps", type=int, default=2)
    parser.add_argument("--split", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--skip-timing", action="store_true", help="only the peak RSS figures")
    parser.add_argument("--size", choices=["small", "real"], default="small",
                        help="the random model: small (64x64, CPU) or real (SD 1.5's configuration, 512x512, GPU)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both sides)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--child", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--folders", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        memory_child(args)
        return
    from text2video import mib
    from video_fixtures import BENCH_SIZES, save_controlnet_for, save_motion_adapter_for, save_tiny_model, \
        write_png_frames

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory(prefix="vdgraph-bench-animatediff-")
    most = max([args.frames] + [int(f) for f in args.memory_frames.split(",") if f])
    spec = BENCH_SIZES[args.size]
    size = spec["image_size"]
    model = save_tiny_model(os.path.join(tmp.name, "model"), "2d", size=args.size)
    real = {"heads": 8, "norm_groups": 32} if args.size == "real" else {}
    folders = {"model": model, "size": size, "device": args.device, "dtype": args.dtype,
               "adapter": save_motion_adapter_for(os.path.join(tmp.name, "adapter"), model_folder=model, **real)}
    if args.workflow == "controlnet":
        folders["controlnet"] = save_controlnet_for(model, os.path.join(tmp.name, "controlnet"))
    if args.workflow != "animatediff":
        folders["video"] = write_png_frames(os.path.join(tmp.name, "video"), most, size)
    blocks = spec["unet"].get("block_out_channels", "(320, 640, 1280, 1280)")
    print(f"{WORKFLOWS[args.workflow]}: {args.size} random model {blocks} + motion adapter"
          f"{' + ControlNet' if 'controlnet' in folders else ''}; {args.frames} frames {size}x{size}, {args.steps} DDIM "
          f"steps, guidance {GUIDANCE}{f', strength {STRENGTH}' if args.workflow == 'video2video' else ''}; "
          f"{args.device} {args.dtype}, torch {torch.__version__}, {args.threads} thread(s)")

    if not args.skip_timing:
        timing(args, folders)
    if args.memory_frames:
        splits = (0, 16) if args.workflow == "animatediff" else (0,)
        print(f"\npeak RSS growth of one run, {args.memory_steps} step(s), fresh process per run"
              + ("; with context windows (16 frames, stride 4), without / with split inference (16 frames, 256 "
                 "pixels per call):" if len(splits) == 2 else ":"))
        for frames in (int(f) for f in args.memory_frames.split(",")):
            peaks = [peak_in_subprocess(args, side, folders, frames, split)
                     for split in splits for side in ("ours", "reference")]
            row = [mib(p["peak"]) + (f" (CUDA {mib(p['cuda_peak'])})" if "cuda_peak" in p else "") for p in peaks]
            print(f"  {frames:3d} frames: ours {row[0]}, reference {row[1]}"
                  + (f"; split: ours {row[2]}, reference {row[3]}" if len(row) == 4 else ""))
    tmp.cleanup()


def timing(args, folders: dict) -> None:
    # one untimed round each at the measured size (two steps: video2video's strength re-runs at least one): imports, kernel selection, file cache, and the
    # process's memory grown to the run's size (else the first timed run pays ~0.4 s of page faults)
    run_ours(args.workflow, folders, args.frames, 2)
    run_reference(args.workflow, folders, args.frames, 2)
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
            results[run], wall, cpu = run(args.workflow, folders, args.frames, args.steps)
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
