"""A classic (model-free) judge for shapes-world frames: what colours, which shape, where.

Why classic: the judge must be trustworthy before it scores a generative model, so it uses only geometry and
colour distances whose failure modes are easy to reason about, and it is checked against rendered ground truth.

Method: the background is the median colour of the border ring; the shape is the largest 4-connected component
of pixels far from that colour; its colour is the median of its interior; a soft coverage map (projection of each
pixel onto the background->shape colour line) gives sub-pixel area, bounding box and centroid; the class comes
from the fill ratio of the bounding box (square 1, circle pi/4, triangle 1/2) and the top/bottom mass balance
(triangles are apex-up, so their top half holds 1/4 of the area).
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque

import numpy as np

from vdgraph_shapes.world import COLOURS, SHAPES

BORDER: int = 2
"""Width in pixels of the border ring used to estimate the background."""

MASK_THRESHOLD: float = 0.25
"""RGB distance (0..1 units, max sqrt(3)) from the background beyond which a pixel belongs to a shape.

The closest pair of named colours is ~0.67 apart, so this keeps anti-aliased edges with >~40% coverage."""

MIN_AREA: float = 12.0
"""Smallest shape area (pixels) that counts as a shape; the smallest rendered shape (triangle, 16 px) has 128."""

_PALETTE_NAMES: tuple[str, ...] = tuple(COLOURS)
_PALETTE: np.ndarray = np.asarray([COLOURS[n] for n in _PALETTE_NAMES], dtype=np.float64) / 255.0  # (K, 3)

_SHAPE_PROTOTYPES: dict[str, tuple[float, float]] = {
    # (fill ratio of the bounding box, top-half mass / bottom-half mass)
    "circle": (math.pi / 4, 1.0),
    "square": (1.0, 1.0),
    "triangle": (0.5, 1.0 / 3.0),
}
_FEATURE_SCALE: tuple[float, float] = (0.08, 0.25)
"""Spread of each feature around its prototype used to turn distances into class probabilities."""

assert set(_SHAPE_PROTOTYPES) == set(SHAPES), f"judge prototypes {set(_SHAPE_PROTOTYPES)} != world shapes"


@dataclasses.dataclass(frozen=True)
class Judgement:
    """What the judge sees in one frame. Confidences are in [0, 1]; colour/shape are None when no shape is found.

    x, y: coverage-weighted centroid in pixels (pixel centres at integer + 0.5), NaN without a shape.
    area: shape area in pixels (soft coverage sum). mask: (H, W) bool shape pixels (for background metrics).
    touches_border: the shape mask reaches the border ring, so the shape may be partly out of view.
    """

    background: str
    background_confidence: float
    colour: str | None
    colour_confidence: float
    shape: str | None
    shape_confidence: float
    x: float
    y: float
    area: float
    touches_border: bool
    mask: np.ndarray = dataclasses.field(repr=False, compare=False)


def as_float_image(frame: np.ndarray) -> np.ndarray:
    """uint8 or float [0, 1] (H, W, 3) -> float64 (H, W, 3) in [0, 1]."""
    frame = np.asarray(frame)
    assert frame.ndim == 3 and frame.shape[2] == 3, f"frame must be (H, W, 3), got shape {frame.shape}"
    if frame.dtype == np.uint8:
        return frame.astype(np.float64) / 255.0
    assert np.issubdtype(frame.dtype, np.floating), f"frame dtype must be uint8 or float, got {frame.dtype}"
    return np.clip(frame.astype(np.float64), 0.0, 1.0)


def nearest_colour(rgb: np.ndarray) -> tuple[str, float]:
    """Nearest named colour to rgb (3,) in [0, 1] and a confidence from the margin to the runner-up.

    Confidence is (d2 - d1) / d2: 1 on a palette colour, 0 half-way between two.
    """
    d = np.linalg.norm(_PALETTE - rgb[None, :], axis=1)  # (K,)
    order = np.argsort(d)
    d1, d2 = float(d[order[0]]), float(d[order[1]])
    return _PALETTE_NAMES[int(order[0])], float(np.clip((d2 - d1) / max(d2, 1e-9), 0.0, 1.0))


def border_ring(h: int, w: int, width: int = BORDER) -> np.ndarray:
    """(H, W) bool, True on the outer `width` pixels."""
    ring = np.ones((h, w), dtype=bool)
    ring[width : h - width, width : w - width] = False
    return ring


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a (H, W) bool mask, as a (H, W) bool mask (empty if none)."""
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int32)
    best_label, best_size, current = 0, 0, 0
    for sy, sx in zip(*np.nonzero(mask), strict=True):
        if labels[sy, sx]:
            continue
        current += 1
        labels[sy, sx] = current
        queue, size = deque([(sy, sx)]), 0
        while queue:
            y, x = queue.popleft()
            size += 1
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = current
                    queue.append((ny, nx))
        if size > best_size:
            best_label, best_size = current, size
    return labels == best_label if best_size else np.zeros_like(mask)


