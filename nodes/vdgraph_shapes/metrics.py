"""Video metrics: shapes-world specific (prompt adherence, identity, motion, background) and model-free ones.

All take frames (F, H, W, 3) as float in [0, 1] (uint8 is accepted too) and return plain dicts / floats, so a
graph node can wrap them directly. Why these: a video model can fail by ignoring the prompt, by changing what the
object is over time, by moving it the wrong way, or by flickering the background; each metric isolates one.

Flow convention (warping_error): flow[k] (H, W, 2) maps pixel p of frame k to p + flow[k][p] in frame k+1,
flow[..., 0] = dx (right), flow[..., 1] = dy (down), in pixels.
"""

from __future__ import annotations

import math

import numpy as np

from vdgraph_shapes.judge import Judgement, as_float_image, dilate, judge_video
from vdgraph_shapes.world import parse_caption


def as_float_video(frames: np.ndarray) -> np.ndarray:
    """uint8 or float [0, 1] (F, H, W, 3) -> float64 (F, H, W, 3) in [0, 1]."""
    frames = np.asarray(frames)
    assert frames.ndim == 4 and frames.shape[3] == 3, f"frames must be (F, H, W, 3), got shape {frames.shape}"
    return np.stack([as_float_image(f) for f in frames])


def prompt_adherence(frames: np.ndarray, prompt: str, judgements: list[Judgement] | None = None) -> dict:
    """Per-frame match of background / shape colour / shape class against the prompt, and the fractions.

    Returns {"background": [bool]*F, "colour": [...], "shape": [...], "all": [...],
             "background_rate", "colour_rate", "shape_rate", "all_rate": float}.
    """
    colour, shape, background = parse_caption(prompt)
    js = judgements if judgements is not None else judge_video(frames)
    per = {
        "background": [j.background == background for j in js],
        "colour": [j.colour == colour for j in js],
        "shape": [j.shape == shape for j in js],
    }
    per["all"] = [a and b and c for a, b, c in zip(per["background"], per["colour"], per["shape"], strict=True)]
    rates = {f"{k}_rate": float(np.mean(v)) if v else math.nan for k, v in per.items()}
    return {**per, **rates}


def identity_consistency(frames: np.ndarray, judgements: list[Judgement] | None = None) -> float:
    """Fraction of frames 1..F-1 whose judged shape colour and class equal frame 0's (1.0 for a single frame).

    A frame where frame 0 has no detectable shape matches nothing, so such a video scores 0.
    """
    js = judgements if judgements is not None else judge_video(frames)
    assert len(js) >= 1, "need at least one frame"
    if len(js) == 1:
        return 1.0
    ref = js[0]
    if ref.shape is None:
        return 0.0
    return float(np.mean([j.colour == ref.colour and j.shape == ref.shape for j in js[1:]]))


def centroid_track(judgements: list[Judgement]) -> np.ndarray:
    """(F, 2) judged shape centroids (x, y), NaN where no shape was found."""
    return np.asarray([[j.x, j.y] for j in judgements], dtype=np.float64)


def motion_accuracy(
    frames: np.ndarray, dx: float, dy: float, judgements: list[Judgement] | None = None
) -> dict:
    """Compare the shape's per-frame centroid displacement with a commanded motion (dx, dy) in px/frame.

    Only consecutive pairs where the shape is found in both frames and touches the border in neither count
    (a shape leaving the view drags its centroid). Returns:
      "pairs": number of pairs used; "measured": mean measured (dx, dy) over those pairs;
      "mae": mean over pairs of |measured - commanded| (Euclidean, px/frame); "mae_x", "mae_y": per axis;
      "direction_correct": cosine(mean measured, commanded) >= cos(45 deg), None for a zero command;
      "speed_ratio": |mean measured| / |commanded| (None for a zero command).
    With no usable pair the numbers are NaN and direction_correct is False (None for a zero command).
    """
    js = judgements if judgements is not None else judge_video(frames)
    track = centroid_track(js)  # (F, 2)
    usable = np.asarray([j.shape is not None and not j.touches_border for j in js])  # (F,)
    pair_ok = usable[:-1] & usable[1:]  # (F-1,)
    disp = (track[1:] - track[:-1])[pair_ok]  # (P, 2)
    cmd = np.asarray([dx, dy], dtype=np.float64)  # (2,)
    cmd_norm = float(np.linalg.norm(cmd))
    if len(disp) == 0:
        return {
            "pairs": 0,
            "measured": (math.nan, math.nan),
            "mae": math.nan,
            "mae_x": math.nan,
            "mae_y": math.nan,
            "direction_correct": None if cmd_norm == 0 else False,
            "speed_ratio": None if cmd_norm == 0 else math.nan,
        }
    err = disp - cmd[None, :]  # (P, 2)
    mean = disp.mean(axis=0)  # (2,)
    mean_norm = float(np.linalg.norm(mean))
    if cmd_norm == 0:
        direction, speed = None, None
    else:
        cos = float(mean @ cmd) / max(mean_norm * cmd_norm, 1e-12)
        direction, speed = bool(cos >= math.cos(math.pi / 4)), mean_norm / cmd_norm
    return {
        "pairs": int(len(disp)),
        "measured": (float(mean[0]), float(mean[1])),
        "mae": float(np.linalg.norm(err, axis=1).mean()),
        "mae_x": float(np.abs(err[:, 0]).mean()),
        "mae_y": float(np.abs(err[:, 1]).mean()),
        "direction_correct": direction,
        "speed_ratio": speed,
    }


