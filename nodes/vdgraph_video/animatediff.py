"""AnimateDiff's sampling options as nodes: FreeNoise context windows and noise, and the FreeInit loop.

- `video.context_windows` puts FreeNoise's sliding windows on a motion UNet value (the motion modules attend within
  windows; longer videos than the motion module's window render);
- `video.free_noise_latents` gives initial noise FreeNoise's shuffled-context layout;
- `video.denoise_free_init` runs the denoise loop inside FreeInit's re-noising loop.
Each reproduces diffusers' AnimateDiffPipeline with enable_free_noise / enable_free_init exactly.
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from vdgraph.context import RunContext
from vdgraph.node import Input, Invalid, Node, Output

from vdgraph_video.facts import LatentsFacts, ResidualLayoutFacts, condition_problems
from vdgraph_video.motion_adapter import ContextWindows, MotionUNetFacts, MotionUNetHandle, windows_problem
from vdgraph_video.ops.denoise import denoise
from vdgraph_video.ops.free_init import FilterMethod, reinitialize
from vdgraph_video.ops.free_noise import NoiseType, Weighting, shuffle_context
from vdgraph_video.types import CONDITIONING, LATENTS, RNG, SCHEDULER, UNET
from vdgraph_video.values import generator_from_state


class ContextWindowsNode(Node):
    """FreeNoise context windows (diffusers' enable_free_noise) on a motion UNet: every temporal transformer block
    of its motion modules attends within windows of `context_length` frames every `context_stride` frames (plus one
    window ending at the last frame), its positional embeddings counted from each window's start, and blends the
    overlaps with `weighting` ("pyramid" [1, 2, .., 2, 1], "flat", or "delayed_reverse_sawtooth"). Videos longer
    than the motion module's window render this way. Returns a new UNet value (the input value and module are never
    changed; the windows are installed only while video.denoise runs). context_length 0 turns them off (the UNet
    value passes through). split_frames > 0 adds diffusers' FreeNoise split inference
    (enable_free_noise_split_inference(split_pixels, split_frames)): resnets, spatial attention and resamplers run
    on at most split_frames frames per call and the motion modules on at most split_pixels pixels' sequences, so
    activation memory is bounded by the split rather than the video's length."""

    id = "video.context_windows"
    version = 1
    category = "model"
    inputs = [
        Input("unet", UNET, doc="a motion UNet from video.apply_motion_adapter"),
        Input("context_length", int, default=16, ge=0, doc="frames per window (0: no windows); usually the frames "
                                                           "the motion adapter was trained on"),
        Input("context_stride", int, default=4, ge=1, doc="frames between the starts of two windows"),
        Input("weighting", Weighting, default="pyramid", doc="how overlapping windows are blended"),
        Input("split_frames", int, default=0, ge=0, doc="> 0: spatial layers see at most this many frames per call "
                                                         "(diffusers' split inference: bounded memory; 0: off)"),
        Input("split_pixels", int, default=256, ge=1, doc="with split_frames: motion modules see at most this many "
                                                          "pixels' frame sequences per call"),
    ]
    outputs = [Output("unet", UNET, doc="the motion UNet rendering in context windows")]

    @classmethod
    def check(cls, known):
        unet = known.get("unet")
        length, stride, weighting = (known.get(p) for p in ("context_length", "context_stride", "weighting"))
        if not length:
            return
        if isinstance(unet, ResidualLayoutFacts) and not isinstance(unet, MotionUNetFacts):
            yield Invalid("unet", "context windows work in the motion modules of an AnimateDiff UNet, and this UNet "
                                  "has none", "inflate the UNet with video.apply_motion_adapter first, or set "
                                              "context_length to 0")
        max_frames = unet.max_frames if isinstance(unet, MotionUNetFacts) else None
        for port, problem, hint in windows_problem(length, stride, max_frames, weighting):
            yield Invalid(port, problem, hint)

    @classmethod
    def infer(cls, known):
        unet = known.get("unet")
        (length,) = known.take("context_length")
        if isinstance(unet, MotionUNetFacts) and length is not None:
            return {"unet": dataclasses.replace(unet, window=length)}
        return {"unet": unet} if unet is not None else {}

    def run(self, ctx: RunContext, unet, context_length: int, context_stride: int, weighting: str,
            split_frames: int, split_pixels: int):
        if context_length == 0:
            return unet
        if not isinstance(unet, MotionUNetHandle):
            raise ValueError("context windows work in the motion modules of an AnimateDiff UNet: inflate the UNet "
                             "with video.apply_motion_adapter first, or set context_length to 0")
        for _, problem, hint in windows_problem(context_length, context_stride, unet.max_frames, weighting):
            raise ValueError(f"{problem}: {hint}")
        return unet.with_windows(ContextWindows(context_length, context_stride, weighting, split_frames,
                                                split_pixels))


