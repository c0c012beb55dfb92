"""Temporal smoothing of frames or latents, and ControlVideo's interleaved-frame smoothing (weight-free)."""

from __future__ import annotations

import math
from typing import Literal

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


def interleave_interpolate(x: torch.Tensor, dim: int, parity: Literal["odd", "even"]) -> torch.Tensor:
    """Replace every odd (or even) frame by the mean of its two neighbours; frames with one neighbour are kept.

    This is ControlVideo's interleaved-frame smoother with a weight-free interpolation (the average of the two
    neighbours) in place of the paper's learned RIFE interpolation network.
    """
    start = 1 if parity == "odd" else 2
    moved = x.movedim(dim, 0)
    out = moved.clone()
    n = moved.shape[0]
    index = torch.arange(start, n - 1, 2, device=x.device)
    if len(index):
        out[index] = (moved[index - 1] + moved[index + 1]) / 2
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
