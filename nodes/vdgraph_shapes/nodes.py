"""The judge and the video metrics as workflow nodes (pack "shapes").

Thin wrappers: each node turns its frames tensor into a numpy video and calls `vdgraph_shapes.judge` /
`vdgraph_shapes.metrics`, which hold the logic and are tested on ground truth. Reports are plain JSON-able dicts,
so they travel through the persistent cache and can be saved with `core.save_json`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from vdgraph.node import Input, Node, Output
from vdgraph.persist import register_dataclass
from vdgraph.types import ANY, TENSOR, Opaque
from vdgraph_video.types import FRAMES, MASK_DETECTOR

from vdgraph_shapes import metrics
from vdgraph_shapes.judge import Judgement, dilate, judge_video

REPORT = Opaque("Report", "a JSON-able dict (or list) of measurements", parent=ANY)


def _video(frames: torch.Tensor) -> np.ndarray:
    """(F, H, W, 3) float tensor in [0, 1] -> float64 numpy video (the metrics' own format)."""
    assert frames.ndim == 4 and frames.shape[-1] == 3, f"frames must be (F, H, W, 3), got {tuple(frames.shape)}"
    return frames.detach().to("cpu", torch.float64).numpy()


def _finite(value: float) -> float | None:
    """JSON has no NaN: undefined measurements become null."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def judgement_json(j: Judgement) -> dict[str, Any]:
    return {
        "background": j.background, "background_confidence": round(j.background_confidence, 4),
        "colour": j.colour, "colour_confidence": round(j.colour_confidence, 4),
        "shape": j.shape, "shape_confidence": round(j.shape_confidence, 4),
        "x": _finite(round(j.x, 3)), "y": _finite(round(j.y, 3)),
        "area": round(j.area, 2), "touches_border": j.touches_border,
    }


class JudgeFrames(Node):
    """Judges every frame of the shapes world with classic image analysis (no model): background colour, shape
    colour, shape class, centroid in pixels, each with a confidence in [0, 1]."""

    id = "shapes.judge_frames"
    version = 1
    category = "metrics"
    inputs = [Input("frames", FRAMES, doc="(F, H, W, 3) float in [0, 1]")]
    outputs = [Output("judgements", REPORT, doc="one dict per frame")]

    def run(self, ctx, frames):
        return [judgement_json(j) for j in judge_video(_video(frames))]


class VideoMetrics(Node):
    """Measures a generated shapes-world video against its prompt and the motion it was asked for.

    prompt adherence per frame (background, colour, shape), identity consistency (frames whose colour and shape
    match frame 0), motion accuracy (centroid displacement per frame against the commanded (motion_x, motion_y)
    in image pixels per frame, counted only while the shape stays in view), background stability (mean
    frame-to-frame change outside the shape) and temporal consistency (mean frame-to-frame change).
    """

    id = "shapes.video_metrics"
    version = 1
    category = "metrics"
    inputs = [
        Input("frames", FRAMES, doc="(F, H, W, 3) float in [0, 1]"),
        Input("prompt", str, doc='the caption it was made from, e.g. "a red circle on a blue background"'),
        Input("motion_x", float, default=0.0, doc="commanded content motion, image pixels per frame (right +)"),
        Input("motion_y", float, default=0.0, doc="commanded content motion, image pixels per frame (down +)"),
    ]
    outputs = [
        Output("report", REPORT, doc="every measurement, per frame where it applies"),
        Output("identity", float, doc="identity consistency, fraction of frames 1..F-1"),
        Output("adherence", float, doc="fraction of frames matching the prompt in background, colour and shape"),
        Output("motion_error", float, doc="mean centroid error in px/frame (NaN when the shape is never in view)"),
    ]

    def run(self, ctx, frames, prompt, motion_x, motion_y):
        video = _video(frames)
        judged = judge_video(video)
        adherence = metrics.prompt_adherence(video, prompt, judged)
        motion = metrics.motion_accuracy(video, motion_x, motion_y, judged)
        identity = metrics.identity_consistency(video, judged)
        report = {
            "frames": [judgement_json(j) for j in judged],
            "adherence": adherence,
            "identity_consistency": identity,
            "motion": {k: _finite(v) if not isinstance(v, tuple) else [_finite(x) for x in v]
                       for k, v in motion.items()},
            "commanded_motion": [motion_x, motion_y],
            "background_stability": _finite(metrics.background_stability(video, judged)),
            "temporal_consistency": metrics.temporal_consistency(video) if len(video) > 1 else None,
        }
        return {"report": report, "identity": identity, "adherence": adherence["all_rate"],
                "motion_error": motion["mae"]}


class TemporalConsistency(Node):
    """Mean absolute difference between consecutive frames (0: a still video). Model-free; any video."""

    id = "shapes.temporal_consistency"
    version = 1
    category = "metrics"
    inputs = [Input("frames", FRAMES, doc="(F, H, W, 3) float in [0, 1], F >= 2")]
    outputs = [Output("value", float, doc="mean |frame[k+1] - frame[k]| in [0, 1]")]

    def run(self, ctx, frames):
        return metrics.temporal_consistency(_video(frames))


class TranslationFlow(Node):
    """A constant optical flow (F-1, H, W, 2) for a global translation of (dx, dy) pixels per frame, in the
    convention of shapes.warping_error (flow[k] maps frame k to frame k+1; x right, y down)."""

    id = "shapes.translation_flow"
    version = 1
    category = "metrics"
    inputs = [
        Input("frames", FRAMES, doc="the video the flow is for (only its shape is used)"),
        Input("dx", float, default=0.0, doc="pixels per frame, right +"),
        Input("dy", float, default=0.0, doc="pixels per frame, down +"),
    ]
    outputs = [Output("flow", TENSOR, doc="(F-1, H, W, 2) float32 pixel displacements")]

    def run(self, ctx, frames, dx, dy):
        f, h, w, _ = frames.shape
        return torch.from_numpy(metrics.translation_flow(f, h, w, dx, dy)).float()


class WarpingError(Node):
    """Mean absolute error between each frame and its successor warped back by the flow (bilinear; pixels whose
    source falls outside the frame do not count). Model-free; any video with a flow."""

    id = "shapes.warping_error"
    version = 1
    category = "metrics"
    inputs = [
        Input("frames", FRAMES, doc="(F, H, W, 3) float in [0, 1]"),
        Input("flow", TENSOR, doc="(F-1, H, W, 2) pixels: flow[k] maps frame k to frame k+1"),
    ]
    outputs = [Output("value", float, doc="mean abs warping error in [0, 1]")]

    def run(self, ctx, frames, flow):
        return metrics.warping_error(_video(frames), flow.detach().to("cpu", torch.float64).numpy())


@dataclasses.dataclass(frozen=True)
class JudgeMasks:
    """The judge as a foreground detector: frames (F, H, W, 3) in [0, 1] -> the judged shape's pixels (F, H, W)
    in {0, 1}, grown by `grow` pixels (8-neighbour dilation); a frame where no shape is found is all background."""

    grow: int = 0

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        masks = []
        for judged in judge_video(_video(frames)):
            mask = judged.mask
            for _ in range(self.grow):
                mask = dilate(mask)
            masks.append(mask)
        return torch.from_numpy(np.stack(masks)).float()

    def __vdgraph_nbytes__(self) -> int:
        return 64


register_dataclass("shapes.judge_masks", JudgeMasks)  # a small recipe: the disk cache stores it, no model inside


class JudgeMaskDetector(Node):
    """The shapes judge as a foreground-mask detector for video nodes that take one (video.foreground_masks with
    method judge: Text2Video-Zero's background smoothing on the built-in model). The judge finds the one shape of
    a shapes-world frame by colour against the border's background colour; its pixels are the foreground."""

    id = "shapes.judge_mask_detector"
    category = "judge"
    inputs = [Input("grow", int, default=0, ge=0, le=16, doc="grow each mask by this many pixels")]
    outputs = [Output("detector", MASK_DETECTOR, doc="frames (F, H, W, 3) -> masks (F, H, W) in {0, 1}")]

    def run(self, ctx, grow: int) -> JudgeMasks:
        return JudgeMasks(grow)


NODES = [JudgeFrames, VideoMetrics, TemporalConsistency, TranslationFlow, WarpingError, JudgeMaskDetector]
