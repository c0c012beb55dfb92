"""Writing and reading videos, and contact sheets."""

from __future__ import annotations

import posixpath

from vdgraph.node import Input, Node, Output
from vdgraph.types import FILE, FLOAT

from vdgraph_video.ops.video_io import VideoFormat, contact_sheet, read_video, write_png, write_video
from vdgraph_video.types import FRAMES


def output_path(ctx, path: str) -> str:
    """`path` as given when absolute or a URL, else under the run's output folder."""
    if "://" in path or posixpath.isabs(path) or not ctx.output_dir:
        return path
    base = ctx.output_dir.rstrip("/")
    return f"{base}/{path}" if "://" in base else posixpath.join(base, path)


def input_path(ctx, path: str) -> str:
    """`path` as given when absolute or a URL, else relative to the workflow's folder (or the working dir)."""
    if "://" in path or posixpath.isabs(path) or not ctx.workflow_dir:
        return path
    import os

    candidate = posixpath.join(ctx.workflow_dir, path)
    return path if os.path.exists(path) else candidate


class WriteVideo(Node):
    """Writes frames as an mp4 (H.264, yuv420p; odd sides padded by one replicated row/column), a webm (VP9),
    an animated GIF (adaptive palette, 1/100 s timing) or a folder of lossless PNG frames, at `fps`.

    Format "auto" follows the extension (no extension: PNG folder). The file is written under a temporary name
    and renamed, through fsspec for remote targets; relative paths land in the run's output folder. A side
    effect, so it runs every time (upstream values come from the cache): changing only fps re-encodes, no more.
    """

    id = "video.write_video"
    version = 1
    category = "output"
    side_effects = True
    inputs = [
        Input("frames", FRAMES, doc="(F, H, W, 3) float in [0, 1]"),
        Input("path", str, default="video.mp4", doc="target file or folder (local path or fsspec URL)"),
        Input("format", VideoFormat, default="auto", doc="auto (from the extension), mp4, webm, gif or png"),
        Input("fps", float, default=8.0, gt=0.0, le=240.0, doc="frames per second"),
        Input("quality", int, default=18, ge=0, le=63, doc="constant rate factor for mp4/webm (lower is better)"),
    ]
    outputs = [Output("file", FILE, doc="the written path")]

    def run(self, ctx, frames, path, format, fps, quality):
        return write_video(frames, output_path(ctx, path), format, fps, quality)


class ContactSheet(Node):
    """Writes all frames in one PNG grid (row-major, white gaps) to look at a result at a glance."""

    id = "video.contact_sheet"
    version = 1
    category = "output"
    side_effects = True
    inputs = [
        Input("frames", FRAMES, doc="(F, H, W, 3) float in [0, 1]"),
        Input("path", str, default="contact_sheet.png", doc="target PNG (local path or fsspec URL)"),
        Input("columns", int, default=0, ge=0, doc="frames per row (0: about square)"),
    ]
    outputs = [Output("file", FILE, doc="the written path")]

    def run(self, ctx, frames, path, columns):
        return write_png(contact_sheet(frames, columns), output_path(ctx, path))


class ReadVideo(Node):
    """Reads a video file (anything PyAV decodes, GIF via Pillow) or a PNG-frame folder into frames
    (F, H, W, 3) float in [0, 1]. Optional resampling to fps (nearest source frame per tick), then start,
    stride and max_frames; resize to height x width (one side 0: keep the aspect ratio; both 0: as is)."""

    id = "video.read_video"
    version = 1
    category = "input"
    inputs = [
        Input("path", str, doc="a video file or PNG-frame folder (local or fsspec URL)"),
        Input("fps", float, default=0.0, ge=0.0, doc="resample to this rate (0: keep the source rate)"),
        Input("start", int, default=0, ge=0, doc="frames to skip at the start"),
        Input("stride", int, default=1, ge=1, doc="take every stride-th frame"),
        Input("max_frames", int, default=0, ge=0, doc="stop after this many frames (0: all)"),
        Input("height", int, default=0, ge=0, doc="resize to this height (0: keep / follow the width)"),
        Input("width", int, default=0, ge=0, doc="resize to this width (0: keep / follow the height)"),
    ]
    outputs = [
        Output("frames", FRAMES, doc="(F, H, W, 3) float in [0, 1]"),
        Output("fps", FLOAT, doc="frame rate of the selected frames"),
    ]

    def run(self, ctx, path, fps, start, stride, max_frames, height, width):
        frames, rate = read_video(input_path(ctx, path), start, stride, max_frames, fps, height, width)
        return {"frames": frames, "fps": float(rate)}
