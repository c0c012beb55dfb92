"""Measure what the trained motion adapter (shapes-64-motion) makes of motion captions, with the judge.

    python -m vdgraph_shapes.motion_gates [--pairs 24] [--still 4] [--long 24] [--steps 10] [--json FILE]
                                          [--backend pipeline|workflow] [--adapter DIR] [--model DIR]

Every video comes from `render(prompt, seed, frames, **options) -> (F, H, W, 3)` floats in [0, 1], with two
backends that must give the same frames: diffusers' AnimateDiffPipeline (`pipeline`, FreeInit / FreeNoise through
`enable_free_init` / `enable_free_noise`) and vdgraph's `workflows/animatediff.json` (`workflow`, through the
Python API). diffusers' UNetMotionModel drops shapes-64's text add-embedding (addition_embed_type "text"); vdgraph
restores it (vdgraph_video.ops.motion_text, see docs/video.md), and so does the pipeline backend, on the pipeline's
UNet, so both render the same frames. Three tables, on prompt/seed pairs whose seeds training never used
(training draws its noise from its own generator; the captions are the world's, as for the image gates):

- AnimateDiff, 16 frames, FreeInit off;
- the same pairs with FreeInit on (3 iterations, butterworth, stop frequencies 0.25: diffusers' defaults);
- `--long` pairs at 48 frames through FreeNoise context windows (16 frames, stride 4, pyramid weights, shuffled
  context noise: diffusers' defaults), identity measured over all 48 frames, that is across the windows.

Per video the judge gives: the centroid's mean displacement while the shape is in view (metrics.motion_accuracy
against the caption's SPEED px/frame in its direction): direction right (within 45 degrees) and speed within 30%
of the caption's; identity (frames whose shape colour and class equal frame 0's); prompt adherence (frames whose
background, shape colour and class match the caption). "standing still" videos are reported apart (their drift in
px/frame). "mean centroid step" is how far the shape's centroid moves between consecutive in-view frames, whatever
the direction (the caption's speed is 1.5; frames drawn independently jump by many pixels).

Gates (issue 12, 16 frames): direction right in >= 90% of the moving videos where the shape stays in view, speed
within 30% of the caption's in >= 90% of them, identity >= 90% of frames, prompt adherence >= 90%.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import time
from collections.abc import Callable

import numpy as np

from vdgraph_shapes.evaluate import gate_prompts
from vdgraph_shapes.judge import judge_video
from vdgraph_shapes.metrics import centroid_track, identity_consistency, motion_accuracy, prompt_adherence
from vdgraph_shapes.models import MODEL_DIR, MOTION_DIR
from vdgraph_shapes.train_motion import DIRECTIONS, SPEED, image_caption, motion_caption, parse_motion_caption
from vdgraph_shapes.world import parse_caption

WORKFLOW = pathlib.Path(__file__).resolve().parents[2] / "workflows" / "animatediff.json"
DIRECTION_GATE = 0.90
SPEED_GATE = 0.90
SPEED_TOLERANCE = 0.30
IDENTITY_GATE = 0.90
ADHERENCE_GATE = 0.90
SEED_BASE = 1000
"""Gate seeds are SEED_BASE + i (training never seeds a pipeline; its noise comes from its own generator)."""

Render = Callable[..., np.ndarray]


def gate_pairs(pairs: int, still: int) -> list[tuple[str, int]]:
    """`pairs` moving captions (every direction in turn, colours and shapes spread as the image gates spread them)
    and `still` standing-still captions, each with its own seed."""
    moving = [d for d in DIRECTIONS if d != "still"]
    out = []
    for i, image_prompt in enumerate(gate_prompts(pairs + still)):
        colour, shape, background = parse_caption(image_prompt)
        direction = moving[i % len(moving)] if i < pairs else "still"
        out.append((motion_caption(colour, shape, direction, background), SEED_BASE + i))
    return out


def pipeline_renderer(model: str | pathlib.Path = MODEL_DIR, adapter: str | pathlib.Path = MOTION_DIR,
                      steps: int = 10, guidance: float = 4.0, noise_shared: float = 0.0) -> Render:
    """render(prompt, seed, frames, free_init=False, free_noise=False) through diffusers' AnimateDiffPipeline.
    With `noise_shared` > 0 the starting latents are drawn as video.noise draws them (vdgraph_video.ops.noise) and
    handed to the pipeline with the generator that drew them (FreeNoise and FreeInit then need the workflow
    backend)."""
    import torch
    from diffusers import AnimateDiffPipeline, MotionAdapter, UNet2DConditionModel
    from vdgraph_video.ops.motion_text import MotionTextRoute, attach_text_route, restore_text_embedding
    from vdgraph_video.ops.noise import sample_noise

    motion = MotionAdapter.from_pretrained(str(adapter), use_safetensors=True)
    pipe = AnimateDiffPipeline.from_pretrained(str(model), motion_adapter=motion, use_safetensors=True)
    # as vdgraph's video.apply_motion_adapter: shapes-64's text add-embedding, which UNetMotionModel drops
    restore_text_embedding(pipe.unet, UNet2DConditionModel.from_pretrained(str(model), subfolder="unet"))
    route = MotionTextRoute.load(adapter)  # and, as vdgraph's loader, the adapter's text route into its modules
    if route is not None:
        attach_text_route(pipe.unet, route)
    pipe.set_progress_bar_config(disable=True)

    def render(prompt: str, seed: int, frames: int, free_init: bool = False, free_noise: bool = False,
               negative_prompt: str = "", height: int = 64, width: int = 64) -> np.ndarray:
        if free_init:
            pipe.enable_free_init(num_iters=3, method="butterworth", order=4, spatial_stop_frequency=0.25,
                                  temporal_stop_frequency=0.25)
        if free_noise:
            pipe.enable_free_noise(context_length=16, context_stride=4, weighting_scheme="pyramid",
                                   noise_type="shuffle_context")
        generator, latents = torch.Generator().manual_seed(seed), None
        if noise_shared:
            if free_noise or free_init:
                raise ValueError("noise_shared with FreeNoise or FreeInit: use the workflow backend (the pipeline "
                                 "keeps given latents as they are instead of shuffling its windows, and draws "
                                 "FreeInit's fresh noise independent per frame)")
            shape = (1, pipe.unet.config.in_channels, frames, height // pipe.vae_scale_factor,
                     width // pipe.vae_scale_factor)
            # unscaled: the pipeline scales given latents by init_noise_sigma itself
            latents = sample_noise(shape, "independent", generator, torch.device("cpu"), torch.float32,
                                   shared=noise_shared)
        try:
            out = pipe(prompt, negative_prompt=negative_prompt, num_frames=frames, height=height, width=width,
                       num_inference_steps=steps, guidance_scale=guidance, output_type="np",
                       generator=generator, latents=latents).frames[0]  # (F, H, W, 3)
        finally:
            pipe.disable_free_init()
            if free_noise:
                pipe.disable_free_noise()
        return np.asarray(out, dtype=np.float64)

    return render


WORKFLOW_OPTIONS: dict[str, dict[str, object]] = {
    "free_init": {"free_init_iterations": 3, "free_init_method": "butterworth", "free_init_order": 4,
                  "free_init_spatial_stop": 0.25, "free_init_temporal_stop": 0.25},
    "free_noise": {"context_length": 16, "context_stride": 4, "context_weighting": "pyramid",
                   "context_noise": "shuffle_context"},
}
"""workflows/animatediff.json inputs that switch FreeInit / FreeNoise on with diffusers' defaults; only the
inputs the workflow declares are passed (a missing one is an error that names it, see workflow_renderer)."""


def workflow_renderer(model: str = "shapes-64", adapter: str = "shapes-64-motion", steps: int = 10,
                      guidance: float = 4.0, noise_shared: float = 0.0) -> Render:
    """render(...) through vdgraph's workflows/animatediff.json (one Executor, so the models load once)."""
    import vdgraph

    if not WORKFLOW.is_file():
        raise FileNotFoundError(f"{WORKFLOW} does not exist (yet): use --backend pipeline")
    declared = set(vdgraph.load_workflow(WORKFLOW).inputs)
    executor = vdgraph.Executor(device="cpu")

    def render(prompt: str, seed: int, frames: int, free_init: bool = False, free_noise: bool = False,
               negative_prompt: str = "", height: int = 64, width: int = 64) -> np.ndarray:
        inputs = {"model": model, "motion_adapter": adapter, "prompt": prompt, "negative_prompt": negative_prompt,
                  "seed": seed, "frames": frames, "height": height, "width": width, "steps": steps,
                  "guidance": guidance}
        if noise_shared:
            inputs["noise_shared"] = noise_shared
        for switch, on in (("free_init", free_init), ("free_noise", free_noise)):
            if on:
                missing = sorted(set(WORKFLOW_OPTIONS[switch]) - declared)
                if missing:
                    raise KeyError(f"{WORKFLOW.name} declares no input {missing} for {switch}; update "
                                   "motion_gates.WORKFLOW_OPTIONS to the workflow's input names")
                inputs.update(WORKFLOW_OPTIONS[switch])
        out = executor.run(WORKFLOW, inputs, outputs=["frames"])["frames"]  # (F, H, W, 3)
        return np.asarray(out.numpy() if hasattr(out, "numpy") else out, dtype=np.float64)

    return render


