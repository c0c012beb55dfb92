"""The denoising loop over a range of steps."""

from __future__ import annotations

import copy

import torch

from vdgraph.errors import VdgraphError
from vdgraph.node import Input, Invalid, Node, Output

from vdgraph_video.controlvideo import SmootherFacts
from vdgraph_video.facts import ResidualLayoutFacts, SchedulerFacts, UNetFacts, condition_problems, step_index_problem

from vdgraph_video.ops.denoise import FramePlan, denoise
from vdgraph_video.ops.interleaved_smoother import InterleavedSmoother
from vdgraph_video.ops.latents import resolve_index
from vdgraph_video.previews import preview_hooks
from vdgraph_video.types import CONDITIONING, FRAME_PLAN, LATENTS, RNG, SCHEDULER, SMOOTHER, UNET
from vdgraph_video.values import generator_from_state, seeded_state


class Denoise(Node):
    """Runs scheduler steps [start, end) over video latents with classifier-free guidance (the 3D U-Net step).

    A 2-D UNet sees the frames folded into its batch (its 3x3 convolutions act as space-only 1x3x3 3-D
    convolutions; frames meet only through attention patches); a diffusers UNet3DConditionModel gets the
    (B, C, F, H, W) latents as they are. Attention patches on the UNet value are installed only while this node
    runs and restored in `finally`; this node tells them how many clips each UNet call stacks along its batch
    (2 x B with classifier-free guidance, B without). ControlNets attached to the UNet value
    (video.apply_controlnet) add their residuals, computed per frame every step (2-D and motion UNets). Indices count like Python slices (negative from the end;
    end empty means to the last step). guidance <= 1 turns classifier-free guidance off.

    image_latents (InstructPix2Pix) go to the UNet on its channels, after the noisy latents, and the guidance
    becomes InstructPix2Pix's 3-way one ([text+image, image, none] chunks: uncond + guidance (text - image) +
    image_guidance (image - uncond)); the attention patches learn the 3 chunks from here as well.

    chunk_size > 0 bounds memory: each UNet call sees frame 0 (the attention anchor) plus chunk_size - 1 other
    frames, frame 0's duplicate predictions are dropped, and one scheduler step covers all frames, so random
    draws are those of the unchunked run. Exact for per-frame UNets and first-frame cross-frame attention (up to
    batch-size-dependent float rounding); an approximation for sparse-causal and full attention.

    Optional parts (ControlVideo): `smoother`, a step hook run after the scheduler step at its step indices
    (video.interleaved_smoother), and `frame_plan`, which decides the frames of each UNet call instead of chunk_size
    (video.hierarchical_sampler).

    Outputs the scheduler state after the steps (multistep samplers carry history), the advanced rng and the
    last step's prediction of the clean latents x0. Without an rng, a sampler that draws (eta > 0, DDPM, Euler
    ancestral) is an error rather than silently unseeded.
    """

    id = "video.denoise"
    version = 2  # 2: attention patches learn each call's batch layout here (guidance <= 1 and batch > 1 were wrong)
    category = "sampling"
    inputs = [
        Input("unet", UNET, doc="the model, with any attention patches"),
        Input("scheduler", SCHEDULER, doc="the sampler in the state where these steps start"),
        Input("conditioning", CONDITIONING, doc="from video.encode_text"),
        Input("latents", LATENTS, doc="(B, C, F, H, W) latents at the timestep of step `start`"),
        Input("guidance", float, default=7.5, ge=0.0, doc="classifier-free guidance scale (<= 1: off)"),
        Input("start", int, default=0, doc="first step index (negative: from the end)"),
        Input("end", int, optional=True, default=None, doc="step index to stop before; empty: run to the end"),
        Input("eta", float, default=0.0, ge=0.0, le=1.0, doc="DDIM stochasticity (0: deterministic)"),
        Input("rng", RNG, optional=True, doc="random state for stochastic steps"),
        Input("chunk_size", int, default=0, ge=0, doc="frames per UNet call including the anchor (0: all)"),
        Input("image_latents", LATENTS, optional=True,
              doc="(B, C, F, H, W) unscaled VAE latents of the input frames, for an InstructPix2Pix UNet "
                  "(video.encode with scaled false); empty: none"),
        Input("image_guidance", float, default=1.5, ge=0.0,
              doc="with image_latents: how strongly the output follows the input frames (InstructPix2Pix's "
                  "image guidance; guidance is on when guidance > 1 and image_guidance >= 1)"),
        Input("smoother", SMOOTHER, optional=True,
              doc="a step hook run after the scheduler step (video.interleaved_smoother)"),
        Input("frame_plan", FRAME_PLAN, optional=True,
              doc="which frames each UNet call sees (video.hierarchical_sampler); instead of chunk_size"),
    ]
    outputs = [
        Output("latents", LATENTS, doc="latents after the last step"),
        Output("scheduler", SCHEDULER, doc="the sampler state after the last step"),
        Output("rng", RNG, doc="the random state after the steps (empty when none was linked)"),
        Output("x0", LATENTS, doc="the last step's prediction of the clean latents"),
    ]

    @classmethod
    def check(cls, known):
        facts = known.get("scheduler")
        if isinstance(facts, SchedulerFacts):
            bad = False
            for port, allow_end in (("start", False), ("end", True)):
                why = step_index_problem(known.get(port), facts.steps, port, allow_end)
                if why:
                    bad = True
                    yield Invalid(port, why, "the step indices must fall inside the scheduler's steps; raise steps "
                                             "or move the index")
            start, end = known.take("start", "end")
            if start is not None and end is not None and not bad:
                first, stop = (i + facts.steps if i < 0 else i for i in (start, end))
                if stop < first:
                    yield Invalid("end", f"end ({end}) comes before start ({start}) in a schedule of {facts.steps} "
                                         "steps", "swap them, or check which step each counts from")
        yield from _channel_problems(known)
        yield from _sdxl_problems(known)
        for message, hint in condition_problems(known.get("unet"), known.get("latents")):
            yield Invalid("unet", message, hint)
        yield from _smoother_problems(known, facts)
        if known.get("frame_plan") is not None and (known.get("chunk_size") or 0) > 0:
            yield Invalid("chunk_size", "a frame plan and chunk_size both split the frames over UNet calls",
                          "set chunk_size to 0 (the frame plan decides), or unlink frame_plan")
        if known.get("frame_plan") is not None and known.linked("image_latents"):
            yield Invalid("frame_plan", "the hierarchical sampler calls a text-to-image UNet on chosen frames; it takes "
                                        "no image latents", "unlink frame_plan or image_latents")
        if known.get("chunk_size") == 1:
            yield Invalid("chunk_size", "chunk_size 1 leaves no room beside frame 0, the attention anchor",
                          "use 0 (all frames at once) or at least 2")
        if "rng" in known and known["rng"] is None:  # optional and left unlinked
            eta = known.get("eta")
            if eta is not None and eta > 0:
                yield Invalid("rng", f"eta = {eta} > 0 draws random numbers, but no rng is linked",
                              "link an rng (e.g. noise.rng from video.noise), or set eta to 0")
            elif isinstance(known.get("smoother"), SmootherFacts) and known["smoother"].sample:
                yield Invalid("rng", "the smoother samples the VAE posterior (sample is true), but no rng is linked",
                              "link an rng (e.g. noise.rng from video.noise), or set the smoother's sample to false")
            elif isinstance(facts, SchedulerFacts) and facts.stochastic:
                yield Invalid("rng", "the sampler draws random numbers at every step (DDPM, Euler ancestral), but "
                                     "no rng is linked", "link an rng (e.g. noise.rng from video.noise), or choose a "
                                                         "deterministic sampler (ddim, euler, dpmsolver++)")

    @classmethod
    def infer(cls, known):
        facts = known.get("scheduler")
        return {"scheduler": facts} if facts is not None else {}

    def run(self, ctx, unet, scheduler, conditioning, latents, guidance, start, end, eta, rng, chunk_size,
            image_latents, image_guidance, smoother: InterleavedSmoother | None = None,
            frame_plan: FramePlan | None = None):
        n = len(scheduler.timesteps)
        i_start = resolve_index(start, n, "start")
        i_end = n if end is None else resolve_index(end, n, "end")
        if i_end < i_start:
            raise ValueError(f"end step {end} comes before start step {start} ({i_end} < {i_start} of {n} steps)")
        if chunk_size == 1:
            raise ValueError("chunk_size must be 0 (all frames) or at least 2 (frame 0 plus one more)")
        if rng is None and eta > 0:
            raise ValueError(f"eta {eta} > 0 draws random numbers: link an rng (from video.noise)")
        if frame_plan is not None and chunk_size > 0:
            raise ValueError("a frame plan and chunk_size both split the frames: set chunk_size to 0")
        if frame_plan is not None and image_latents is not None:
            raise ValueError("a frame plan takes no image latents: unlink frame_plan or image_latents")
        hooks = ()
        if smoother is not None:
            smoother.check_scheduler(scheduler)
            outside = [i for i in smoother.steps if not i_start <= i < i_end]
            if outside:
                raise ValueError(f"smoother steps {outside} fall outside this node's steps {i_start}..{i_end - 1}")
            if smoother.sample and rng is None:
                raise ValueError("the smoother samples the VAE posterior: link an rng (from video.noise)")
            hooks = (smoother,)
        scheduler = copy.deepcopy(scheduler)
        unseeded = seeded_state(0)
        generator = generator_from_state(rng if rng is not None else unseeded)
        latents = latents.to(ctx.device)
        ctx.progress(0, i_end - i_start)
        result = denoise(unet, scheduler, conditioning, latents, guidance, i_start, i_end, eta, generator,
                         chunk_size, on_step=lambda done, total: ctx.progress(done, total),
                         image_latents=None if image_latents is None else image_latents.to(ctx.device),
                         image_guidance=image_guidance, hooks=(*hooks, *preview_hooks(ctx, unet, i_start, i_end)),
                         plan=frame_plan)
        state = generator.get_state()
        if rng is None and not torch.equal(state, unseeded):
            raise VdgraphError("these steps draw random numbers (eta > 0 or a stochastic sampler): link an rng "
                               "(from video.noise) so the result is reproducible")
        return {"latents": result.latents, "scheduler": scheduler, "rng": state if rng is not None else None,
                "x0": result.x0}


