"""Text2Video-Zero's motion field and the warp of latents by it."""

from __future__ import annotations

import torch

from vdgraph.node import Input, Invalid, Node, Output

from vdgraph_video.ops.latents import fold_frames, unfold_frames
from vdgraph_video.ops.motion import MotionMode, warp_translation
from vdgraph_video.types import FLOW, LATENTS
from vdgraph_video.values import TranslationFlow


class TranslationFlowNode(Node):
    """Text2Video-Zero's motion field: a global translation growing linearly with the frame id.

    Frame ids run from `first_frame` to `frames - 1` (Text2Video-Zero warps frames 1..F-1 from frame 0's latent).
    Positive strengths move content left (x) and up (y), as in the reference. Modes: "reference" reproduces
    diffusers exactly (strength in pixels of a fixed 512 x 512 canvas whatever the resolution, nearest
    sampling: whole latent pixels only); "resolution_aware" takes the strength in latent pixels per frame at any
    resolution and samples bilinearly (smooth sub-pixel motion).
    """

    id = "video.translation_flow"
    version = 1
    category = "motion"
    inputs = [
        Input("frames", int, default=8, ge=1, doc="number of frames F of the video"),
        Input("first_frame", int, default=1, ge=0, doc="the first frame id that gets a warped copy"),
        Input("motion_x", float, default=12.0, doc="x strength per frame (reference: canvas px; else latent px)"),
        Input("motion_y", float, default=12.0, doc="y strength per frame (reference: canvas px; else latent px)"),
        Input("mode", MotionMode, default="reference", doc="reference-compatible or resolution-aware"),
    ]
    outputs = [Output("flow", FLOW, doc="the per-frame translations")]

    @classmethod
    def check(cls, known):
        frames, first_frame = known.take("frames", "first_frame")
        if frames is not None and first_frame >= frames:
            yield Invalid("first_frame", f"first_frame {first_frame} leaves no frame of {frames} to warp",
                          f"use a first_frame below frames ({frames}), or more frames")

    def run(self, ctx, frames, first_frame, motion_x, motion_y, mode):
        if first_frame >= frames:
            raise ValueError(f"first_frame {first_frame} leaves no frame of {frames} to warp")
        return TranslationFlow(tuple(range(first_frame, frames)), motion_x, motion_y, mode)


class WarpLatents(Node):
    """Warps latents by a flow, one frame per frame id of the flow.

    Latents with a single frame are copied to every frame id first (Text2Video-Zero: frame 0's latent at T0
    becomes F-1 warped copies); otherwise the frame count must match the flow's.
    """

    id = "video.warp_latents"
    version = 1
    category = "motion"
    inputs = [
        Input("latents", LATENTS, doc="(B, C, 1 or N, H, W) latents"),
        Input("flow", FLOW, doc="from video.translation_flow"),
    ]
    outputs = [Output("latents", LATENTS, doc="(B, C, N, H, W) warped latents, N = the flow's frame count")]

    def run(self, ctx, latents, flow):
        b, c, f, h, w = latents.shape
        n = len(flow.frame_ids)
        if f not in (1, n):
            raise ValueError(f"latents have {f} frames but the flow has {n}: give 1 frame (copied) or {n}")
        with torch.no_grad():
            out = []
            for item in range(b):
                frames = fold_frames(latents[item:item + 1])  # (f, C, H, W)
                if f == 1:
                    frames = frames.repeat(n, 1, 1, 1)  # (N, C, H, W), as the reference's x.repeat(F-1, 1, 1, 1)
                out.append(warp_translation(frames, flow.frame_ids, flow.strength_x, flow.strength_y, flow.mode))
            warped = torch.cat(out)  # (B*N, C, H, W)
        return unfold_frames(warped, b).contiguous()
