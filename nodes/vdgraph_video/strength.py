"""Video-to-video (SDEdit): the strength-to-step rule and the clean latents noised to the starting step."""

from __future__ import annotations

from typing import Literal

import torch

from vdgraph.node import Input, Invalid, Node, Output

from vdgraph_video.facts import SchedulerFacts
from vdgraph_video.ops.latents import resolve_index
from vdgraph_video.ops.noise import sample_noise
from vdgraph_video.ops.strength import noise_to_timestep, strength_start_step
from vdgraph_video.types import LATENTS, RNG, SCHEDULER
from vdgraph_video.values import generator_from_state, seeded_state

_STRENGTH = Input("strength", float, default=0.6, gt=0.0, le=1.0,
                  doc="fraction of the steps re-run: 1 starts from pure noise, small values keep more of the input")


class StrengthSteps(Node):
    """SDEdit's strength as a step index: the last int(steps x strength) of `steps` steps are re-run, so the run
    starts at step steps - int(steps x strength) (diffusers' img2img rule). Strength must be in (0, 1] and re-run
    at least one step."""

    id = "video.strength_steps"
    version = 1
    category = "sampling"
    inputs = [Input("steps", int, default=50, ge=1, le=1000, doc="number of denoising steps"), _STRENGTH]
    outputs = [Output("start", int, doc="index of the first step to run (0 for strength 1)")]

    @classmethod
    def check(cls, known):
        steps, strength = known.take("steps", "strength")
        if steps is not None and 0.0 < strength <= 1.0 and int(steps * strength) < 1:
            yield Invalid("strength", f"strength {strength} re-runs int({steps} x {strength}) = 0 of the {steps} steps",
                          f"raise strength to at least {1 / steps:.3g} or raise steps")

    @classmethod
    def infer(cls, known):
        steps, strength = known.take("steps", "strength")
        if steps is None or not (0.0 < strength <= 1.0) or int(steps * strength) < 1:
            return {}
        return {"start": strength_start_step(steps, strength)}

    def run(self, ctx, steps: int, strength: float) -> int:
        if int(steps * strength) < 1:
            raise ValueError(f"strength {strength} re-runs no step of {steps}: raise strength or steps")
        return strength_start_step(steps, strength)


class NoiseToStep(Node):
    """Noises clean latents (e.g. an input video from video.encode) to the timestep of step `step`, where a
    video.denoise with start = step continues (SDEdit). Step 0 gives pure noise (scaled by init_noise_sigma):
    strength 1 ignores the input. The noise is drawn from a CPU generator seeded with `seed` (or continuing `rng`):
    one (B, C, F, H, W) draw ("independent"), one frame repeated over the frames ("same"), or one (B*F, C, H, W)
    draw ("per_frame": the layout of an image pipeline given the frames as its batch, e.g. diffusers'
    StableDiffusionControlNetImg2ImgPipeline). `at_start` "noised_input" noises step 0 like any other step
    instead of starting from pure noise, as diffusers' img2img and video-to-video pipelines do at strength 1."""

    id = "video.noise_to_step"
    version = 1
    category = "sampling"
    inputs = [
        Input("latents", LATENTS, doc="(B, C, F, H, W) clean latents"),
        Input("scheduler", SCHEDULER, doc="gives the timesteps and the noise schedule"),
        Input("step", int, doc="index of the step the noisy latents are for (video.strength_steps' start)"),
        Input("seed", int, default=0, ge=0, le=2**64 - 1, doc="seed of the CPU generator (ignored when rng is linked)"),
        Input("rng", RNG, optional=True, doc="continue from this random state instead of seeding"),
        Input("mode", Literal["independent", "same", "per_frame"], default="independent",
              doc="independent noise per frame, one frame of noise for every frame, or per_frame (an image "
                  "batch's draw layout)"),
        Input("at_start", Literal["pure_noise", "noised_input"], default="pure_noise",
              doc="at step 0: pure noise (the input ignored) or the input noised to the first timestep (diffusers' "
                  "img2img and video-to-video pipelines at strength 1)"),
    ]
    outputs = [
        Output("latents", LATENTS, doc="the latents at the timestep of step `step`"),
        Output("rng", RNG, doc="the random state after the draw"),
    ]

    @classmethod
    def check(cls, known):
        facts, step = known.get("scheduler"), known.get("step")
        if isinstance(facts, SchedulerFacts) and step is not None and not -facts.steps <= step < facts.steps:
            yield Invalid("step", f"step {step} is outside the scheduler's {facts.steps} steps",
                          "name a step index of the schedule (video.strength_steps gives one)")

    def run(self, ctx, latents: torch.Tensor, scheduler, step: int, seed: int, rng, mode: str,
            at_start: str) -> dict:
        index = resolve_index(step, len(scheduler.timesteps), "step")
        if index == len(scheduler.timesteps):
            raise IndexError(f"step {step} is past the last of the {index} steps")
        generator = generator_from_state(rng if rng is not None else seeded_state(seed))
        noise = sample_noise(tuple(latents.shape), mode, generator, latents.device, latents.dtype)
        with torch.no_grad():
            out = noise_to_timestep(latents, noise, scheduler, index, at_start == "pure_noise")
        return {"latents": out, "rng": generator.get_state()}
