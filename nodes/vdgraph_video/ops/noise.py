"""Seeded Gaussian latents with the same draw layout as diffusers' pipelines."""

from __future__ import annotations

import math
from typing import Literal

import torch
from diffusers.utils.torch_utils import randn_tensor

NoiseMode = Literal["independent", "same", "first_frame", "per_frame"]


def sample_noise(
    shape: tuple[int, int, int, int, int],
    mode: NoiseMode,
    generator: torch.Generator,
    device: torch.device,
    dtype: torch.dtype,
    scale: float = 1.0,
    shared: float = 0.0,
) -> torch.Tensor:
    """Gaussian latents (B, C, F, H, W) times `scale` (a scheduler's init_noise_sigma).

    - independent: one draw of shape (B, C, F, H, W) (the layout of diffusers' video pipelines); with `shared`
      > 0, a second (B, C, 1, H, W) draw common to every frame is mixed in (PYoCo's mixed noise prior):
      sqrt(shared) * common + sqrt(1 - shared) * independent, still unit variance per element, frames correlated
      by `shared` (0: exactly diffusers' draw and nothing more; 1: one frame of noise for every frame);
    - same: one (B, C, 1, H, W) draw repeated over the F frames;
    - first_frame: one (B, C, 1, H, W) draw and nothing else (Text2Video-Zero's anchor frame; F is ignored);
    - per_frame: one (B*F, C, H, W) draw, frames as an image pipeline's batch (diffusers' image pipelines run on
      a list of frames: InstructPix2Pix, ControlNet img2img), unfolded to (B, C, F, H, W).
    A CPU generator draws on the CPU and the result is moved, so numbers do not depend on the device.
    """
    b, c, f, h, w = shape
    if shared and mode != "independent":
        raise ValueError(f"shared {shared} applies to mode 'independent' only (mode is {mode!r})")
    if mode == "independent":
        noise = randn_tensor((b, c, f, h, w), generator=generator, device=device, dtype=dtype)
        if shared:
            if not 0.0 < shared <= 1.0:
                raise ValueError(f"shared {shared} is not a share of the variance: give 0 .. 1")
            common = randn_tensor((b, c, 1, h, w), generator=generator, device=device, dtype=dtype)
            noise = math.sqrt(shared) * common + math.sqrt(1.0 - shared) * noise
    elif mode == "same":
        noise = randn_tensor((b, c, 1, h, w), generator=generator, device=device, dtype=dtype).repeat(1, 1, f, 1, 1)
    elif mode == "per_frame":
        folded = randn_tensor((b * f, c, h, w), generator=generator, device=device, dtype=dtype)
        noise = folded.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)
    elif mode == "first_frame":
        noise = randn_tensor((b, c, 1, h, w), generator=generator, device=device, dtype=dtype)
    else:
        raise ValueError(f"unknown noise mode {mode!r}")
    return noise * scale
