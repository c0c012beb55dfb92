"""Temporal smoothing and ControlVideo's interleaved-frame smoother (weight-free)."""

from __future__ import annotations

from typing import Literal

import torch

from vdgraph.node import Input, Node, Output

from vdgraph_video.ops.latents import resolve_index
from vdgraph_video.ops.schedulers import ddim_alpha_prev
from vdgraph_video.ops.smooth import (
    Interpolator,
    SmoothMode,
    interleave_interpolate,
    replace_ddim_x0,
    smooth_over_time,
)
from vdgraph_video.types import FRAMES, LATENTS, SCHEDULER

_SMOOTH_INPUTS = [
    Input("mode", SmoothMode, default="gaussian", doc="flat window or Gaussian weights over time"),
    Input("radius", int, default=1, ge=0, le=64, doc="frames on each side (Gaussian: 0 means 3 sigma)"),
    Input("sigma", float, default=1.0, gt=0.0, doc="Gaussian standard deviation in frames"),
]


class SmoothFrames(Node):
    """Smooths frames (F, H, W, 3) over time: each frame becomes a weighted mean of its neighbours (a flat window
    or a Gaussian); at the ends the missing neighbours' weights are dropped and the rest renormalised."""

    id = "video.smooth_frames"
    version = 1
    category = "smoothing"
    inputs = [Input("frames", FRAMES, doc="(F, H, W, 3) float in [0, 1]"), *_SMOOTH_INPUTS]
    outputs = [Output("frames", FRAMES, doc="the smoothed frames")]

    def run(self, ctx, frames, mode, radius, sigma):
        return smooth_over_time(frames, 0, mode, radius, sigma)


class SmoothLatents(Node):
    """Smooths latents (B, C, F, H, W) over the frame axis, as video.smooth_frames does for frames."""

    id = "video.smooth_latents"
    version = 1
    category = "smoothing"
    inputs = [Input("latents", LATENTS, doc="(B, C, F, H, W)"), *_SMOOTH_INPUTS]
    outputs = [Output("latents", LATENTS, doc="the smoothed latents")]

    def run(self, ctx, latents, mode, radius, sigma):
        return smooth_over_time(latents, 2, mode, radius, sigma)


class InterleaveFrames(Node):
    """ControlVideo's interleaved-frame smoothing with a weight-free interpolation: every odd (or even) frame is
    replaced by an interpolation of its two neighbours: "mean" averages them (moving edges ghost), "flow" warps
    both half-way along their OpenCV DIS optical flow and blends them (motion-compensated). The paper interpolates
    with the learned RIFE network instead; this node uses no weights. Frames with a single neighbour are kept.
    Apply "odd" at one step and "even" at the next.
    """

    id = "video.interleave_frames"
    version = 1
    category = "smoothing"
    inputs = [
        Input("frames", FRAMES, doc="(F, H, W, 3) float in [0, 1], e.g. the decoded x0 prediction"),
        Input("parity", Literal["odd", "even"], default="odd", doc="which frames are replaced"),
        Input("interpolator", Interpolator, default="mean",
              doc="mean of the two neighbours, or their optical-flow midpoint (flow)"),
    ]
    outputs = [Output("frames", FRAMES, doc="the smoothed frames")]

    def run(self, ctx, frames: torch.Tensor, parity: str, interpolator: str) -> torch.Tensor:
        return interleave_interpolate(frames, 0, parity, interpolator)


class ReplaceX0(Node):
    """Recomputes latents after a DDIM step for a replaced x0 prediction (ControlVideo's smoother re-derivation):
    z' = z + sqrt(abar_prev) (x0' - x0), which is the DDIM update with the same noise estimate and x0'.

    Chain: video.denoise (x0) -> video.decode -> video.interleave_frames -> video.encode (x0') -> this node,
    with `step` the index of the step that produced z and x0 (the denoise node's end - 1). DDIM only."""

    id = "video.replace_x0"
    version = 1
    category = "smoothing"
    inputs = [
        Input("latents", LATENTS, doc="z: latents after the step"),
        Input("x0", LATENTS, doc="the step's x0 prediction"),
        Input("new_x0", LATENTS, doc="the replacement x0 (e.g. smoothed frames encoded again)"),
        Input("scheduler", SCHEDULER, doc="the DDIM scheduler"),
        Input("step", int, doc="index of the step that produced latents and x0 (negative: from the end)"),
    ]
    outputs = [Output("latents", LATENTS, doc="the recomputed latents")]

    def run(self, ctx, latents, x0, new_x0, scheduler, step):
        if type(scheduler).__name__ != "DDIMScheduler":
            raise ValueError(f"replace_x0 follows the DDIM update; got {type(scheduler).__name__}")
        index = resolve_index(step, len(scheduler.timesteps), "step")
        with torch.no_grad():
            return replace_ddim_x0(latents, x0, new_x0.to(latents.device, latents.dtype),
                                   ddim_alpha_prev(scheduler, index))
