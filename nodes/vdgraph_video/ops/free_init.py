"""FreeInit (Wu et al. 2023) as diffusers' FreeInitMixin computes it: a re-noising loop around the denoise.

After a full denoising pass, the clean latents are diffused back to the last training timestep with the pass's
initial noise, and their low spatio-temporal frequencies (a 3-D FFT over F, H, W, low-pass filtered) are mixed with
the high frequencies of fresh Gaussian noise; the next pass starts from that. The first pass starts from the given
noise, so one iteration is a plain denoise.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
import torch.fft as fft

from vdgraph_video.ops.noise import sample_noise

FilterMethod = Literal["butterworth", "gaussian", "ideal"]


@functools.lru_cache(maxsize=16)
def _filter_values(frames: int, height: int, width: int, method: str, order: float, spatial: float,
                   temporal: float) -> torch.Tensor:
    """(F, H, W) low-pass filter, computed point by point in Python floats exactly as diffusers'
    `_get_free_init_freq_filter` (the same expressions, so the float32 values are identical)."""
    mask = torch.zeros(frames, height, width)
    if spatial == 0 or temporal == 0:
        return mask
    if method == "butterworth":
        def value(x):
            return 1 / (1 + (x / spatial**2) ** order)
    elif method == "gaussian":
        def value(x):
            return math.exp(-1 / (2 * spatial**2) * x)
    elif method == "ideal":
        def value(x):
            return 1 if x <= spatial * 2 else 0
    else:
        raise ValueError(f"unknown FreeInit filter {method!r}: use butterworth, gaussian or ideal")
    for t in range(frames):
        for h in range(height):
            for w in range(width):
                d_square = (((spatial / temporal) * (2 * t / frames - 1)) ** 2 + (2 * h / height - 1) ** 2
                            + (2 * w / width - 1) ** 2)
                mask[t, h, w] = value(d_square)
    return mask


def low_pass_filter(shape: tuple[int, ...], method: str, order: float, spatial: float, temporal: float,
                    device: torch.device) -> torch.Tensor:
    """(1, C, F, H, W) filter for latents of `shape` (B, C, F, H, W)."""
    _, c, f, h, w = shape
    mask = _filter_values(f, h, w, method, float(order), float(spatial), float(temporal))
    return mask.expand(1, c, f, h, w).clone().to(device)


def mix_frequencies(x: torch.Tensor, noise: torch.Tensor, low_pass: torch.Tensor) -> torch.Tensor:
    """Low frequencies of x (over F, H, W) plus high frequencies of noise (diffusers' `_apply_freq_filter`)."""
    dims = (-3, -2, -1)
    x_freq = fft.fftshift(fft.fftn(x, dim=dims), dim=dims)
    noise_freq = fft.fftshift(fft.fftn(noise, dim=dims), dim=dims)
    high_pass = 1 - low_pass
    mixed = x_freq * low_pass + noise_freq * high_pass
    return fft.ifftn(fft.ifftshift(mixed, dim=dims), dim=dims).real


def reinitialize(latents: torch.Tensor, initial_noise: torch.Tensor, scheduler, generator: torch.Generator,
                 method: str, order: float, spatial: float, temporal: float, shared: float = 0.0) -> torch.Tensor:
    """The next pass's starting latents: the clean latents diffused to the last training timestep with the first
    pass's noise, low-pass mixed with fresh noise drawn from `generator` (diffusers' `_apply_free_init`). The fresh
    noise is drawn as video.noise draws the first: with `shared` of its variance common to every frame (0: exactly
    diffusers' draw), so a model trained on mixed noise gets mixed noise in every pass."""
    shape = tuple(latents.shape)  # (B, C, F, H, W)
    low_pass = low_pass_filter(shape, method, order, spatial, temporal, latents.device)
    t = torch.full((shape[0],), scheduler.config.num_train_timesteps - 1).long().to(latents.device)
    z_t = scheduler.add_noise(original_samples=latents, noise=initial_noise, timesteps=t).to(dtype=torch.float32)
    z_rand = sample_noise(shape, "independent", generator, latents.device, torch.float32, shared=shared)
    return mix_frequencies(z_t, z_rand, low_pass).to(latents.dtype)
