"""Seeded Gaussian latents with the same draw layout as diffusers' pipelines."""

from __future__ import annotations

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
) -> torch.Tensor:
    """Gaussian latents (B, C, F, H, W) times `scale` (a scheduler's init_noise_sigma).

    - independent: one draw of shape (B, C, F, H, W) (the layout of diffusers' video pipelines);
    - same: one (B, C, 1, H, W) draw repeated over the F frames;
    - first_frame: one (B, C, 1, H, W) draw and nothing else (Text2Video-Zero's anchor frame; F is ignored);
    - per_frame: one (B*F, C, H, W) draw, frames as an image pipeline's batch (diffusers' image pipelines run on
      a list of frames: InstructPix2Pix, ControlNet img2img), unfolded to (B, C, F, H, W).
    A CPU generator draws on the CPU and the result is moved, so numbers do not depend on the device.
    """
    b, c, f, h, w = shape
    if mode == "independent":
        noise = randn_tensor((b, c, f, h, w), generator=generator, device=device, dtype=dtype)
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
