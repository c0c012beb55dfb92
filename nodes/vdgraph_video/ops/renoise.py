"""DDPM forward process between two timesteps (Text2Video-Zero's re-noising of warped latents)."""

from __future__ import annotations

from typing import Literal

import torch
from diffusers.utils.torch_utils import randn_tensor

from vdgraph_video.ops.latents import fold_frames, unfold_frames

AlphaMode = Literal["reference", "exact"]


def forward_alpha(scheduler, t_from: int, t_to: int, mode: AlphaMode) -> torch.Tensor:
    """The signal factor abar(t_to)/abar(t_from) of going from timestep t_from to the noisier t_to.

    - reference: prod(alphas[t_from:t_to]) indexed by raw timestep values, as diffusers' TextToVideoZeroPipeline
      computes it. That product is abar(t_to - 1)/abar(t_from - 1): one index off the exact ratio.
    - exact: alphas_cumprod[t_to] / alphas_cumprod[t_from].
    """
    if mode == "reference":
        return torch.prod(scheduler.alphas[t_from:t_to])
    if mode == "exact":
        return scheduler.alphas_cumprod[t_to] / scheduler.alphas_cumprod[t_from]
    raise ValueError(f"unknown alpha mode {mode!r}")


def renoise(
    latents: torch.Tensor, alpha: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """x' = sqrt(alpha) x + sqrt(1 - alpha) eps for latents (B, C, F, H, W).

    eps is drawn in the folded layout (B*F, C, H, W), as the reference draws it for its (F, C, H, W) latents.
    """
    b = latents.shape[0]
    x = fold_frames(latents)  # (B*F, C, H, W)
    eps = randn_tensor(x.size(), generator=generator, dtype=x.dtype, device=x.device)
    x = torch.sqrt(alpha) * x + torch.sqrt(1 - alpha) * eps
    return unfold_frames(x, b).contiguous()
