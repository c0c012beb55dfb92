"""How close each interleaved-frame interpolator gets to the true midpoint frame, on procedural ground truth.

    python tools/interpolator_error.py

The shapes world renders a shape moving linearly: frames at positions p - d, p and p + d, so the middle frame is
the exact midpoint of its neighbours. Each interpolator (video.interleave_frames' "mean" and "flow") rebuilds it
from the two neighbours; the table gives the mean absolute error per pixel and channel (0..1 scale) for each
shape and speed, and the mean over all cases. Deterministic (no random draws); a few seconds on one core.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from vdgraph_shapes.world import SHAPES, Scene, render
from vdgraph_video.ops.smooth import interleave_interpolate

SPEEDS = ((2.0, 0.0), (4.0, 2.0), (6.0, 0.0), (0.0, 8.0))
"""Motion per frame in pixels (dx, dy) on the 64 px canvas."""


def moving_triplet(shape: str, dx: float, dy: float, colour: str = "red", background: str = "blue") -> torch.Tensor:
    """(3, 64, 64, 3) float frames of `shape` at (32 - d, 32), (32, 32), (32 + d, 32) (d = (dx, dy))."""
    frames = [render(Scene(background, colour, shape, 32.0 + k * dx, 32.0 + k * dy, 20.0)) for k in (-1, 0, 1)]
    return torch.from_numpy(np.stack(frames)).float() / 255


def midpoint_error(shape: str, dx: float, dy: float, interpolator: str) -> float:
    """Mean absolute error of the interpolated middle frame against the rendered truth."""
    frames = moving_triplet(shape, dx, dy)
    rebuilt = interleave_interpolate(frames, 0, "odd", interpolator)[1]
    return float((rebuilt - frames[1]).abs().mean())


def main(argv: list[str]) -> int:
    rows = []
    print(f"{'shape':<9} {'dx':>4} {'dy':>4} {'mean':>8} {'flow':>8}")
    for shape in SHAPES:
        for dx, dy in SPEEDS:
            errors = [midpoint_error(shape, dx, dy, kind) for kind in ("mean", "flow")]
            rows.append(errors)
            print(f"{shape:<9} {dx:>4.0f} {dy:>4.0f} {errors[0]:>8.4f} {errors[1]:>8.4f}")
    average = np.mean(rows, axis=0)
    print(f"{'all':<19} {average[0]:>8.4f} {average[1]:>8.4f}   (mean absolute error, 0..1 per channel)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
