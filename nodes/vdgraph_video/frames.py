"""Cutting and joining clips along the frame axis."""

from __future__ import annotations

from vdgraph.node import Input, Invalid, Node, Output

from vdgraph_video.ops.latents import concat_frames
from vdgraph_video.types import LATENTS


def empty_slice_problems(known):
    """A frame range [start:end] that selects nothing whatever the clip's length (both ends counted the same way)."""
    start, end = known.take("start", "end")
    if start is not None and end is not None and (start < 0) == (end < 0) and start >= end:
        yield Invalid("end", f"frames [{start}:{end}] select nothing, whatever the clip's length",
                      "end must come after start (both count from the start, or both from the end)")


class ConcatLatents(Node):
    """Joins two clips of latents along the frame axis: (B, C, F1, H, W) + (B, C, F2, H, W) -> F1 + F2 frames
    (Text2Video-Zero: frame 0's own latent at T1 followed by the re-noised warped copies)."""

    id = "video.concat_latents"
    version = 1
    category = "latents"
    inputs = [
        Input("first", LATENTS, doc="the leading frames"),
        Input("second", LATENTS, doc="the frames that follow"),
    ]
    outputs = [Output("latents", LATENTS, doc="(B, C, F1 + F2, H, W)")]

    def run(self, ctx, first, second):
        return concat_frames(first, second.to(first.device))


class SelectLatentFrames(Node):
    """Frames start, start + step, ... (before end) of a clip of latents; indices count like Python slices."""

    id = "video.select_latent_frames"
    version = 1
    category = "latents"
    inputs = [
        Input("latents", LATENTS, doc="(B, C, F, H, W)"),
        Input("start", int, default=0, doc="first frame (negative: from the end)"),
        Input("end", int, optional=True, default=None, doc="frame to stop before; empty: to the end"),
        Input("step", int, default=1, ge=1, doc="take every step-th frame"),
    ]
    outputs = [Output("latents", LATENTS, doc="the selected frames")]

    @classmethod
    def check(cls, known):
        yield from empty_slice_problems(known)

    def run(self, ctx, latents, start, end, step):
        out = latents[:, :, start:end:step]
        if out.shape[2] == 0:
            raise ValueError(f"frames [{start}:{end}:{step}] of a {latents.shape[2]}-frame clip select nothing")
        return out.contiguous()
