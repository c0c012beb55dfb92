"""SDEdit's strength: which step a video-to-video run starts from, and the clean latents noised to that step."""

from __future__ import annotations

import torch


def strength_start_step(steps: int, strength: float) -> int:
    """Index of the first step to run for `strength` in (0, 1]: the last int(steps * strength) steps are re-run
    (diffusers' img2img rule), so strength 1 starts at step 0 and strength 0.3 of 20 steps at step 14."""
    assert steps >= 1, f"steps must be >= 1, got {steps}"
    assert 0.0 < strength <= 1.0, f"strength must be in (0, 1], got {strength}"
    return steps - min(int(steps * strength), steps)


def noise_to_timestep(clean: torch.Tensor, noise: torch.Tensor, scheduler, step: int,
                      pure_at_start: bool = True) -> torch.Tensor:
    """Clean latents (B, C, F, H, W) noised to the timestep of step `step` by the scheduler's forward process
    (x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps for DDIM/DDPM); step 0 (strength 1) gives pure noise, scaled
    by init_noise_sigma, as a text-to-video run starts (the input is ignored there), unless pure_at_start is
    false: then step 0 is noised like any other (diffusers' img2img and video-to-video pipelines, where a trace of
    the input stays at strength 1)."""
    assert clean.shape == noise.shape, f"clean {tuple(clean.shape)} and noise {tuple(noise.shape)} must match"
    if step == 0 and pure_at_start:
        return noise * float(scheduler.init_noise_sigma)
    b, c, f, h, w = clean.shape
    fold = lambda x: x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)  # noqa: E731  (B*F, C, H, W)
    timestep = scheduler.timesteps[step].reshape(1).repeat(b * f)
    noisy = scheduler.add_noise(fold(clean), fold(noise), timestep)  # (B*F, C, H, W)
    return noisy.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4).contiguous()
