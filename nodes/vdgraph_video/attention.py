"""Attention patches: cross-frame attention as a value on the UNet handle."""

from __future__ import annotations

from typing import Literal

from vdgraph.node import Input, Node, Output

from vdgraph_video.ops.attention import CrossFrameAttention
from vdgraph_video.types import UNET


class CrossFrameAttentionNode(Node):
    """Makes self-attention look across frames; returns a patched model value and leaves the input model alone.

    Modes: "first_frame" (every frame attends to frame 0's keys and values: Text2Video-Zero, arithmetic
    identical to diffusers' CrossFrameAttnProcessor2_0), "sparse_causal" (frame 0 and the previous frame:
    Tune-A-Video) and "full" (all frames as one large image, one SDPA call so memory stays bounded: ControlVideo).
    "none" returns the model unpatched (every frame attends to itself), so a workflow can switch the technique
    off with one input and measure what it does. The patch is installed by video.denoise only while it runs. cfg_chunks is the number of guidance chunks in
    the UNet batch: 2 for text guidance, 3 for InstructPix2Pix, 1 without guidance.
    """

    id = "video.cross_frame_attention"
    version = 1
    category = "model"
    inputs = [
        Input("unet", UNET, doc="the model to patch (not modified)"),
        Input("mode", Literal["first_frame", "sparse_causal", "full", "none"], default="first_frame",
              doc="which frames each frame attends to (none: no patch)"),
        Input("cfg_chunks", int, default=2, ge=1, le=8, doc="guidance chunks in the UNet batch"),
    ]
    outputs = [Output("unet", UNET, doc="the same model with the patch added")]

    def run(self, ctx, unet, mode, cfg_chunks):
        if mode == "none":
            return unet
        return unet.with_patch(CrossFrameAttention(mode, cfg_chunks))
