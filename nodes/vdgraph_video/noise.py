"""Seeded noise and DDPM re-noising."""

from __future__ import annotations

import torch

from vdgraph.node import Input, Invalid, Node, Output

from vdgraph_video.facts import LatentsFacts, SchedulerFacts, VAEFacts, step_index_problem

from vdgraph_video.ops.latents import resolve_index
from vdgraph_video.ops.noise import NoiseMode, sample_noise
from vdgraph_video.ops.renoise import AlphaMode, forward_alpha, renoise
from vdgraph_video.types import LATENTS, RNG, SCHEDULER, UNET, VAE
from vdgraph_video.values import generator_from_state, seeded_state


class SampleNoise(Node):
    """Draws Gaussian latents (B, C, F, H, W) from a CPU generator, so results do not depend on the device.

    Modes: "independent" (one (B, C, F, H, W) draw, the layout of diffusers' video pipelines; with `shared` > 0,
    that share of the variance is common to every frame: PYoCo's mixed noise prior, for a motion model trained
    on it), "same" (one frame of noise repeated for every frame), "first_frame" (a single frame:
    Text2Video-Zero's anchor; `frames` is ignored) and "per_frame" (one (B*F, C, H, W) draw: an image pipeline
    given the frames as its batch, e.g. InstructPix2Pix). The channel count is the VAE's latent channels (an
    InstructPix2Pix UNet takes twice that). With a scheduler linked, the noise is scaled by its init_noise_sigma (1
    for DDIM, larger for Euler).
    The generator is seeded with `seed`, or continues from `rng` when one is linked; the advanced state is output.
    """

    id = "video.noise"
    version = 1
    category = "sampling"
    inputs = [
        Input("unet", UNET, doc="the model the noise is for"),
        Input("vae", VAE, doc="gives the pixels per latent pixel"),
        Input("seed", int, default=0, ge=0, le=2**64 - 1,
              doc="seed of the CPU generator (ignored when rng is linked); torch takes 0 .. 2**64 - 1"),
        Input("rng", RNG, optional=True, doc="continue from this random state instead of seeding"),
        Input("frames", int, default=8, ge=1, doc="number of frames F"),
        Input("height", int, default=512, ge=8, doc="image height in pixels (a multiple of the VAE factor)"),
        Input("width", int, default=512, ge=8, doc="image width in pixels (a multiple of the VAE factor)"),
        Input("mode", NoiseMode, default="independent",
              doc="independent, same for every frame, first frame only, or per_frame (an image batch's layout)"),
        Input("shared", float, default=0.0, ge=0.0, le=1.0,
              doc="with mode independent: share of the noise's variance common to every frame (0: diffusers' "
                  "independent draw; a motion model trained on mixed noise samples with its training share)"),
        Input("batch", int, default=1, ge=1, doc="number of videos B"),
        Input("scheduler", SCHEDULER, optional=True, doc="scale by this scheduler's init_noise_sigma"),
    ]
    outputs = [
        Output("latents", LATENTS, doc="(B, C, F, H/f, W/f) Gaussian latents"),
        Output("rng", RNG, doc="the random state after the draw"),
    ]

    @classmethod
    def check(cls, known):
        frames_problem = getattr(known.get("unet"), "frames_problem", None)  # a model family's frame limits
        if frames_problem is not None and known.get("mode") != "first_frame":
            found = frames_problem(known.get("frames"))
            if found:
                yield Invalid("frames", *found)
        mode, shared = known.get("mode"), known.get("shared")
        if mode is not None and mode != "independent" and shared:
            yield Invalid("shared", f"shared {shared} applies to mode 'independent' only (mode is {mode!r})",
                          "set mode to independent, or shared to 0")
        vae = known.get("vae")
        if isinstance(vae, VAEFacts):
            for port in ("height", "width"):
                size = known.get(port)
                if size is not None and size % vae.scale_factor:
                    lower = size - size % vae.scale_factor
                    yield Invalid(port, f"{port} {size} is not a multiple of the VAE factor {vae.scale_factor}",
                                  f"use {lower} or {lower + vae.scale_factor}")

    @classmethod
    def infer(cls, known):
        frames, height, width, mode = (known.get(port) for port in ("frames", "height", "width", "mode"))
        if mode is None:
            return {}
        return {"latents": LatentsFacts(1 if mode == "first_frame" else frames, height, width)}

    def run(self, ctx, unet, vae, seed, rng, frames, height, width, mode, shared, batch, scheduler):
        factor = vae.scale_factor
        for name, size in (("height", height), ("width", width)):
            if size % factor:
                raise ValueError(f"{name} {size} is not a multiple of the VAE factor {factor}")
        generator = generator_from_state(rng if rng is not None else seeded_state(seed))
        scale = float(scheduler.init_noise_sigma) if scheduler is not None else 1.0
        shape = (batch, int(vae.module.config.latent_channels), frames, height // factor, width // factor)
        latents = sample_noise(shape, mode, generator, ctx.device, ctx.dtype, scale, shared)
        return {"latents": latents, "rng": generator.get_state()}


class Renoise(Node):
    """DDPM forward process: adds noise to latents at one step's timestep to reach an earlier, noisier step's.

    x' = sqrt(a) x + sqrt(1 - a) eps, eps drawn as (B*F, C, H, W) from `rng`. alpha_mode "reference" (default)
    reproduces diffusers' TextToVideoZeroPipeline: a = product of scheduler.alphas over the raw timestep values
    [t_from, t_to), which is abar(t_to - 1)/abar(t_from - 1), one index off the exact forward factor. "exact"
    uses a = abar(t_to)/abar(t_from). Step indices count like Python (negative from the end).
    """

    id = "video.renoise"
    version = 1
    category = "sampling"
    inputs = [
        Input("latents", LATENTS, doc="(B, C, F, H, W) latents at the timestep of step from_step"),
        Input("scheduler", SCHEDULER, doc="gives the timesteps and the noise schedule"),
        Input("from_step", int, doc="step index of the latents' timestep (the later, less noisy step)"),
        Input("to_step", int, doc="step index of the target timestep (an earlier, noisier step)"),
        Input("rng", RNG, doc="random state for the noise"),
        Input("alpha_mode", AlphaMode, default="reference", doc="'reference' product of alphas or 'exact' ratio"),
    ]
    outputs = [
        Output("latents", LATENTS, doc="the re-noised latents"),
        Output("rng", RNG, doc="the random state after the draw"),
    ]

    @classmethod
    def check(cls, known):
        facts = known.get("scheduler")
        if not isinstance(facts, SchedulerFacts):
            return
        bad = False
        for port in ("from_step", "to_step"):
            why = step_index_problem(known.get(port), facts.steps, port)
            if why:
                bad = True
                yield Invalid(port, why, "both must name steps of the scheduler; raise steps or move the index")
        start, target = known.take("from_step", "to_step")
        if start is not None and not bad:
            i_from, i_to = (i + facts.steps if i < 0 else i for i in (start, target))
            if i_to >= i_from:
                yield Invalid("to_step", f"re-noising from step {start} to step {target} goes towards less noise",
                              "to_step must come before from_step (an earlier, noisier step)")

    def run(self, ctx, latents, scheduler, from_step, to_step, rng, alpha_mode):
        timesteps = scheduler.timesteps
        n = len(timesteps)
        i_from = resolve_index(from_step, n, "from_step")
        i_to = resolve_index(to_step, n, "to_step")
        if i_from >= n or i_to >= n:
            raise IndexError(f"from_step {from_step} / to_step {to_step} must name one of the {n} steps")
        t_from, t_to = int(timesteps[i_from].item()), int(timesteps[i_to].item())
        if t_to <= t_from:
            raise ValueError(f"re-noising goes from timestep {t_from} to {t_to}: the target must be noisier "
                             "(to_step must come before from_step)")
        generator = generator_from_state(rng)
        alpha = forward_alpha(scheduler, t_from, t_to, alpha_mode)
        with torch.no_grad():
            out = renoise(latents, alpha, generator)
        return {"latents": out, "rng": generator.get_state()}