def measure(frames: np.ndarray, prompt: str) -> dict:
    """Judge one video against its motion caption."""
    _, _, direction, _ = parse_motion_caption(prompt)
    ux, uy = DIRECTIONS[direction]
    judged = judge_video(frames)
    motion = motion_accuracy(frames, ux * SPEED, uy * SPEED, judged)
    speed = motion["speed_ratio"]
    drift = float(np.hypot(*motion["measured"])) if motion["pairs"] else math.nan
    usable = np.asarray([j.shape is not None and not j.touches_border for j in judged])  # (F,)
    steps = np.diff(centroid_track(judged), axis=0)[usable[:-1] & usable[1:]]  # (P, 2) in-view centroid steps
    return {
        "direction": direction,
        "identity": identity_consistency(frames, judged),
        "adherence": prompt_adherence(frames, image_caption(prompt), judged)["all_rate"],
        "pairs_in_view": motion["pairs"],
        "measured_px_per_frame": list(motion["measured"]),
        "direction_correct": motion["direction_correct"],
        "speed_ratio": speed,
        "speed_ok": None if speed is None or motion["pairs"] == 0 else bool(abs(speed - 1) <= SPEED_TOLERANCE),
        "drift_px_per_frame": drift if direction == "still" else None,
        "mean_step_px": float(np.linalg.norm(steps, axis=1).mean()) if len(steps) else math.nan,
    }