def _channel_problems(known):
    """An image-conditioned UNet (more input channels than it predicts: InstructPix2Pix) needs image_latents, and
    image_latents need such a UNet; the UNet's config says which it is before anything is loaded."""
    facts = known.get("unet")
    latent = getattr(facts, "out_channels", None)
    if not isinstance(facts, ResidualLayoutFacts) or latent is None:
        return
    channels = dict(facts.layout).get("in_channels")
    if channels is None:
        return
    linked = known.linked("image_latents")
    unlinked = "image_latents" in known and known["image_latents"] is None
    if linked and channels != 2 * latent:
        yield Invalid("unet", f"image_latents are linked, but the UNet takes {channels} input channels: an "
                              f"InstructPix2Pix UNet takes {2 * latent} ({latent} noisy-latent channels plus {latent} "
                              "image-latent channels)",
                      "pass an InstructPix2Pix model (its unet/config.json has in_channels "
                      f"{2 * latent}), e.g. timbrooks/instruct-pix2pix saved as a diffusers folder")
    elif unlinked and channels != latent:
        yield Invalid("image_latents", f"the UNet takes {channels} input channels but predicts {latent}: it expects "
                                       f"{channels - latent} channels of image latents beside the noisy latents",
                      "link image_latents (video.encode of the input frames with scaled false), or use a text-to-"
                      "image model")


