"""Temporal smoothing of frames or latents, and ControlVideo's interleaved-frame smoothing (weight-free: a
neighbour mean or an optical-flow midpoint)."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

SmoothMode = Literal["window", "gaussian"]


def temporal_weights(mode: SmoothMode, radius: int, sigma: float) -> torch.Tensor:
    """(2*radius + 1,) weights over time offsets -radius..radius: a flat window, or a Gaussian of std `sigma`."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    if mode == "window":
        return torch.ones_like(offsets)
    if mode == "gaussian":
        assert sigma > 0, f"sigma must be > 0, got {sigma}"
        return torch.exp(-0.5 * (offsets / sigma) ** 2)
    raise ValueError(f"unknown smoothing mode {mode!r}")


def smooth_over_time(x: torch.Tensor, dim: int, mode: SmoothMode, radius: int = 1, sigma: float = 1.0) -> torch.Tensor:
    """Weighted average over neighbouring frames along `dim`; near the ends the weights that fall outside are dropped
    and the rest renormalised (no padding, so a constant clip stays constant). Gaussian radius 0 means 3 sigma."""
    if mode == "gaussian" and radius <= 0:
        radius = max(1, math.ceil(3 * sigma))
    n = x.shape[dim]
    weights = temporal_weights(mode, radius, sigma)
    moved = x.movedim(dim, 0)  # (F, ...)
    total = torch.zeros_like(moved, dtype=torch.float32 if moved.dtype != torch.float64 else torch.float64)
    norm = torch.zeros(n, dtype=total.dtype, device=x.device)
    for k, w in zip(range(-radius, radius + 1), weights.tolist()):
        lo, hi = max(0, -k), min(n, n - k)  # output frames t with t + k inside [0, n)
        if lo >= hi:
            continue
        total[lo:hi] += w * moved[lo + k:hi + k].to(total.dtype)
        norm[lo:hi] += w
    out = total / norm.view(-1, *([1] * (moved.ndim - 1)))
    return out.to(x.dtype).movedim(0, dim).contiguous()


Interpolator = Literal["mean", "flow"]


def flow_midpoint(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The frame half-way between two frames (H, W, 3) float in [0, 1], by optical flow (weight-free): see
    `flow_between`. A static pair gives their mean, as the weight-free mean does."""
    return flow_between(before, after, 0.5)


def flow_between(before: np.ndarray, after: np.ndarray, alpha: float) -> np.ndarray:
    """The frame a fraction `alpha` of the way from `before` (0) to `after` (1), frames (H, W, 3) float in [0, 1].

    OpenCV's DIS flow is computed both ways on the grey images; each neighbour is warped along its flow (the frame
    at p is sampled from `before` at p - alpha flow_ab(p) and from `after` at p - (1 - alpha) flow_ba(p), taking the
    flow at p as the flow through p, which holds where motion is smooth) and the two are blended with weights
    1 - alpha and alpha.
    """
    import cv2

    assert before.shape == after.shape and before.ndim == 3, (
        f"frames {before.shape} and {after.shape} must both be (H, W, 3)"
    )
    assert 0.0 <= alpha <= 1.0, f"alpha must be in [0, 1], got {alpha}"
    height, width = before.shape[:2]
    grey = [cv2.cvtColor(np.ascontiguousarray((f.clip(0, 1) * 255).round().astype(np.uint8)), cv2.COLOR_RGB2GRAY)
            for f in (before, after)]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow_ab = dis.calc(grey[0], grey[1], None)  # (H, W, 2): before(p) ~ after(p + flow_ab(p))
    flow_ba = dis.calc(grey[1], grey[0], None)  # (H, W, 2)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)  # (H, W)

    def warped(image: np.ndarray, flow: np.ndarray, fraction: float) -> np.ndarray:
        map_x, map_y = xs - fraction * flow[..., 0], ys - fraction * flow[..., 1]  # where each output pixel samples
        return cv2.remap(image.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    return ((1 - alpha) * warped(before, flow_ab, alpha) + alpha * warped(after, flow_ba, 1 - alpha)).clip(0, 1)


def interleave_interpolate(x: torch.Tensor, dim: int, parity: Literal["odd", "even"],
                           interpolator: Interpolator = "mean") -> torch.Tensor:
    """Replace every odd (or even) frame by an interpolation of its two neighbours; frames with one neighbour are
    kept.

    This is ControlVideo's interleaved-frame smoother with a weight-free interpolation in place of the paper's
    learned RIFE network: "mean" averages the two neighbours (any tensor, along `dim`; moving edges ghost), "flow"
    warps both half-way along their optical flow and blends them (`flow_midpoint`; frames (F, H, W, 3), dim 0).
    """
    start = 1 if parity == "odd" else 2
    moved = x.movedim(dim, 0)
    out = moved.clone()
    n = moved.shape[0]
    index = torch.arange(start, n - 1, 2, device=x.device)
    if not len(index):
        return out.movedim(0, dim).contiguous()
    if interpolator == "mean":
        out[index] = (moved[index - 1] + moved[index + 1]) / 2
    elif interpolator == "flow":
        assert dim == 0 and x.ndim == 4 and x.shape[-1] == 3, (
            f"the flow interpolator takes frames (F, H, W, 3) along dim 0, got shape {tuple(x.shape)}, dim {dim}"
        )
        frames = moved.detach().float().cpu().numpy()  # (F, H, W, 3)
        for i in index.tolist():
            out[i] = torch.from_numpy(flow_midpoint(frames[i - 1], frames[i + 1])).to(out.dtype)
    else:
        raise ValueError(f"unknown interpolator {interpolator!r}: use 'mean' or 'flow'")
    return out.movedim(0, dim).contiguous()


def replace_ddim_x0(latents: torch.Tensor, x0: torch.Tensor, new_x0: torch.Tensor, alpha_prev: torch.Tensor) -> torch.Tensor:
    """Latents after a DDIM step recomputed for a replaced x0 prediction.

    DDIM's update is z = sqrt(abar_prev) x0 + (terms in eps and the variance noise), linear in x0, so swapping x0
    for new_x0 with eps unchanged gives z + sqrt(abar_prev) (new_x0 - x0) (ControlVideo's re-derivation).
    """
    assert latents.shape == x0.shape == new_x0.shape, (
        f"latents {tuple(latents.shape)}, x0 {tuple(x0.shape)} and new x0 {tuple(new_x0.shape)} must match"
    )
    return latents + alpha_prev.to(latents.device, latents.dtype).sqrt() * (new_x0 - x0)