class FreeNoiseLatents(Node):
    """FreeNoise's initial noise (diffusers' enable_free_noise noise_type): "shuffle_context" makes every run of
    `context_stride` frames after the first `context_length` a random permutation of the frames `context_length`
    before it (drawn from `rng`, after the noise), so every window starts from the same noise in a new order;
    "random" or context_length 0 leaves the noise as it is."""

    id = "video.free_noise_latents"
    version = 1
    category = "sampling"
    inputs = [
        Input("latents", LATENTS, doc="(B, C, F, H, W) noise from video.noise"),
        Input("rng", RNG, doc="the random state after the noise (noise.rng)"),
        Input("context_length", int, default=16, ge=0, doc="frames per window (0: leave the noise as it is)"),
        Input("context_stride", int, default=4, ge=1, doc="frames between the starts of two windows"),
        Input("noise", NoiseType, default="shuffle_context", doc="shuffle_context or random (as it is)"),
    ]
    outputs = [
        Output("latents", LATENTS, doc="the noise in FreeNoise's layout"),
        Output("rng", RNG, doc="the random state after the shuffles"),
    ]

    @classmethod
    def check(cls, known):
        length, stride = known.get("context_length"), known.get("context_stride")
        if length and stride is not None and stride > length:
            yield Invalid("context_stride", f"context_stride {stride} is longer than context_length {length}",
                          "use a stride of at most the length")

    @classmethod
    def infer(cls, known):
        latents = known.get("latents")  # the same frames and size, reordered
        return {"latents": latents} if isinstance(latents, LatentsFacts) else {}

    def run(self, ctx: RunContext, latents: torch.Tensor, rng: torch.Tensor, context_length: int,
            context_stride: int, noise: str):
        if context_length == 0 or noise == "random":
            return {"latents": latents, "rng": rng}
        if context_stride > context_length:
            raise ValueError(f"context_stride {context_stride} is longer than context_length {context_length}")
        generator = generator_from_state(rng)
        out = shuffle_context(latents, context_length, context_stride, generator)
        return {"latents": out, "rng": generator.get_state()}


class DenoiseFreeInit(Node):
    """Denoises all of the scheduler's steps `iterations` times with FreeInit's noise re-initialisation between
    passes (diffusers' enable_free_init): the clean latents of a pass are diffused back to the last training
    timestep with the first pass's noise, and their low frequencies (3-D FFT over frames, height and width, filtered
    by a butterworth (of `order`), gaussian or ideal low-pass with normalised stop frequencies `spatial_stop` and
    `temporal_stop`) are mixed with the high frequencies of fresh noise drawn from `rng`. One iteration is a plain
    video.denoise over all steps. `fast_sampling` runs pass k (from 1) with steps x k / iterations steps (FreeInit's
    coarse-to-fine sampling). `shared` draws the fresh noise as video.noise's `shared` does (link the same value).
    Costs `iterations` denoising passes."""

    id = "video.denoise_free_init"
    version = 1
    category = "sampling"
    inputs = [
        Input("unet", UNET, doc="the model, with any attention patches"),
        Input("scheduler", SCHEDULER, doc="the sampler, with its steps set"),
        Input("conditioning", CONDITIONING, doc="from video.encode_text or video.prompt_travel"),
        Input("latents", LATENTS, doc="(B, C, F, H, W) initial noise"),
        Input("guidance", float, default=7.5, ge=0.0, doc="classifier-free guidance scale (<= 1: off)"),
        Input("eta", float, default=0.0, ge=0.0, le=1.0, doc="DDIM stochasticity (0: deterministic)"),
        Input("rng", RNG, doc="random state for the fresh noise (and stochastic steps)"),
        Input("iterations", int, default=3, ge=1, le=20, doc="denoising passes (1: FreeInit off)"),
        Input("method", FilterMethod, default="butterworth", doc="low-pass filter: butterworth, gaussian or ideal"),
        Input("order", int, default=4, ge=1, doc="order of the butterworth filter"),
        Input("spatial_stop", float, default=0.25, ge=0.0, le=1.0, doc="normalised spatial stop frequency"),
        Input("temporal_stop", float, default=0.25, ge=0.0, le=1.0, doc="normalised temporal stop frequency"),
        Input("fast_sampling", bool, default=False, doc="coarse-to-fine: fewer steps in the early passes"),
        Input("shared", float, default=0.0, ge=0.0, le=1.0,
              doc="share of the fresh noise's variance common to every frame, as video.noise's shared (give the "
                  "same share: 0 is diffusers' draw)"),
        Input("chunk_size", int, default=0, ge=0, doc="frames per UNet call including the anchor (2-D UNets; 0: all)"),
    ]
    outputs = [
        Output("latents", LATENTS, doc="latents after the last pass"),
        Output("rng", RNG, doc="the random state after every draw"),
        Output("x0", LATENTS, doc="the last step's prediction of the clean latents"),
    ]

    @classmethod
    def check(cls, known):
        if known.get("chunk_size") == 1:
            yield Invalid("chunk_size", "chunk_size 1 leaves no room beside frame 0, the attention anchor",
                          "use 0 (all frames at once) or at least 2")
        for message, hint in condition_problems(known.get("unet"), known.get("latents")):
            yield Invalid("unet", message, hint)

    def run(self, ctx: RunContext, unet, scheduler, conditioning, latents, guidance, eta, rng, iterations, method,
            order, spatial_stop, temporal_stop, fast_sampling, shared, chunk_size):
        if chunk_size == 1:
            raise ValueError("chunk_size must be 0 (all frames) or at least 2 (frame 0 plus one more)")
        steps = len(scheduler.timesteps)
        generator = generator_from_state(rng)
        x = latents.to(ctx.device)
        initial = x.detach().clone()
        plan = [max(1, int(steps / iterations * (k + 1))) if fast_sampling else steps for k in range(iterations)]
        total, done = sum(plan), 0
        ctx.progress(0, total)
        work = None
        result = None
        for k in range(iterations):
            if k > 0:
                x = reinitialize(result.latents, initial, work, generator, method, order, spatial_stop, temporal_stop,
                                 shared)
            work = copy.deepcopy(scheduler)
            if plan[k] != steps:
                work.set_timesteps(plan[k], device=x.device)
            n = len(work.timesteps)

            def progress(step, _total, base=done):
                ctx.progress(base + step, total)

            result = denoise(unet, work, conditioning, x, guidance, 0, n, eta, generator, chunk_size,
                             on_step=progress)
            done += n
        return {"latents": result.latents, "rng": generator.get_state(), "x0": result.x0}