def summarise(rows: list[dict]) -> dict:
    """Rates over videos. Motion only over moving videos with at least one pair of frames in view."""
    moving = [r for r in rows if r["direction"] != "still" and r["pairs_in_view"] > 0]
    still = [r for r in rows if r["direction"] == "still" and r["pairs_in_view"] > 0]
    moving_all = [r for r in rows if r["direction"] != "still"]

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else math.nan

    return {
        "videos": len(rows),
        "moving_in_view": f"{len(moving)}/{len(moving_all)}",
        "direction_correct": mean([bool(r["direction_correct"]) for r in moving]),
        "speed_ok": mean([bool(r["speed_ok"]) for r in moving]),
        "speed_ratio_median": float(np.median([r["speed_ratio"] for r in moving])) if moving else math.nan,
        "identity": mean([r["identity"] for r in rows]),
        "adherence": mean([r["adherence"] for r in rows]),
        "still_drift_px_per_frame": mean([r["drift_px_per_frame"] for r in still]),
        "mean_step_px": float(np.nanmean([r["mean_step_px"] for r in rows])) if rows else math.nan,
    }


def passed(summary: dict) -> bool:
    return (summary["direction_correct"] >= DIRECTION_GATE and summary["speed_ok"] >= SPEED_GATE
            and summary["identity"] >= IDENTITY_GATE and summary["adherence"] >= ADHERENCE_GATE)


TABLES = ("free_init_off", "free_init_on", "free_noise_48")


def run_gates(render: Render, pairs: list[tuple[str, int]], long_pairs: list[tuple[str, int]],
              tables: tuple[str, ...] = TABLES, log: Callable[[str], None] = print) -> dict:
    """The tables asked for: {"free_init_off": rows, "free_init_on": rows, "free_noise_48": rows} -> summaries."""
    every = {"free_init_off": (pairs, 16, {}), "free_init_on": (pairs, 16, {"free_init": True}),
             "free_noise_48": (long_pairs, 48, {"free_noise": True})}
    configs = {name: every[name] for name in TABLES if name in tables and every[name][0]}
    videos: dict[str, list[dict]] = {}
    for name, (todo, frames, options) in configs.items():
        start = time.perf_counter()
        videos[name] = []
        for prompt, seed in todo:
            row = measure(render(prompt, seed, frames, **options), prompt)
            videos[name].append({"prompt": prompt, "seed": seed, "frames": frames, **row})
        log(f"{name}: {len(todo)} videos in {time.perf_counter() - start:.0f}s")
    return {"summary": {name: summarise(rows) for name, rows in videos.items()}, "videos": videos}