def _smoother_problems(known, facts):
    """A smoother whose steps this node never runs, or that was set up for another schedule."""
    smoother = known.get("smoother")
    if not isinstance(smoother, SmootherFacts) or not isinstance(facts, SchedulerFacts):
        return
    if smoother.schedule_length != facts.steps:
        yield Invalid("smoother", f"the smoother was set up for a schedule of {smoother.schedule_length} steps, this "
                                  f"node's scheduler has {facts.steps}", "give both the same scheduler")
        return
    start, end = known.take("start", "end")
    if start is None or step_index_problem(start, facts.steps, "start") or step_index_problem(
            end, facts.steps, "end", allow_end=True):
        return
    first = start + facts.steps if start < 0 else start
    stop = facts.steps if end is None else (end + facts.steps if end < 0 else end)
    outside = [i for i in smoother.steps if not first <= i < stop]
    if outside:
        yield Invalid("smoother", f"smoother steps {outside} fall outside this node's steps {first}..{stop - 1}",
                      "move the smoother's steps into this node's range, or link the smoother to the denoise node "
                      "that runs them")


def _sdxl_problems(known):
    """What the SDXL family (families/sdxl.py) does not take yet: ControlNets, image latents, a frame plan."""
    unet = known.get("unet")
    if not isinstance(unet, UNetFacts) or not unet.is_sdxl:
        return
    if unet.conditions:
        yield Invalid("unet", "ControlNets are attached to an SDXL UNet, and the SDXL family takes no ControlNet "
                              "residuals yet", "denoise the SDXL model without video.apply_controlnet, or use an "
                                               "SD 1.x / 2.x model with its ControlNets")
    if known.linked("image_latents"):
        yield Invalid("image_latents", "an SDXL UNet takes no image latents (the SDXL family has no InstructPix2Pix "
                                       "form yet)", "leave image_latents unlinked")
    if known.linked("frame_plan"):
        yield Invalid("frame_plan", "the hierarchical sampler (ControlVideo) calls Stable Diffusion's 2-D UNet "
                                    "family; SDXL's is not supported by it yet", "unlink frame_plan")
