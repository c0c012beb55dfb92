"""Re-make the pictures in docs/video.md: one sheet per controlled-video / family workflow, on the built-in models.

    python tools/workflow_pictures.py [--docs DIR] [--only WORKFLOW ...]

One input video from the shapes world (a red circle on a blue background moving left to right, 64x64, written as
a PNG-frame folder in a temp dir) goes through the shipped workflows with vdgraph's Python API (device cpu, the
workflows' built-in defaults: model shapes-64, ControlNet shapes-64-canny, motion adapter shapes-64-motion, fixed
seeds), each writing into a temp dir:
- text2video_zero_controlnet.json: its own contact sheet (input | condition | output rows), re-coloured prompt;
- controlvideo.json and controlvideo_long.json (16 frames): their sheets show only the output, so this script
  draws an input | output sheet (video.ops.video_io.labelled_sheet), same prompt;
- video2video.json: an input | output sheet, its default prompt (a yellow circle on a green background);
- animatediff.json: its own contact sheet (a moving caption, 16 frames: there is no input video);
- animatediff_controlnet.json: its own contact sheet (input | condition | output rows), re-coloured prompt.
Each sheet is copied to DIR/<workflow>_sheet.png (docs/ by default) and the paths are printed. About a minute of
CPU in all (20 steps each, the workflows' default).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import vdgraph
from vdgraph_shapes.world import Scene, render
from vdgraph_video.ops.video_io import labelled_sheet

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"
RECOLOURED = "a yellow circle on a magenta background"
"""The prompt of the ControlNet workflows: the input's shape and motion, other colours."""


def input_frames(count: int) -> np.ndarray:
    """(count, 64, 64, 3) uint8: a red circle of side 20 px on blue, moving linearly from x=16 to x=48 at y=30."""
    step = 32.0 / (count - 1)
    return np.stack([render(Scene("blue", "red", "circle", 16.0 + k * step, 30.0, 20.0)) for k in range(count)])


def write_png_folder(frames: np.ndarray, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{k:04d}.png")
    return folder


def as_float(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).float() / 255


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", default=str(ROOT / "docs"), help="where the <workflow>_sheet.png files go")
    parser.add_argument("--only", action="append", default=[], metavar="WORKFLOW",
                        help="re-make only this workflow's sheet (repeatable; default: all)")
    args = parser.parse_args(argv)
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    executor = vdgraph.Executor(device="cpu")
    with tempfile.TemporaryDirectory(prefix="workflow-pictures-") as tmp:
        tmp = Path(tmp)
        short, long = input_frames(8), input_frames(16)
        short_dir, long_dir = write_png_folder(short, tmp / "input8"), write_png_folder(long, tmp / "input16")
        # (workflow, inputs, input frames for a drawn input | output sheet, or None: the workflow's own sheet)
        jobs = [
            ("text2video_zero_controlnet", {"control_video": str(short_dir), "prompt": RECOLOURED, "frames": 8},
             None),
            ("controlvideo", {"control_video": str(short_dir), "prompt": RECOLOURED, "frames": 8}, short),
            ("controlvideo_long", {"control_video": str(long_dir), "prompt": RECOLOURED, "frames": 16}, long),
            ("video2video", {"video": str(short_dir), "prompt": "a yellow circle on a green background", "frames": 8},
             short),
            ("animatediff", {"prompt": "a red circle on a blue background moving right", "frames": 16}, None),
            ("animatediff_controlnet", {"control_video": str(short_dir), "prompt": RECOLOURED, "frames": 8}, None),
        ]
        unknown = set(args.only) - {name for name, _, _ in jobs}
        if unknown:
            parser.error(f"no picture is made for {sorted(unknown)}")
        for name, inputs, given in jobs:
            if args.only and name not in args.only:
                continue
            out_dir = tmp / name
            result = executor.run(WORKFLOWS / f"{name}.json", {"seed": 0, **inputs},
                                  outputs=["frames", "contact_sheet"], output_dir=str(out_dir), overwrite=True)
            target = docs / f"{name}_sheet.png"
            if given is None:
                shutil.copyfile(Path(str(result["contact_sheet"])), target)
            else:
                sheet = labelled_sheet([("input", as_float(given)), ("output", result["frames"].float())])
                Image.fromarray(sheet).save(target, optimize=True)
            print(f"wrote {target} ({target.stat().st_size // 1024} KB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
