"""Condition frames for ControlNets from an input video: canny edges, pose skeletons, depth maps, or frames as
they are. Each node takes frames (F, H, W, 3) and returns condition frames (F, H, W, 3) float in [0, 1];
`video.condition` picks one of them by name, so a workflow input can choose."""

from __future__ import annotations

from typing import Literal

import torch

from vdgraph.node import Input, Invalid, Node, Output

from vdgraph_video.ops.conditions import (
    DepthNormalise,
    canny_edges,
    depth_maps,
    frames_as_condition,
    load_depth_model,
    pose_skeletons,
)
from vdgraph_video.facts import FramesFacts
from vdgraph_video.types import FRAMES
from vdgraph_video.video_io import input_path

ConditionKind = Literal["canny", "pose", "depth", "video"]

DEPTH_HINT = ("give depth_model: a local folder with a transformers depth model (DPT-style: config.json, "
              "model.safetensors, preprocessor_config.json), e.g. Intel/dpt-hybrid-midas saved with save_pretrained")

_FRAMES_IN = Input("frames", FRAMES, doc="(F, H, W, 3) float in [0, 1], the input video")
_CONDITION_OUT = Output("frames", FRAMES, doc="condition frames (F, H, W, 3) float in [0, 1]")
_LOW = Input("low", int, default=100, ge=0, le=255 * 6, doc="canny: lower hysteresis threshold (references: 100)")
_HIGH = Input("high", int, default=200, ge=0, le=255 * 6, doc="canny: upper hysteresis threshold (references: 200)")
_DEPTH_MODEL = Input("depth_model", str, default="", reads_file=True, doc="depth: folder of a transformers depth model (DPT-style)")
_NORMALISE = Input("normalise", DepthNormalise, default="frame",
                   doc="depth: min-max per frame (as the references) or over the whole clip (steadier)")
_HEIGHT = Input("height", int, default=0, ge=0, doc="video: resize to this height (0: keep / follow the width)")
_WIDTH = Input("width", int, default=0, ge=0, doc="video: resize to this width (0: keep / follow the height)")


def _same_frames(known) -> dict:
    """Condition frames are as many and as large as the input frames (what validation knows of them)."""
    frames = known.get("frames")
    return {"frames": frames} if isinstance(frames, FramesFacts) else {}


def _resized_frames(known) -> dict:
    frames = known.get("frames")
    if not isinstance(frames, FramesFacts):
        return {}
    height, width = known.get("height"), known.get("width")
    if height is None or width is None:
        return {}
    return {"frames": frames.resized(height, width)}


def _threshold_problems(known) -> list[Invalid]:
    low, high = known.take("low", "high")
    if low is not None and low > high:
        return [Invalid("low", f"canny low threshold {low} is above the high threshold {high}",
                        "low must be <= high (the references use 100 and 200)")]
    return []


def _depth_problems(known) -> list[Invalid]:
    if known.get("depth_model", None) == "":
        return [Invalid("depth_model", "a depth condition needs a depth model, and none is given", DEPTH_HINT)]
    return []


def _depth(ctx, frames: torch.Tensor, depth_model: str, normalise: str) -> torch.Tensor:
    if not depth_model.strip():
        raise ValueError(f"port 'depth_model': no depth model given; {DEPTH_HINT}")
    model, processor = load_depth_model(input_path(ctx, depth_model))
    return depth_maps(frames, model.to(ctx.device), processor, normalise)


class CannyCondition(Node):
    """Canny edges of each frame (OpenCV, on the RGB image as ControlNet's canny annotator does), white on black
    and repeated over RGB, for a canny ControlNet."""

    id = "video.condition_canny"
    version = 1
    category = "conditions"
    inputs = [_FRAMES_IN, _LOW, _HIGH]
    outputs = [_CONDITION_OUT]

    @classmethod
    def check(cls, known):
        yield from _threshold_problems(known)

    infer = classmethod(lambda cls, known: _same_frames(known))

    def run(self, ctx, frames: torch.Tensor, low: int, high: int) -> torch.Tensor:
        return canny_edges(frames, low, high)


class PoseCondition(Node):
    """OpenPose-style skeleton images (18 keypoints, OpenPose's limb colours, on black) of the person MediaPipe's
    pose model finds in each frame (one person per frame; none: a black frame), for an openpose ControlNet.
    Needs the optional extra: `pip install vdgraph[pose]` (MediaPipe ships its model files; no download)."""

    id = "video.condition_pose"
    version = 1
    category = "conditions"
    inputs = [_FRAMES_IN]
    outputs = [_CONDITION_OUT]

    infer = classmethod(lambda cls, known: _same_frames(known))

    def run(self, ctx, frames: torch.Tensor) -> torch.Tensor:
        return pose_skeletons(frames)  # ImportError naming the extra when MediaPipe is missing


class DepthCondition(Node):
    """Relative depth of each frame (near is bright) from a transformers depth model folder (DPT-style, loaded
    with trust_remote_code=False from safetensors only), resized to the frame and min-max normalised, repeated
    over RGB, for a depth ControlNet."""

    id = "video.condition_depth"
    version = 1
    category = "conditions"
    inputs = [_FRAMES_IN, _DEPTH_MODEL, _NORMALISE]
    outputs = [_CONDITION_OUT]

    @classmethod
    def check(cls, known):
        yield from _depth_problems(known)

    infer = classmethod(lambda cls, known: _same_frames(known))

    def run(self, ctx, frames: torch.Tensor, depth_model: str, normalise: str) -> torch.Tensor:
        return _depth(ctx, frames, depth_model, normalise)


class VideoCondition(Node):
    """Frames used as condition images as they are (already-extracted pose, depth or edge videos, as the
    references accept), resized to height x width."""

    id = "video.condition_video"
    version = 1
    category = "conditions"
    inputs = [_FRAMES_IN, _HEIGHT, _WIDTH]
    outputs = [_CONDITION_OUT]

    infer = classmethod(lambda cls, known: _resized_frames(known))

    def run(self, ctx, frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return frames_as_condition(frames, height, width)


class Condition(Node):
    """Condition frames of the kind named by `kind` (canny, pose, depth, or video: the frames as they are), so a
    workflow input can choose; the other kinds' params are ignored. Same results as the video.condition_* nodes."""

    id = "video.condition"
    version = 1
    category = "conditions"
    inputs = [
        _FRAMES_IN,
        Input("kind", ConditionKind, default="canny", doc="canny, pose, depth, or video (frames as they are)"),
        _LOW, _HIGH, _DEPTH_MODEL, _NORMALISE, _HEIGHT, _WIDTH,
    ]
    outputs = [_CONDITION_OUT]

    @classmethod
    def check(cls, known):
        kind = known.get("kind")
        if kind == "canny":
            yield from _threshold_problems(known)
        elif kind == "depth":
            yield from _depth_problems(known)

    @classmethod
    def infer(cls, known):
        kind = known.get("kind")
        if kind is None:
            return {}
        return _resized_frames(known) if kind == "video" else _same_frames(known)

    def run(self, ctx, frames: torch.Tensor, kind: str, low: int, high: int, depth_model: str, normalise: str,
            height: int, width: int) -> torch.Tensor:
        if kind == "canny":
            return canny_edges(frames, low, high)
        if kind == "pose":
            return pose_skeletons(frames)  # ImportError naming the extra when MediaPipe is missing
        if kind == "depth":
            return _depth(ctx, frames, depth_model, normalise)
        return frames_as_condition(frames, height, width)