def background_stability(frames: np.ndarray, judgements: list[Judgement] | None = None, margin: int = 2) -> float:
    """Mean abs frame-to-frame change (0..1) over pixels outside both frames' shape masks (grown by `margin`).

    0 for a perfectly still background. NaN when no pixel is background in any pair (or a single frame).
    """
    video = as_float_video(frames)  # (F, H, W, 3)
    js = judgements if judgements is not None else judge_video(video)
    masks = []
    for j in js:
        m = j.mask
        for _ in range(margin):
            m = dilate(m)
        masks.append(m)
    total, count = 0.0, 0
    for k in range(len(video) - 1):
        keep = ~(masks[k] | masks[k + 1])  # (H, W)
        if keep.any():
            total += float(np.abs(video[k + 1] - video[k])[keep].sum())
            count += int(keep.sum()) * video.shape[3]
    return total / count if count else math.nan


def temporal_consistency(frames: np.ndarray) -> float:
    """Mean abs difference (0..1) between consecutive frames over all pixels; 0 for a still video."""
    video = as_float_video(frames)  # (F, H, W, 3)
    assert len(video) >= 2, f"need at least 2 frames, got {len(video)}"
    return float(np.abs(video[1:] - video[:-1]).mean())


def warp_backward(frame: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample `frame` (H, W, C) at p + flow[p] (bilinear): the next frame warped back onto the current one.

    Returns the warped (H, W, C) image and a (H, W) bool mask of pixels whose source lies inside the frame.
    """
    h, w, _ = frame.shape
    assert flow.shape == (h, w, 2), f"flow must be (H, W, 2) = {(h, w, 2)}, got {flow.shape}"
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)  # (H, W)
    sx, sy = xs + flow[..., 0], ys + flow[..., 1]  # (H, W) source coordinates in pixel-index units
    valid = (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1)  # (H, W)
    sx, sy = np.clip(sx, 0, w - 1), np.clip(sy, 0, h - 1)
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]  # (H, W, 1)
    top = frame[y0, x0] * (1 - fx) + frame[y0, x1] * fx
    bottom = frame[y1, x0] * (1 - fx) + frame[y1, x1] * fx
    return top * (1 - fy) + bottom * fy, valid


def warping_error(frames: np.ndarray, flow: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean abs error (0..1) between frame k and frame k+1 warped back with flow[k], over valid pixels.

    flow: (F-1, H, W, 2), see the module docstring for the convention. mask: optional (F-1, H, W) bool of
    pixels to score (e.g. non-occluded ones); pixels whose source falls outside the frame never count.
    """
    video = as_float_video(frames)  # (F, H, W, 3)
    f, h, w, _ = video.shape
    flow = np.asarray(flow, dtype=np.float64)
    assert flow.shape == (f - 1, h, w, 2), f"flow must be (F-1, H, W, 2) = {(f - 1, h, w, 2)}, got {flow.shape}"
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        assert mask.shape == (f - 1, h, w), f"mask must be (F-1, H, W) = {(f - 1, h, w)}, got {mask.shape}"
    total, count = 0.0, 0
    for k in range(f - 1):
        warped, valid = warp_backward(video[k + 1], flow[k])
        keep = valid if mask is None else valid & mask[k]  # (H, W)
        total += float(np.abs(warped - video[k])[keep].sum())
        count += int(keep.sum()) * 3
    return total / count if count else math.nan


def translation_flow(num_frames: int, height: int, width: int, dx: float, dy: float) -> np.ndarray:
    """A constant flow (F-1, H, W, 2) for a global translation by (dx, dy) px/frame."""
    flow = np.empty((num_frames - 1, height, width, 2), dtype=np.float64)
    flow[..., 0], flow[..., 1] = dx, dy
    return flow
