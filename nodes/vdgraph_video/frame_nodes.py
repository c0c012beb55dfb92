"""Frame and clip utilities: join, stack, fit to the VAE's grid, cut, reverse, loop, change the frame rate; and a
seeded random state. The tensor work is in `vdgraph_video.ops.frames`."""

from __future__ import annotations

from typing import Literal

from vdgraph.node import Input, Node, Output

from vdgraph_video.frames import empty_slice_problems
from vdgraph_video.ops import frames as ops
from vdgraph_video.types import FRAMES, RNG, VAE
from vdgraph_video.values import seeded_state

_MORE = ("third", "fourth")


def _clips(first, second, third, fourth) -> list:
    named = [("first", first), ("second", second), ("third", third), ("fourth", fourth)]
    return [(name, clip) for name, clip in named if clip is not None]


class ConcatFrames(Node):
    """Joins two to four clips in time: first, then second, ... (F1 + F2 + ... frames). Every clip must have the
    first one's size (video.fit_frames brings clips to one size)."""

    id = "video.concat_frames"
    version = 1
    category = "frames"
    inputs = [
        Input("first", FRAMES, doc="(F1, H, W, 3) the leading clip"),
        Input("second", FRAMES, doc="(F2, H, W, 3) the clip that follows"),
        *[Input(name, FRAMES, optional=True, doc="a further clip (optional)") for name in _MORE],
    ]
    outputs = [Output("frames", FRAMES, doc="(F1 + F2 + ..., H, W, 3)")]

    def run(self, ctx, first, second, third, fourth):
        return ops.concat(_clips(first, second, third, fourth))


class StackFrames(Node):
    """Shows two to four clips at once, frame by frame: side by side (horizontal), one above the other (vertical)
    or in an about-square grid, with `gap` white pixels between them (for before/after comparisons). Clips of
    different lengths are cut to the shortest or held on their last frame to the longest."""

    id = "video.stack_frames"
    version = 1
    category = "frames"
    inputs = [
        Input("first", FRAMES, doc="(F, H, W, 3) the left / top clip"),
        Input("second", FRAMES, doc="(F, H, W, 3) the next clip"),
        *[Input(name, FRAMES, optional=True, doc="a further clip (optional)") for name in _MORE],
        Input("layout", ops.StackLayout, default="horizontal", doc="horizontal, vertical or grid"),
        Input("gap", int, default=0, ge=0, le=256, doc="white pixels between clips"),
        Input("length", Literal["shortest", "longest"], default="longest",
              doc="cut to the shortest clip, or hold the shorter ones on their last frame"),
    ]
    outputs = [Output("frames", FRAMES, doc="the stacked frames")]

    def run(self, ctx, first, second, third, fourth, layout, gap, length):
        return ops.stack(_clips(first, second, third, fourth), layout, gap, length)


class FitFrames(Node):
    """Brings frames to a size the model can take: height x width (0 keeps that side), each rounded down to a
    multiple of the VAE factor (from `vae` when linked, else `multiple`). crop: scale to cover, then cut the
    centre (the aspect ratio is kept); resize: stretch to the size; pad: scale to fit, then add black borders."""

    id = "video.fit_frames"
    version = 1
    category = "frames"
    inputs = [
        Input("frames", FRAMES, doc="(F, H, W, 3) float in [0, 1]"),
        Input("height", int, default=0, ge=0, le=8192, doc="target height in pixels (0: keep)"),
        Input("width", int, default=0, ge=0, le=8192, doc="target width in pixels (0: keep)"),
        Input("mode", ops.FitMode, default="crop", doc="crop (cover and cut), resize (stretch) or pad (fit, black)"),
        Input("multiple", int, default=8, ge=1, le=256, doc="round sides down to a multiple of this (the VAE factor)"),
        Input("vae", VAE, optional=True, doc="take the multiple from this VAE's factor instead"),
    ]
    outputs = [Output("frames", FRAMES, doc="(F, H', W', 3) with H', W' multiples of the factor")]

    def run(self, ctx, frames, height, width, mode, multiple, vae):
        factor = vae.scale_factor if vae is not None else multiple
        return ops.fit(frames, height, width, factor, mode)


