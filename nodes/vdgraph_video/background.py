"""Text2Video-Zero's background smoothing as nodes: foreground masks of a first pass, then the blended second pass.

`video.foreground_masks` decodes the first pass and finds each frame's foreground (a mask video, spectral-residual
saliency, or a linked detector such as the shapes judge); `video.smooth_background` blends the latents at T1 with
frame 0's warped background where both are background and denoises every frame again from T1 (the math is in
`vdgraph_video.ops.background`). Method "none" decodes nothing and returns the first pass as it is, so a workflow
can switch the technique on with one input and nothing changes when it is off.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch

from vdgraph.context import RunContext
from vdgraph.node import Input, Invalid, Node, Output

from vdgraph_video.facts import SchedulerFacts, step_index_problem
from vdgraph_video.ops.background import blend_background, latent_masks, masks_from_frames, saliency_masks
from vdgraph_video.ops.denoise import denoise
from vdgraph_video.ops.latents import resolve_index
from vdgraph_video.ops.motion import warp_translation
from vdgraph_video.ops.vae import decode
from vdgraph_video.ops.video_io import read_video
from vdgraph_video.types import (CONDITIONING, FLOW, LATENTS, MASK_DETECTOR, MASKS, RNG, SCHEDULER, UNET, VAE)
from vdgraph_video.values import TranslationFlow, UNetHandle, generator_from_state, seeded_state
from vdgraph_video.video_io import input_path

MaskMethod = Literal["none", "mask_video", "saliency", "judge"]


class ForegroundMasks(Node):
    """Foreground masks (F, H, W) in {0, 1} of the frames that `latents` decode to, by `method`:

    - "none": no masks (empty output; nothing is decoded), background smoothing off;
    - "mask_video": the frames of `mask_video` (a video file or PNG-frame folder; white is foreground), its first
      F frames resized to the frames' size; a shorter video is an error naming the port;
    - "saliency": spectral-residual saliency of each decoded frame (Hou and Zhang 2007, no weights), Otsu threshold;
    - "judge": the linked `detector` on each decoded frame (shapes.judge_mask_detector for the built-in model).
    Latents are decoded as diffusers' decode_latents (1 / scaling factor), chunk_size frames per VAE call.
    """

    id = "video.foreground_masks"
    version = 1
    category = "conditions"
    inputs = [
        Input("method", MaskMethod, default="none", doc="none, mask_video, saliency, or judge (the linked detector)"),
        Input("vae", VAE, doc="decodes the latents (not used for none and mask_video)"),
        Input("latents", LATENTS, doc="(1, C, F, h, w) latents of the first pass"),
        Input("mask_video", str, default="", reads_file=True, doc="mask_video: the mask video (white = foreground)"),
        Input("detector", MASK_DETECTOR, optional=True, doc="judge: the detector to run on the decoded frames"),
        Input("chunk_size", int, default=8, ge=0, doc="frames per VAE call (0: all)"),
    ]
    outputs = [Output("masks", MASKS, doc="(F, H, W) foreground masks (empty for none)")]

    @classmethod
    def check(cls, known):
        method = known.get("method")
        if method == "mask_video" and known.get("mask_video", None) == "":
            yield Invalid("mask_video", "background smoothing by mask_video needs a mask video, and none is given",
                          "give mask_video (a video file or PNG-frame folder, white where the foreground is), or "
                          "choose saliency")
        if method == "judge" and "detector" in known and known["detector"] is None:
            yield Invalid("detector", "background smoothing by judge needs a detector, and none is linked",
                          "link a mask detector (shapes.judge_mask_detector for the built-in shapes model), or "
                          "choose saliency")

    def run(self, ctx: RunContext, method: str, vae, latents: torch.Tensor, mask_video: str, detector,
            chunk_size: int) -> torch.Tensor | None:
        if method == "none":
            return None
        b, _, f, h, w = latents.shape
        if b != 1:
            raise ValueError(f"port 'latents': foreground masks take one video (batch 1), got batch {b}")
        factor = vae.scale_factor
        if method == "mask_video":
            if not mask_video.strip():
                raise ValueError("port 'mask_video': no mask video given; give a video file or PNG-frame folder")
            frames, _ = read_video(input_path(ctx, mask_video), max_frames=f, height=h * factor, width=w * factor)
            if frames.shape[0] < f:
                raise ValueError(f"port 'mask_video': the mask video has {frames.shape[0]} frames but the video "
                                 f"{f}: give one mask per frame")
            return masks_from_frames(frames)
        frames = decode(vae.module, latents, chunk_size, "reciprocal")  # (F, H, W, 3)
        if method == "saliency":
            return saliency_masks(frames)
        if detector is None:
            raise ValueError("port 'detector': method judge needs a linked detector (shapes.judge_mask_detector)")
        masks = detector(frames)
        if tuple(masks.shape) != tuple(frames.shape[:3]):
            raise ValueError(f"port 'detector': the detector returned masks {tuple(masks.shape)} for frames "
                             f"{tuple(frames.shape)}: expected (F, H, W)")
        return masks.float()


class SmoothBackground(Node):
    """Text2Video-Zero's background smoothing (the paper's sec. 3.3, the authors' `smooth_bg`): with foreground
    masks of the first pass, the latents at T1 are blended where a frame and frame 0's warped position are both
    background, x <- (1 - M_BG) x + M_BG (alpha x + (1 - alpha) warp(x^1 (1 - M^1))), M_BG = (1 - M^k)(1 -
    warp(M^1)) (masks resized to the latents with nearest, dilated 5x5), and every frame is denoised again from
    `start` (T1) to the end: twice the cost of the final pass. Without masks (video.foreground_masks' "none") the
    first pass `final` is returned as it is and nothing runs.

    `flow` is the motion field that warped frame 0 to frames 1..F-1 (video.translation_flow with first_frame 1);
    `scheduler` the sampler's state at T1, as the final pass started from it.
    """

    id = "video.smooth_background"
    version = 1
    category = "sampling"
    inputs = [
        Input("unet", UNET, doc="the model, with its attention patches"),
        Input("scheduler", SCHEDULER, doc="the sampler in its state at `start` (T1)"),
        Input("conditioning", CONDITIONING, doc="from video.encode_text"),
        Input("latents", LATENTS, doc="(1, C, F, h, w) latents at T1, as the final pass started"),
        Input("final", LATENTS, doc="the first pass's result: returned when there are no masks"),
        Input("masks", MASKS, optional=True, doc="(F, H, W) foreground masks of the first pass (empty: off)"),
        Input("flow", FLOW, doc="the motion field of frames 1..F-1 (video.translation_flow, first_frame 1)"),
        Input("alpha", float, default=0.4, ge=0.0, le=1.0,
              doc="weight of a frame's own background in the blend (the reference's 0.4)"),
        Input("guidance", float, default=7.5, ge=0.0, doc="classifier-free guidance scale (<= 1: off)"),
        Input("start", int, doc="step index of T1 (negative: from the end)"),
        Input("eta", float, default=0.0, ge=0.0, le=1.0, doc="DDIM stochasticity (0: deterministic)"),
        Input("rng", RNG, optional=True, doc="random state for stochastic steps"),
        Input("chunk_size", int, default=0, ge=0, doc="frames per UNet call including the anchor (0: all)"),
    ]
    outputs = [
        Output("latents", LATENTS, doc="the smoothed video's latents (the first pass's without masks)"),
        Output("rng", RNG, doc="the random state after the second pass"),
    ]

    @classmethod
    def check(cls, known):
        facts = known.get("scheduler")
        if isinstance(facts, SchedulerFacts):
            why = step_index_problem(known.get("start"), facts.steps, "start")
            if why:
                yield Invalid("start", why, "start must name a step of the schedule (T1's index)")
        if known.get("chunk_size") == 1:
            yield Invalid("chunk_size", "chunk_size 1 leaves no room beside frame 0, the attention anchor",
                          "use 0 (all frames at once) or at least 2")

    def run(self, ctx: RunContext, unet: UNetHandle, scheduler, conditioning, latents: torch.Tensor,
            final: torch.Tensor, masks, flow: TranslationFlow, alpha: float, guidance: float, start: int, eta: float,
            rng, chunk_size: int) -> dict:
        if masks is None:
            return {"latents": final, "rng": rng}
        b, _, f, h, w = latents.shape
        if masks.shape[0] != f:
            raise ValueError(f"port 'masks': {masks.shape[0]} masks for {f} frames: give one mask per frame")
        if f > 1 and len(flow.frame_ids) != f - 1:
            raise ValueError(f"port 'flow': the flow has {len(flow.frame_ids)} frames but frames 1..{f - 1} need "
                             f"{f - 1} (video.translation_flow with first_frame 1)")
        if rng is None and eta > 0:
            raise ValueError(f"port 'rng': eta {eta} > 0 draws random numbers: link an rng")

        def warp(x: torch.Tensor) -> torch.Tensor:  # (F-1, C, h, w) copies of frame 0 -> frames 1..F-1
            return warp_translation(x, flow.frame_ids, flow.strength_x, flow.strength_y, flow.mode)

        latents = latents.to(ctx.device)
        small = latent_masks(masks, h, w).to(latents.device)  # (F, h, w)
        with torch.no_grad():
            blended = blend_background(latents, small, warp, alpha)
        scheduler = copy.deepcopy(scheduler)
        n = len(scheduler.timesteps)
        i_start = resolve_index(start, n, "start")
        generator = generator_from_state(rng if rng is not None else seeded_state(0))
        ctx.progress(0, n - i_start)
        result = denoise(unet, scheduler, conditioning, blended, guidance, i_start, n, eta, generator, chunk_size,
                         on_step=lambda done, total: ctx.progress(done, total))
        return {"latents": result.latents, "rng": generator.get_state() if rng is not None else None}
