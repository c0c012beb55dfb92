"""Measure the built-in ControlNet (shapes-64-canny) through the shipped ControlNet workflows, with the judge.

    python -m vdgraph_shapes.controlnet_gates [--videos 24] [--recipes t2vz_first_frame,...] [--steps 20]
                                              [--json FILE] [--markdown FILE]

Input videos: `--videos` shapes-world videos (8 frames by default) of one shape moving on a straight line at a
known constant velocity; every third one runs out of the frame by its last frame. Each is re-prompted to another
colour pair (shape colour and background both changed, shape class kept), and its frames are the workflow's
`control_video` (canny edges as the condition, the workflow's default). The judge then scores every output frame
against the input's ground truth:
- centroid error: |judged centroid - true centroid| in px (the true one is the rendered shape's area centroid),
  over the frames where the input shape is wholly in view and the judge finds a shape;
- shape class: judged class == the input's, over the frames where the input shape is wholly in view (a frame
  with no shape found counts as a miss);
- colours: judged shape colour and background == the prompt's, over the same frames;
- flicker: metrics.background_stability (mean frame-to-frame change of the background, 0..1);
- warping error: metrics.warping_error with the input's known translation flow (0..1).
Gates (issue 11): centroid error <= 1.5 px, shape class >= 90%, shape colour and background >= 90% each.

Recipes (`--recipes`, default every one whose workflow exists; the run prints which ran):
- t2vz_first_frame, t2vz_full, t2vz_none: workflows/text2video_zero_controlnet.json with cross_frame first_frame
  (the recipe), full, none;
- controlvideo_mean, controlvideo_flow, controlvideo_no_smoother: workflows/controlvideo.json with interpolator
  mean, flow, and its smoother turned off (when that workflow exists).
Why a script: the full run takes minutes of CPU; tests/test_shapes_controlnet.py runs a small slice of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

import vdgraph
from vdgraph_shapes.judge import judge_video
from vdgraph_shapes.metrics import background_stability, translation_flow, warping_error
from vdgraph_shapes.world import COLOURS, IMAGE_SIZE, SHAPES, SIZE_RANGE, Scene, render, shape_coverage

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
CENTROID_GATE_PX = 1.5
CLASS_GATE = 0.90
COLOUR_GATE = 0.90


@dataclasses.dataclass(frozen=True)
class InputVideo:
    """A shape moving at (vx, vy) px/frame from (x0, y0), and the prompt it is re-rendered with."""

    background: str
    colour: str
    shape: str
    size: float
    x0: float
    y0: float
    vx: float
    vy: float
    prompt: str

    def scene(self, k: int) -> Scene:
        return Scene(self.background, self.colour, self.shape, self.x0 + k * self.vx, self.y0 + k * self.vy,
                     self.size)

    def frames(self, count: int) -> np.ndarray:
        """(F, 64, 64, 3) uint8, rendered by the world."""
        return np.stack([render(self.scene(k)) for k in range(count)])

    def truth(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(F, 2) true area centroids (x, y) and (F,) bool: the shape's bounding box wholly inside the frame."""
        centroids, in_view = [], []
        ys, xs = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE] + 0.5  # pixel centres
        for k in range(count):
            s = self.scene(k)
            cover = shape_coverage(s.shape, s.x, s.y, s.size)  # (H, W)
            area = float(cover.sum())
            centroids.append([float((cover * xs).sum()) / area, float((cover * ys).sum()) / area] if area else
                             [math.nan, math.nan])
            half = s.size / 2
            in_view.append(bool(half <= s.x <= IMAGE_SIZE - half and half <= s.y <= IMAGE_SIZE - half))
        return np.asarray(centroids), np.asarray(in_view)


