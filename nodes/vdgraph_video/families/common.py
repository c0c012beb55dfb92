"""Pieces the model-family adapters share."""

from __future__ import annotations

import torch


def x0_from_epsilon(scheduler, noise_pred: torch.Tensor, sample: torch.Tensor, t) -> torch.Tensor | None:
    """x0 = (x - sqrt(1 - abar) eps) / sqrt(abar), for schedulers whose step output has no x0."""
    if getattr(scheduler.config, "prediction_type", "epsilon") != "epsilon" or not hasattr(scheduler, "alphas_cumprod"):
        return None
    abar = scheduler.alphas_cumprod[int(t)].to(sample.device, sample.dtype)
    return (sample - (1 - abar).sqrt() * noise_pred) / abar.sqrt()


def folded_step(scheduler, noise_pred: torch.Tensor, t, x: torch.Tensor, kwargs: dict):
    """scheduler.step on folded (B*F, C, H, W) latents: (x at the next step, x0 or None)."""
    out = scheduler.step(noise_pred, t, x, **kwargs)
    x0 = getattr(out, "pred_original_sample", None)
    if x0 is None:
        x0 = x0_from_epsilon(scheduler, noise_pred, x, t)
    return out.prev_sample, x0