class SelectFrames(Node):
    """Frames start, start + step, ... (before end) of a clip; indices count like Python slices (negative from
    the end), so a range and a stride cut a clip, and step > 1 drops frames."""

    id = "video.select_frames"
    version = 1
    category = "frames"
    inputs = [
        Input("frames", FRAMES, doc="(F, H, W, 3)"),
        Input("start", int, default=0, doc="first frame (negative: from the end)"),
        Input("end", int, optional=True, default=None, doc="frame to stop before; empty: to the end"),
        Input("step", int, default=1, ge=1, doc="take every step-th frame"),
    ]
    outputs = [Output("frames", FRAMES, doc="the selected frames")]

    @classmethod
    def check(cls, known):
        yield from empty_slice_problems(known)

    def run(self, ctx, frames, start, end, step):
        return ops.select(frames, start, end, step)


class ReverseFrames(Node):
    """The clip played backwards."""

    id = "video.reverse_frames"
    version = 1
    category = "frames"
    inputs = [Input("frames", FRAMES, doc="(F, H, W, 3)")]
    outputs = [Output("frames", FRAMES, doc="the frames in reverse order")]

    def run(self, ctx, frames):
        return frames.flip(0).contiguous()


class LoopFrames(Node):
    """The clip repeated `times` times: "loop" plays it again from the start, "pingpong" forwards then backwards
    (its end frames are not shown twice in a row, so a ping-pong of F frames lasts 2F - 2)."""

    id = "video.loop_frames"
    version = 1
    category = "frames"
    inputs = [
        Input("frames", FRAMES, doc="(F, H, W, 3)"),
        Input("mode", ops.LoopMode, default="loop", doc="loop or pingpong"),
        Input("times", int, default=2, ge=1, le=1000, doc="how many times the clip (or the ping-pong) plays"),
    ]
    outputs = [Output("frames", FRAMES, doc="the looped frames")]

    def run(self, ctx, frames, mode, times):
        return ops.loop(frames, mode, times)


class ChangeFrameRate(Node):
    """The clip at another frame rate over the same duration (round(F x new_fps / fps) frames). "repeat" shows the
    latest source frame at each new tick (frames repeated or dropped); "flow" makes in-between frames by warping
    the two source frames around each tick along their optical flow and blending them (OpenCV DIS flow, no
    weights: the motion-compensated interpolation of video.interleave_frames' "flow"), so slow motion stays
    smooth."""

    id = "video.change_fps"
    version = 1
    category = "frames"
    inputs = [
        Input("frames", FRAMES, doc="(F, H, W, 3)"),
        Input("fps", float, gt=0.0, le=1000.0, doc="the clip's frame rate (e.g. video.read_video's fps)"),
        Input("new_fps", float, gt=0.0, le=1000.0, doc="the frame rate wanted"),
        Input("method", ops.Retime, default="repeat", doc="repeat (nearest earlier frame) or flow (interpolate)"),
    ]
    outputs = [Output("frames", FRAMES, doc="the retimed frames"), Output("fps", float, doc="new_fps")]

    def run(self, ctx, frames, fps, new_fps, method):
        return {"frames": ops.retime(frames, fps, new_fps, method), "fps": new_fps}


class SeededRng(Node):
    """A random state seeded with `seed`: the state of a CPU torch.Generator after manual_seed(seed), for any node
    with an `rng` input (samplers that draw, re-noising), without borrowing one from video.noise."""

    id = "video.rng"
    version = 1
    category = "sampling"
    inputs = [Input("seed", int, default=0, ge=0, le=2**64 - 1, doc="seed of the CPU generator")]
    outputs = [Output("rng", RNG, doc="the seeded random state")]

    def run(self, ctx, seed):
        return seeded_state(seed)


NODES = [ConcatFrames, StackFrames, FitFrames, SelectFrames, ReverseFrames, LoopFrames, ChangeFrameRate, SeededRng]
