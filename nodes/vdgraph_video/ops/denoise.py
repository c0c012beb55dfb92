"""The denoising loop over a range of scheduler steps, the same for every model family.

A step is made of swappable parts (as diffusers' Modular Diffusers' loop blocks):
- the guider (`vdgraph_video.ops.guiders`) says how many batch chunks a model call carries, builds the stacked
  input and text embeddings, and combines the chunks' predictions;
- the model-family adapter (`vdgraph_video.families`) owns the latents' layout, the model call with its extra
  inputs (ControlNet residuals; SDXL's pooled embedding, arranged by the guider, and size time ids) and the
  scheduler step in the reference's layout;
- step hooks run before the model call and after the scheduler step (a smoother replaces the latents there).
The loop tells the attention patches each call's batch layout (guider chunks x B clips of F frames) through the
family's `models`, so no workflow states it.

Arithmetic and call order follow diffusers' TextToVideoZeroPipeline.backward_loop (2-D UNet),
TextToVideoSDPipeline (3-D UNet) and StableDiffusionControlNetPipeline exactly: scale_model_input on the stacked
input, the model call, the guider's combination, the scheduler step on the folded latents.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from vdgraph_video.families import ModelFamily, family_for
from vdgraph_video.ops.guiders import Guider, image_guider, text_guider
from vdgraph_video.values import Conditioning, UNetHandle


@dataclasses.dataclass
class DenoiseResult:
    latents: torch.Tensor  # (B, C, F, H, W) after the last step
    x0: torch.Tensor | None  # (B, C, F, H, W) the last step's prediction of the clean latents


@dataclasses.dataclass
class StepState:
    """What a step hook sees: the step, the latents in the family's loop layout, and after the scheduler step the
    noise prediction and x0 (folded (B*F, C, H, W)). A hook may replace `latents` (e.g. a smoother's re-step)."""

    index: int  # scheduler step index
    timestep: torch.Tensor
    latents: torch.Tensor
    family: ModelFamily
    scheduler: Any
    noise_pred: torch.Tensor | None = None
    x0: torch.Tensor | None = None
    generator: torch.Generator | None = None  # the loop's random state (a hook that draws takes it from here)


class FramePlan(Protocol):
    """How the frames of a clip are split over model calls (e.g. ControlVideo's hierarchical sampler): it wraps a
    UNet in a model-family adapter whose `predict` makes those calls."""

    def family(self, unet: UNetHandle, batch: int, frames: int) -> ModelFamily: ...


class StepHook(Protocol):
    def before(self, state: StepState) -> None: ...

    def after(self, state: StepState) -> None: ...


def step_kwargs(scheduler, eta: float, generator: torch.Generator | None) -> dict:
    """eta and generator for schedulers whose step accepts them (diffusers' prepare_extra_step_kwargs)."""
    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs = {}
    if "eta" in accepted:
        kwargs["eta"] = eta
    if "generator" in accepted:
        kwargs["generator"] = generator
    return kwargs


@torch.no_grad()
def denoise_loop(
    family: ModelFamily,
    guider: Guider,
    scheduler,
    conditioning: Conditioning,
    latents: torch.Tensor,
    start: int,
    end: int,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    hooks: Sequence[StepHook] = (),
    on_step: Callable[[int, int], None] | None = None,
) -> DenoiseResult:
    """Run scheduler steps [start, end) on latents (B, C, F, H, W) with the given parts; `scheduler` is advanced
    in place (pass a copy). The family's patched modules are installed for the call and restored in `finally`."""
    assert latents.ndim == 5, f"latents must be (B, C, F, H, W), got {tuple(latents.shape)}"
    embeds = family.embeddings(guider.embeddings(conditioning, latents.shape[0]))
    family.prepare(conditioning, guider)
    kwargs = step_kwargs(scheduler, eta, generator)
    timesteps = scheduler.timesteps
    steps = len(timesteps)
    x = family.begin(latents)
    x0 = None
    total = end - start
    with family.models(guider) as models:
        for done, i in enumerate(range(start, end)):
            t = timesteps[i]
            state = StepState(i, t, x, family, scheduler, generator=generator)
            for hook in hooks:
                hook.before(state)
            model_input = scheduler.scale_model_input(guider.stack(state.latents), t)
            noise_pred = guider.combine(family.predict(models, model_input, t, embeds, guider, i, steps))
            x, x0 = family.step(scheduler, noise_pred, t, state.latents, kwargs)
            if hooks:
                state.latents, state.noise_pred, state.x0 = x, noise_pred, x0
                for hook in hooks:
                    hook.after(state)
                x, x0 = state.latents, state.x0
            if on_step is not None:
                on_step(done + 1, total)
    if x0 is not None:
        x0 = family.to_video(x0).contiguous()  # x0 is folded in every family
    return DenoiseResult(latents=family.end(x).contiguous(), x0=x0)


def denoise(
    unet: UNetHandle,
    scheduler,
    conditioning: Conditioning,
    latents: torch.Tensor,
    guidance: float,
    start: int,
    end: int,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    chunk_size: int = 0,
    on_step: Callable[[int, int], None] | None = None,
    hooks: Sequence[StepHook] = (),
    image_latents: torch.Tensor | None = None,
    image_guidance: float = 1.5,
    plan: FramePlan | None = None,
) -> DenoiseResult:
    """Text-guided denoising of `unet`'s family (classifier-free guidance when guidance > 1, as the references).

    With `image_latents` (B, C', F, H, W) the model also sees them on its channels (InstructPix2Pix) and the
    guidance is InstructPix2Pix's 3-way one (text `guidance`, `image_guidance`), on when guidance > 1 and
    image_guidance >= 1, as StableDiffusionInstructPix2PixPipeline decides. A frame plan, when given, decides which
    frames each model call sees (instead of `chunk_size`; 2-D text-to-image UNets)."""
    b, _, f, _, _ = latents.shape
    assert plan is None or chunk_size == 0, "a frame plan and chunk_size both split the frames: give one"
    assert plan is None or image_latents is None, "a frame plan takes no image latents"
    family = plan.family(unet, b, f) if plan is not None else family_for(unet, b, f, chunk_size, image_latents)
    guider = text_guider(guidance) if image_latents is None else image_guider(guidance, image_guidance)
    return denoise_loop(family, guider, scheduler, conditioning, latents, start, end, eta, generator, hooks,
                        on_step)
