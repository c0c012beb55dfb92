"""Attention patches: cross-frame attention as a value on the UNet handle."""

from __future__ import annotations

from typing import Literal

from vdgraph.context import RunContext
from vdgraph.node import Input, Node, Output

from vdgraph_video.ops.attention import CrossFrameAttention
from vdgraph_video.types import UNET
from vdgraph_video.values import UNetHandle


class CrossFrameAttentionNode(Node):
    """Makes self-attention look across frames; returns a patched model value and leaves the input model alone.

    Modes: "first_frame" (every frame attends to frame 0's keys and values: Text2Video-Zero, arithmetic
    identical to diffusers' CrossFrameAttnProcessor2_0), "sparse_causal" (frame 0 and the previous frame:
    Tune-A-Video) and "full" (all frames as one large image, one SDPA call so memory stays bounded: ControlVideo).
    "none" returns the model unpatched (every frame attends to itself), so a workflow can switch the technique
    off with one input and measure what it does. The patch is installed by video.denoise only while it runs;
    video.denoise also tells it how many clips each UNet call stacks along its batch (2 per video with
    classifier-free guidance, 1 without), so guidance on or off needs no setting here.
    """

    id = "video.cross_frame_attention"
    version = 2  # 2: the cfg_chunks input is gone (video.denoise knows the batch layout of each call)
    category = "model"
    inputs = [
        Input("unet", UNET, doc="the model to patch (not modified)"),
        Input("mode", Literal["first_frame", "sparse_causal", "full", "none"], default="first_frame",
              doc="which frames each frame attends to (none: no patch)"),
    ]
    outputs = [Output("unet", UNET, doc="the same model with the patch added")]

    @classmethod
    def infer(cls, known):
        unet = known.get("unet")  # the patched model's config facts are the model's
        return {"unet": unet} if unet is not None else {}

    def run(self, ctx: RunContext, unet: UNetHandle, mode: str) -> UNetHandle:
        if mode == "none":
            return unet
        return unet.with_patch(CrossFrameAttention(mode))