def input_videos(count: int, frames: int, seed: int = 0) -> list[InputVideo]:
    """`count` videos, shape classes and colours cycled, every third one leaving the frame by its last frame."""
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    videos = []
    for i in range(count):
        background = names[i % len(names)]
        colour = names[(i + 1 + (i // len(names)) % (len(names) - 1)) % len(names)]
        shape = SHAPES[(i + i // 3) % len(SHAPES)]  # every class both staying in view and leaving
        # re-prompted: another shape colour and another background, still different from each other
        new_bg = names[(names.index(background) + 3) % len(names)]
        choices = [c for c in names if c not in (colour, new_bg, background)]
        new_colour = choices[int(rng.integers(len(choices)))]
        size = float(rng.uniform(SIZE_RANGE[0], 26.0))
        speed = float(rng.uniform(1.0, 2.5))
        angle = float(rng.uniform(0, 2 * math.pi))
        vx, vy = speed * math.cos(angle), speed * math.sin(angle)
        half, span = size / 2 + 2, (frames - 1)
        if i % 3 == 2:  # starts at the centre, 4 px/frame along its main axis: about half out by the last frame
            scale = 4.0 / max(abs(vx), abs(vy))
            vx, vy = vx * scale, vy * scale
            x0, y0 = IMAGE_SIZE / 2 + vx / 2, IMAGE_SIZE / 2 + vy / 2
        else:  # stays wholly in view: start where the whole path fits
            lo_x, hi_x = half - min(0, vx * span), IMAGE_SIZE - half - max(0, vx * span)
            lo_y, hi_y = half - min(0, vy * span), IMAGE_SIZE - half - max(0, vy * span)
            x0 = float(rng.uniform(lo_x, hi_x)) if hi_x > lo_x else IMAGE_SIZE / 2 - vx * span / 2
            y0 = float(rng.uniform(lo_y, hi_y)) if hi_y > lo_y else IMAGE_SIZE / 2 - vy * span / 2
        prompt = f"a {new_colour} {shape} on a {new_bg} background"
        videos.append(InputVideo(background, colour, shape, size, x0, y0, vx, vy, prompt))
    return videos


def write_png_folder(frames: np.ndarray, folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{k:04d}.png")
    return folder


def score(output: np.ndarray, video: InputVideo) -> dict:
    """The judge's figures for one output video (F, H, W, 3) float in [0, 1] against its input's ground truth."""
    count = len(output)
    judged = judge_video(output)
    truth, in_view = video.truth(count)  # (F, 2), (F,)
    colour, shape, background = video.prompt.split()[1], video.shape, video.prompt.split()[-2]
    errors = [float(np.hypot(j.x - tx, j.y - ty)) for j, (tx, ty), v in zip(judged, truth, in_view)
              if v and j.shape is not None]
    frames_in_view = [j for j, v in zip(judged, in_view) if v]
    rate = (lambda ok: float(np.mean(ok)) if ok else math.nan)
    return {
        "prompt": video.prompt,
        "input": f"a {video.colour} {video.shape} on a {video.background} background",
        "velocity": [video.vx, video.vy],
        "frames_in_view": int(in_view.sum()),
        "centroid_errors": errors,
        "class": rate([j.shape == shape for j in frames_in_view]),
        "colour": rate([j.colour == colour for j in frames_in_view]),
        "background": rate([j.background == background for j in frames_in_view]),
        "flicker": background_stability(output, judged),
        "warping_error": warping_error(output, translation_flow(count, *output.shape[1:3], video.vx, video.vy)),
    }


def summarise(rows: list[dict]) -> dict:
    """Frame-weighted rates and errors over all videos of one recipe."""
    errors = [e for r in rows for e in r["centroid_errors"]]
    weight = [r["frames_in_view"] for r in rows]

    def weighted(key: str) -> float:
        pairs = [(r[key], w) for r, w in zip(rows, weight) if w and not math.isnan(r[key])]
        return float(sum(v * w for v, w in pairs) / sum(w for _, w in pairs)) if pairs else math.nan

    return {
        "videos": len(rows),
        "frames_in_view": int(sum(weight)),
        "centroid_frames": len(errors),
        "centroid_error_px": float(np.mean(errors)) if errors else math.nan,
        "class": weighted("class"),
        "colour": weighted("colour"),
        "background": weighted("background"),
        "flicker": float(np.nanmean([r["flicker"] for r in rows])),
        "warping_error": float(np.nanmean([r["warping_error"] for r in rows])),
    }


def passes(summary: dict) -> bool:
    return (summary["centroid_error_px"] <= CENTROID_GATE_PX and summary["class"] >= CLASS_GATE
            and summary["colour"] >= COLOUR_GATE and summary["background"] >= COLOUR_GATE)


def recipes(available: dict[str, Path]) -> dict[str, tuple[Path, dict]]:
    """Recipe name -> (workflow, input overrides), for every workflow that exists."""
    out: dict[str, tuple[Path, dict]] = {}
    t2vz = available.get("text2video_zero_controlnet")
    if t2vz is not None:
        for mode in ("first_frame", "full", "none"):
            out[f"t2vz_{mode}"] = (t2vz, {"cross_frame": mode})
    cv = available.get("controlvideo")
    if cv is not None:
        inputs = vdgraph.load_workflow(cv).inputs
        base = {} if inputs["controlnet"].default == "shapes-64-canny" else {"controlnet": "shapes-64-canny"}
        out["controlvideo_mean"] = (cv, {**base, "interpolator": "mean"})
        out["controlvideo_flow"] = (cv, {**base, "interpolator": "flow"})
        out["controlvideo_no_smoother"] = (cv, {**base, "interpolator": "none"})  # the smoother switched off
    return out


def run_gates(videos: list[InputVideo], names: list[str], frames: int, overrides: dict, executor=None,
              keep: Path | None = None) -> dict:
    available = {p.stem: p for p in (WORKFLOWS / "text2video_zero_controlnet.json", WORKFLOWS / "controlvideo.json")
                 if p.is_file()}
    known = recipes(available)
    missing = [n for n in names if n not in known]
    assert not missing, f"unknown or unavailable recipes {missing}; available: {sorted(known)}"
    executor = executor or vdgraph.Executor(device="cpu")
    results: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="controlnet-gates-") as tmp:
        for i, video in enumerate(videos):
            folder = write_png_folder(video.frames(frames), Path(tmp) / f"video{i:02d}")
            for name in names:
                workflow, setting = known[name]
                inputs = {"control_video": str(folder), "prompt": video.prompt, "frames": frames, "seed": i,
                          **setting, **overrides}
                wanted = ["frames"]
                if keep is not None and "contact_sheet" in vdgraph.load_workflow(workflow).inputs:
                    inputs["contact_sheet"] = f"{name}_{i:02d}.png"
                    wanted.append("contact_sheet")
                out = executor.run(workflow, inputs, outputs=wanted, output_dir=str(keep or tmp),
                                   overwrite=True)["frames"]  # (F, H, W, 3)
                results[name].append(score(out.numpy().astype(np.float64), video))
    return {"recipes": names, "frames": frames, "overrides": overrides,
            "summary": {name: summarise(rows) for name, rows in results.items()}, "videos": results}


def markdown_table(report: dict) -> str:
    lines = ["| recipe | centroid error px | shape class | shape colour | background | flicker | warping error |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, s in report["summary"].items():
        lines.append(f"| {name} | {s['centroid_error_px']:.2f} | {s['class']:.1%} | {s['colour']:.1%} | "
                     f"{s['background']:.1%} | {s['flicker']:.4f} | {s['warping_error']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=24, help="input videos (default 24)")
    parser.add_argument("--frames", type=int, default=8, help="frames per video (default 8)")
    parser.add_argument("--recipes", default="", help="comma-separated recipe names (default: every available one)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=JSON",
                        help="override a workflow input for every recipe, value as JSON (e.g. --set steps=10)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table as markdown")
    parser.add_argument("--sheets", metavar="DIR", help="keep each run's contact sheet in DIR")
    args = parser.parse_args(argv)
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    available = {p.stem: p for p in (WORKFLOWS / "text2video_zero_controlnet.json", WORKFLOWS / "controlvideo.json")
                 if p.is_file()}
    names = [n for n in args.recipes.split(",") if n] or list(recipes(available))
    print(f"recipes run: {', '.join(names)}" + ("" if "controlvideo" in available else
                                                 " (workflows/controlvideo.json absent: no ControlVideo recipes)"))
    start = time.perf_counter()
    report = run_gates(input_videos(args.videos, args.frames), names, args.frames, overrides,
                       keep=Path(args.sheets) if args.sheets else None)
    report["seconds"] = round(time.perf_counter() - start, 1)
    table = markdown_table(report)
    print(f"{args.videos} videos x {args.frames} frames, overrides {overrides or 'none'}, {report['seconds']} s")
    print(table)
    failed = [n for n, s in report["summary"].items() if not passes(s)]
    for name, s in report["summary"].items():
        print(f"gates {name}: centroid <= {CENTROID_GATE_PX} px, class >= {CLASS_GATE:.0%}, colours >= "
              f"{COLOUR_GATE:.0%}: {'PASS' if passes(s) else 'FAIL'}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
