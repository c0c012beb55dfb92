"""Measure what workflows/text2video_zero.json produces on the built-in model, with the judge.

    python -m vdgraph_shapes.video_gates [--model shapes-64] [--prompts 12] [--seeds 2] [--json FILE]

For each prompt/seed, the shipped workflow runs twice through one Executor (the model is loaded once): with
Text2Video-Zero's first-frame cross-frame attention and with it switched off (`cross_frame=none`), everything else
equal, so the table shows what the technique does. Per video the judge gives identity consistency (frames whose
shape colour and class match frame 0), motion accuracy (centroid displacement per frame against the commanded
motion, while the shape stays in view), prompt adherence and background stability.

Commanded motion: in the workflow's default resolution-aware mode, motion_x/motion_y are latent pixels per frame
and content moves the opposite way (a camera panning right moves content left), so the image-space command is
-motion x the VAE's spatial factor.

Gates (issue: built-in model, 8 frames): identity consistency >= 90% of frames; the centroid moves in the
commanded direction with a mean error <= 1.5 px per frame while the shape stays in view (motion is measured on the
videos where the shape is clear of the border in at least two consecutive frames; the table says how many).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

import vdgraph
from vdgraph_shapes.evaluate import gate_prompts
from vdgraph_shapes.judge import judge_video
from vdgraph_shapes.metrics import background_stability, identity_consistency, motion_accuracy, prompt_adherence

WORKFLOW = Path(__file__).resolve().parents[2] / "workflows" / "text2video_zero.json"
IDENTITY_GATE = 0.90
MOTION_GATE_PX = 1.5


def vae_factor(executor: vdgraph.Executor, model: str) -> int:
    """The VAE's spatial reduction (4 for shapes-64), read from the loaded model rather than assumed."""
    loader = {"vdgraph": 1, "inputs": {"model": {"type": "str"}},
              "nodes": {"load": {"type": "video.load_model", "in": {"model": "inputs.model"}}},
              "outputs": {"vae": "load.vae"}}
    vae = executor.run(loader, {"model": model})["vae"].module
    return 2 ** (len(vae.config.block_out_channels) - 1)


def measure(frames: np.ndarray, prompt: str, dx: float, dy: float) -> dict:
    judged = judge_video(frames)
    motion = motion_accuracy(frames, dx, dy, judged)
    return {
        "identity": identity_consistency(frames, judged),
        "adherence": prompt_adherence(frames, prompt, judged)["all_rate"],
        "motion_error": motion["mae"],
        "direction_correct": motion["direction_correct"],
        "pairs_in_view": motion["pairs"],
        "background_change": background_stability(frames, judged),
    }


def summarise(rows: list[dict]) -> dict:
    """Means over videos; motion figures only over videos with at least one pair of frames where the shape is in
    view (the gate is "while the shape stays in view": a shape touching the border in every frame has no
    trustworthy centroid), and how many videos that left out."""
    moving = [r for r in rows if not math.isnan(r["motion_error"])]
    return {
        "videos": len(rows),
        "identity": float(np.mean([r["identity"] for r in rows])),
        "adherence": float(np.mean([r["adherence"] for r in rows])),
        "motion_error": float(np.mean([r["motion_error"] for r in moving])) if moving else math.nan,
        "direction_correct": float(np.mean([bool(r["direction_correct"]) for r in moving])) if moving else math.nan,
        "videos_with_motion_measured": len(moving),
        "background_change": float(np.nanmean([r["background_change"] for r in rows])),
    }


def run_gates(model: str, prompts: list[str], seeds: list[int], frames: int, overrides: dict) -> dict:
    executor = vdgraph.Executor(device="cpu")
    factor = vae_factor(executor, model)
    defaults = {name: spec.default for name, spec in vdgraph.load_workflow(WORKFLOW).inputs.items()}
    settings = {**defaults, **overrides, "model": model, "frames": frames}
    assert settings["motion_mode"] == "resolution_aware", "the image-space command below assumes resolution_aware"
    dx, dy = -settings["motion_x"] * factor, -settings["motion_y"] * factor
    results: dict[str, list[dict]] = {"first_frame": [], "none": []}
    for prompt in prompts:
        for seed in seeds:
            for mode in results:
                inputs = {**settings, "prompt": prompt, "seed": seed, "cross_frame": mode}
                out = executor.run(WORKFLOW, inputs, outputs=["frames"])["frames"]  # (F, H, W, 3)
                row = measure(out.numpy().astype(np.float64), prompt, dx, dy)
                results[mode].append({"prompt": prompt, "seed": seed, **row})
    return {"settings": {k: settings[k] for k in ("model", "frames", "steps", "guidance", "motion_x", "motion_y",
                                                   "motion_mode", "t0", "t1")},
            "commanded_px_per_frame": [dx, dy],
            "summary": {mode: summarise(rows) for mode, rows in results.items()},
            "videos": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shapes-64", help="model name, folder or URL (default: shapes-64)")
    parser.add_argument("--prompts", type=int, default=12, help="prompts from the gate set (default 12)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per prompt (default 2)")
    parser.add_argument("--frames", type=int, default=8, help="frames per video (default 8)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=JSON",
                        help="override a workflow input, value as JSON (e.g. --set motion_x=0.5)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    args = parser.parse_args(argv)
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    prompts = gate_prompts(max(args.prompts, 1) * 4)[:: 4][: args.prompts]  # spread over colours and shapes
    start = time.perf_counter()
    report = run_gates(args.model, prompts, list(range(args.seeds)), args.frames, overrides)
    report["seconds"] = round(time.perf_counter() - start, 1)

    print(f"text2video_zero.json on {args.model}: {len(prompts)} prompts x {args.seeds} seeds, "
          f"{args.frames} frames, commanded motion {report['commanded_px_per_frame']} px/frame")
    print(f"{'cross-frame attention':<24}{'identity':>10}{'adherence':>11}{'motion err px':>15}"
          f"{'direction ok':>14}{'in view':>9}{'bg change':>11}")
    for mode, s in report["summary"].items():
        in_view = f"{s['videos_with_motion_measured']}/{s['videos']}"
        print(f"{mode:<24}{s['identity']:>10.1%}{s['adherence']:>11.1%}{s['motion_error']:>15.2f}"
              f"{s['direction_correct']:>14.1%}{in_view:>9}{s['background_change']:>11.4f}")
    on = report["summary"]["first_frame"]
    passed = on["identity"] >= IDENTITY_GATE and on["motion_error"] <= MOTION_GATE_PX and on["direction_correct"] == 1
    print(f"gates (first_frame): identity >= {IDENTITY_GATE:.0%}, motion error <= {MOTION_GATE_PX} px/frame in the "
          f"commanded direction: {'PASS' if passed else 'FAIL'}  ({report['seconds']} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
