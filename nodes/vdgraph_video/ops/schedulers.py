"""Building diffusers schedulers from a model's scheduler config, and a scheduler's state as plain data.

Only diffusers scheduler classes are ever built from a name: a config (or a cache entry) naming a model, a
pipeline or anything else is refused before anything is constructed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch

SchedulerKind = Literal["model", "ddim", "ddpm", "euler", "euler_ancestral", "dpmsolver++", "euler_karras"]

_CLASSES = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "dpmsolver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    # Euler on Karras sigmas (Stable Video Diffusion's scheduler config): the rest of the model's config is kept.
    "euler_karras": ("EulerDiscreteScheduler", {"use_karras_sigmas": True}),
}


def scheduler_class(name: Any) -> type:
    """The diffusers scheduler class called `name`. Anything else (a UNet, a pipeline, an unknown or misspelled
    name) is a ValueError, raised before any object is built."""
    import diffusers
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    cls = None
    if isinstance(name, str) and name.isidentifier() and name.endswith("Scheduler"):
        cls = getattr(diffusers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
        raise ValueError(f"{shown} is not a diffusers scheduler class (for example DDIMScheduler, "
                         "EulerDiscreteScheduler, DPMSolverMultistepScheduler)")
    return cls


def scheduler_class_name(kind: SchedulerKind) -> str:
    """The diffusers class behind a kind other than "model" (e.g. "ddim" -> "DDIMScheduler")."""
    return _CLASSES[kind][0]


def build_scheduler(class_name: str, config: Mapping[str, Any], kind: SchedulerKind, steps: int,
                    device: torch.device):
    """A scheduler of `kind` ("model": the config's own class) from `config`, with `steps` timesteps set."""
    if kind == "model":
        name, extra = class_name, {}
    else:
        name, extra = _CLASSES[kind]
    try:
        cls = scheduler_class(name)
    except ValueError as exc:
        raise ValueError(f"the model's scheduler/scheduler_config.json, _class_name: {exc}") from None
    scheduler = cls.from_config(dict(config), **extra)
    scheduler.set_timesteps(steps, device=device)
    return scheduler


def scheduler_state(scheduler) -> dict[str, Any]:
    """Everything a diffusers scheduler needs to continue where it stopped, as data: its class name, its config,
    and its instance attributes (timesteps, sigmas, step index, multistep histories: tensors, numbers, lists).

    Values other than tensors and JSON values are left for the caller's encoder to refuse.
    """
    name = type(scheduler).__name__
    if scheduler_class(name) is not type(scheduler):
        raise ValueError(f"{type(scheduler).__module__}.{type(scheduler).__qualname__} is not the diffusers class "
                         f"{name}")
    state = {k: v for k, v in vars(scheduler).items() if k != "_internal_dict"}
    return {"class": name, "config": dict(scheduler.config), "state": state}


def restore_scheduler(data: Mapping[str, Any]):
    """The scheduler `scheduler_state` described, continuing exactly where that one stopped."""
    cls = scheduler_class(data["class"])
    config, state = data["config"], data["state"]
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise ValueError("a scheduler state needs a config and a state mapping")
    bad = [k for k in state if not (isinstance(k, str) and k.isidentifier()) or k.startswith("__")
           or k == "_internal_dict"]
    if bad:
        raise ValueError(f"not a scheduler attribute: {bad[0]!r}")
    scheduler = cls.from_config(config)
    vars(scheduler).update(state)  # plain data, set directly: no setter or property runs
    return scheduler


def ddim_alpha_prev(scheduler, step_index: int) -> torch.Tensor:
    """abar of the timestep DDIM steps to from scheduler.timesteps[step_index] (final_alpha_cumprod past the end)."""
    t = int(scheduler.timesteps[step_index])
    prev = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    return scheduler.alphas_cumprod[prev] if prev >= 0 else scheduler.final_alpha_cumprod