def table(summary: dict[str, dict]) -> str:
    """The summaries as a markdown table."""
    labels = {"free_init_off": "16 frames, FreeInit off", "free_init_on": "16 frames, FreeInit on",
              "free_noise_48": "48 frames, FreeNoise windows"}
    lines = ["| video | videos | moving in view | direction right | speed within 30% | median speed ratio | "
             "identity | prompt adherence | still drift px/frame | mean centroid step px |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, s in summary.items():
        lines.append(f"| {labels.get(name, name)} | {s['videos']} | {s['moving_in_view']} | "
                     f"{s['direction_correct']:.1%} | {s['speed_ok']:.1%} | {s['speed_ratio_median']:.2f} | "
                     f"{s['identity']:.1%} | {s['adherence']:.1%} | {s['still_drift_px_per_frame']:.2f} | "
                     f"{s['mean_step_px']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vdgraph_shapes.motion_gates", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=24, help="moving prompt/seed pairs (default 24)")
    parser.add_argument("--still", type=int, default=4, help="standing-still pairs, reported apart (default 4)")
    parser.add_argument("--long", type=int, default=24,
                        help="48-frame FreeNoise pairs (default 24, as many as the 16-frame tables' moving pairs, so "
                             "identity across windows is a rate over videos; 0: none)")
    parser.add_argument("--table", action="append", choices=TABLES,
                        help="only this table (repeatable; default: all three). Tables are independent, so they "
                             "can run as separate processes")
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps (default 10: the whole table, FreeInit's "
                        "three passes included, then takes about 12 CPU-minutes)")
    parser.add_argument("--guidance", type=float, default=4.0, help="classifier-free guidance (default 4)")
    parser.add_argument("--backend", choices=("pipeline", "workflow"), default="pipeline",
                        help="diffusers' AnimateDiffPipeline or vdgraph's workflows/animatediff.json")
    parser.add_argument("--noise-shared", type=float, default=0.0,
                        help="share of the starting noise common to every frame (workflow input noise_shared; "
                             "for an adapter trained with train_motion --shared-noise, its share; default 0)")
    parser.add_argument("--model", default=None, help="shapes-64 folder (pipeline) or name (workflow)")
    parser.add_argument("--adapter", default=None, help="motion adapter folder (pipeline) or name (workflow)")
    parser.add_argument("--shard", default="0/1", metavar="K/N",
                        help="only every N-th pair starting at the K-th (to split a table over processes)")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="render nothing: merge the --json files of shards and print the tables")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.json)

    import torch

    torch.set_num_threads(1)
    if args.backend == "pipeline":
        render = pipeline_renderer(args.model or MODEL_DIR, args.adapter or MOTION_DIR, args.steps, args.guidance,
                                   args.noise_shared)
    else:
        render = workflow_renderer(args.model or "shapes-64", args.adapter or "shapes-64-motion", args.steps,
                                   args.guidance, args.noise_shared)
    k, n = (int(v) for v in args.shard.split("/"))
    pairs = gate_pairs(args.pairs, args.still)[k::n]
    long_pairs = [(p, s + 500) for p, s in gate_pairs(args.long, 0)][k::n]
    start = time.perf_counter()
    report = run_gates(render, pairs, long_pairs, tuple(args.table or TABLES))
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["settings"] = {"backend": args.backend, "steps": args.steps, "guidance": args.guidance,
                          "speed_px_per_frame": SPEED, "noise_shared": args.noise_shared, "pairs": args.pairs,
                          "still": args.still, "long": args.long}
    print(f"motion gates ({args.backend}): {args.pairs} moving + {args.still} still pairs at 16 frames, "
          f"{args.long} at 48 frames; {args.steps} steps, guidance {args.guidance}; caption speed {SPEED} px/frame")
    return verdict(report, args.json)


def verdict(report: dict, json_out: str | None) -> int:
    """Print the table and the gates' verdict; write the report as JSON when asked."""
    print(table(report["summary"]))
    ok = all(passed(s) for name, s in report["summary"].items() if name != "free_noise_48")
    long = report["summary"].get("free_noise_48")
    long_ok = long is None or long["identity"] >= IDENTITY_GATE
    print(f"gates: direction >= {DIRECTION_GATE:.0%}, speed within {SPEED_TOLERANCE:.0%} in >= {SPEED_GATE:.0%}, "
          f"identity >= {IDENTITY_GATE:.0%}, adherence >= {ADHERENCE_GATE:.0%} (16 frames); identity across "
          f"FreeNoise windows >= {IDENTITY_GATE:.0%}: {'PASS' if ok and long_ok else 'FAIL'} ({report['seconds']} s)")
    if json_out:
        pathlib.Path(json_out).write_text(json.dumps(report, indent=2))
    return 0 if ok and long_ok else 1


def merge(files: list[str], json_out: str | None) -> int:
    """Join the videos of several --json reports (shards, tables) and summarise them together."""
    videos: dict[str, list[dict]] = {}
    seconds = 0.0
    for name in files:
        part = json.loads(pathlib.Path(name).read_text())
        seconds += part.get("seconds", 0.0)
        for table_name, rows in part["videos"].items():
            videos.setdefault(table_name, []).extend(rows)
    report = {"summary": {name: summarise(videos[name]) for name in TABLES if name in videos}, "videos": videos,
              "seconds": round(seconds, 1), "merged_from": files}
    print(f"merged {len(files)} reports ({report['seconds']} s of rendering in all)")
    return verdict(report, json_out)


if __name__ == "__main__":
    raise SystemExit(main())