def dilate(mask: np.ndarray) -> np.ndarray:
    """4-neighbour binary dilation of a (H, W) bool mask."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def shape_features(coverage: np.ndarray) -> tuple[float, float]:
    """(fill ratio of the soft bounding box, top-half mass / bottom-half mass) of a (H, W) coverage map in [0, 1].

    The soft box side is the sum over columns (rows) of the maximum coverage in that column (row), so
    anti-aliased edges count fractionally and the ratio is nearly exact at sub-pixel positions.
    """
    area = float(coverage.sum())
    width = float(coverage.max(axis=0).sum())
    height = float(coverage.max(axis=1).sum())
    fill = area / max(width * height, 1e-9)
    rows = coverage.sum(axis=1)  # (H,)
    occupied = np.nonzero(rows > 1e-6)[0]
    top_edge = float(occupied[0]) + 1.0 - float(coverage[occupied[0]].max())
    mid = top_edge + height / 2.0  # horizontal line halving the soft bounding box
    y_centres = np.arange(len(rows)) + 0.5
    frac_above = np.clip(mid - (y_centres - 0.5), 0.0, 1.0)  # (H,) fraction of each row above the line
    top = float((rows * frac_above).sum())
    bottom = area - top
    return fill, top / max(bottom, 1e-9)


def classify_shape(fill: float, balance: float) -> tuple[str, float, dict[str, float]]:
    """Class with the highest Gaussian score around the prototypes; confidence is its normalised probability."""
    scores = {}
    for name, (f0, b0) in _SHAPE_PROTOTYPES.items():
        z = ((fill - f0) / _FEATURE_SCALE[0]) ** 2 + ((min(balance, 3.0) - b0) / _FEATURE_SCALE[1]) ** 2
        scores[name] = math.exp(-0.5 * z)
    total = sum(scores.values())
    probs = {k: (v / total if total > 0 else 1.0 / len(scores)) for k, v in scores.items()}
    if total <= 0:  # far from every prototype: pick by fill alone, with no confidence
        best = min(_SHAPE_PROTOTYPES, key=lambda k: abs(fill - _SHAPE_PROTOTYPES[k][0]))
        return best, 0.0, probs
    best = max(probs, key=probs.__getitem__)
    return best, probs[best], probs


def judge_frame(frame: np.ndarray) -> Judgement:
    """Judge one frame (H, W, 3), uint8 or float in [0, 1]."""
    img = as_float_image(frame)  # (H, W, 3)
    h, w, _ = img.shape
    ring = border_ring(h, w)
    border_pixels = img[ring]  # (R, 3)
    bg_rgb = np.median(border_pixels, axis=0)  # (3,)
    background, bg_margin = nearest_colour(bg_rgb)
    border_names = np.argmin(
        np.linalg.norm(border_pixels[:, None, :] - _PALETTE[None, :, :], axis=2), axis=1
    )  # (R,) palette index per border pixel
    agree = float(np.mean(border_names == _PALETTE_NAMES.index(background)))
    background_confidence = agree * bg_margin

    dist = np.linalg.norm(img - bg_rgb[None, None, :], axis=2)  # (H, W)
    mask = largest_component(dist > MASK_THRESHOLD)  # (H, W)
    if mask.sum() < MIN_AREA:
        return Judgement(background, background_confidence, None, 0.0, None, 0.0, math.nan, math.nan, 0.0, False, mask)

    interior = ~dilate(~mask)  # (H, W) mask pixels whose 4 neighbours are in the mask too
    colour_pixels = img[interior] if interior.sum() >= 4 else img[mask]  # (M, 3)
    fg_rgb = np.median(colour_pixels, axis=0)  # (3,)
    colour, colour_confidence = nearest_colour(fg_rgb)

    axis = fg_rgb - bg_rgb  # (3,)
    proj = ((img - bg_rgb) @ axis) / max(float(axis @ axis), 1e-9)  # (H, W) 0 at background, 1 at shape colour
    region = dilate(dilate(mask))  # include the anti-aliased rim below the mask threshold
    coverage = np.where(region, np.clip(proj, 0.0, 1.0), 0.0)  # (H, W)
    area = float(coverage.sum())
    ys, xs = np.mgrid[0:h, 0:w] + 0.5  # (H, W) pixel centres
    x = float((coverage * xs).sum() / max(area, 1e-9))
    y = float((coverage * ys).sum() / max(area, 1e-9))
    fill, balance = shape_features(coverage)
    shape, shape_confidence, _ = classify_shape(fill, balance)
    touches = bool((mask & ring).any())
    return Judgement(
        background=background,
        background_confidence=background_confidence,
        colour=colour,
        colour_confidence=colour_confidence,
        shape=shape,
        shape_confidence=shape_confidence * (0.5 if touches else 1.0),
        x=x,
        y=y,
        area=area,
        touches_border=touches,
        mask=mask,
    )


def judge_video(frames: np.ndarray) -> list[Judgement]:
    """Judge every frame of a video (F, H, W, 3)."""
    frames = np.asarray(frames)
    assert frames.ndim == 4, f"frames must be (F, H, W, 3), got shape {frames.shape}"
    return [judge_frame(f) for f in frames]
