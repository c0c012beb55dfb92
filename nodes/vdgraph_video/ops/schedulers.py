"""Building diffusers schedulers from a model's scheduler config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch

SchedulerKind = Literal["model", "ddim", "ddpm", "euler", "euler_ancestral", "dpmsolver++"]

_CLASSES = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "dpmsolver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
}


def build_scheduler(class_name: str, config: Mapping[str, Any], kind: SchedulerKind, steps: int,
                    device: torch.device):
    """A scheduler of `kind` ("model": the config's own class) from `config`, with `steps` timesteps set."""
    import diffusers

    if kind == "model":
        name, extra = class_name, {}
    else:
        name, extra = _CLASSES[kind]
    cls = getattr(diffusers, name, None)
    if cls is None:
        raise ValueError(f"unknown scheduler class {name!r} in the model's scheduler config")
    scheduler = cls.from_config(dict(config), **extra)
    scheduler.set_timesteps(steps, device=device)
    return scheduler


def ddim_alpha_prev(scheduler, step_index: int) -> torch.Tensor:
    """abar of the timestep DDIM steps to from scheduler.timesteps[step_index] (final_alpha_cumprod past the end)."""
    t = int(scheduler.timesteps[step_index])
    prev = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    return scheduler.alphas_cumprod[prev] if prev >= 0 else scheduler.final_alpha_cumprod
