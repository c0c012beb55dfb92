"""Writing and reading videos, and contact sheets."""

from __future__ import annotations

import posixpath

from vdgraph.node import Input, Invalid, Node, Output
from vdgraph.types import FILE, FLOAT

from vdgraph_video.ops.video_io import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_TOTAL_PIXELS,
    VideoFormat,
    contact_sheet,
    encode_png,
    encode_video,
    format_for,
    labelled_sheet,
    read_video,
    to_uint8,
    write_bytes,
    write_png_frames,
)
from vdgraph_video.types import FRAMES


def input_path(ctx, path: str) -> str:
    """`path` as given when absolute or a URL, else relative to the workflow's folder (or the working dir)."""
    if not path.strip():
        raise ValueError("port 'path': the video path is empty; name a video file or a PNG-frame folder")
    if "://" in path or posixpath.isabs(path) or not ctx.workflow_dir:
        return path
    import os

    candidate = posixpath.join(ctx.workflow_dir, path)
    return path if os.path.exists(path) else candidate


class WriteVideo(Node):
    """Writes frames as an mp4 (H.264, yuv420p; odd sides padded by one replicated row/column), a webm (VP9),
    an animated GIF (adaptive palette, 1/100 s timing) or a folder of lossless PNG frames, at `fps`.

    Format "auto" follows the extension (no extension: PNG folder). The target is the output folder's to give
    (`path` may hold {counter}, {workflow} and workflow inputs such as {seed}): it stays inside the output folder,
    and an existing file or folder is never replaced without --overwrite (a counter is added instead, as in
    clip_00001.mp4). The file is written under a temporary name and renamed, through fsspec for remote targets.
    A side effect, so it runs every time (upstream values come from the cache): changing only fps re-encodes.
    """

    id = "video.write_video"
    version = 1
    category = "output"
    side_effects = True
    inputs = [
        Input("frames", FRAMES, doc="(F, H, W, 3) float in [0, 1]"),
        Input("path", str, default="video.mp4", output_path=True, doc="target file or folder, inside the output folder"),
        Input("format", VideoFormat, default="auto", doc="auto (from the extension), mp4, webm, gif or png"),
        Input("fps", float, default=8.0, gt=0.0, le=240.0, doc="frames per second"),
        Input("quality", int, default=18, ge=0, le=63, doc="constant rate factor for mp4/webm (lower is better)"),
    ]
    outputs = [Output("file", FILE, doc="the written path")]

    @classmethod
    def check(cls, known):
        path, fmt = known.take("path", "format")
        if path is None or "{" in posixpath.splitext(path.rstrip("/"))[1]:
            return  # a field in the extension is filled in at run time
        try:
            format_for(path, fmt)
        except ValueError as exc:
            yield Invalid("path", str(exc), "end the name in .mp4, .webm or .gif, give no extension for a folder of "
                                            "PNG frames, or set format")

    def run(self, ctx, frames, path, format, fps, quality):
        fmt = format_for(path, format)
        if fmt == "png":
            images = to_uint8(frames)
            with ctx.outputs.claim(path, port="path", folder=True) as target:
                return write_png_frames(images, target)
        data = encode_video(frames, fmt, fps, quality)  # before claiming, so the reserved name is soon filled
        with ctx.outputs.claim(path, port="path") as target:
            return write_bytes(data, target)


class ContactSheet(Node):
    """Writes all frames in one PNG grid (row-major, white gaps) to look at a result at a glance. The target
    follows the output folder's rules, as video.write_video's does. With `input` and/or `condition` linked, the
    sheet is labelled rows instead, one frame per column: input, condition, then the output `frames` last, so a
    person sees at a glance whether the output follows its input (`columns` is then unused)."""

    id = "video.contact_sheet"
    version = 1
    category = "output"
    side_effects = True
    inputs = [
        Input("frames", FRAMES, doc="(F, H, W, 3) float in [0, 1]"),
        Input("path", str, default="contact_sheet.png", output_path=True, doc="target PNG, inside the output folder"),
        Input("columns", int, default=0, ge=0, doc="frames per row (0: about square)"),
        Input("input", FRAMES, optional=True, doc="the input video's frames, drawn as a row labelled 'input'"),
        Input("condition", FRAMES, optional=True, doc="condition images, drawn as a row labelled 'condition'"),
    ]
    outputs = [Output("file", FILE, doc="the written path")]

    def run(self, ctx, frames, path, columns, input=None, condition=None):
        extra = [(label, rows) for label, rows in (("input", input), ("condition", condition)) if rows is not None]
        sheet = labelled_sheet([*extra, ("output", frames)]) if extra else contact_sheet(frames, columns)
        data = encode_png(sheet)
        with ctx.outputs.claim(path, port="path") as target:
            return write_bytes(data, target)


class ReadVideo(Node):
    """Reads a video file (anything PyAV decodes, GIF via Pillow) or a PNG-frame folder into frames
    (F, H, W, 3) float in [0, 1]. Optional resampling to fps (nearest source frame per tick), then start,
    stride and max_frames; resize to height x width (one side 0: keep the aspect ratio; both 0: as is).

    Bounded: frames are decoded one at a time, only the selected ones are converted, and decoding stops at
    max_frames; a source frame over max_pixels or a selection over max_total_pixels is refused before it is
    allocated. Only regular files and folders are read (a FIFO or a device is refused, never waited on)."""

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
        Input("max_pixels", int, default=DEFAULT_MAX_PIXELS, ge=1,
              doc="the largest source frame to decode, width x height (default: one 4K UHD frame)"),
        Input("max_total_pixels", int, default=DEFAULT_MAX_TOTAL_PIXELS, ge=1,
              doc="the most pixels to return, summed over the selected frames (default 2**28: 3.2 GB as floats)"),
    ]
    outputs = [
        Output("frames", FRAMES, doc="(F, H, W, 3) float in [0, 1]"),
        Output("fps", FLOAT, doc="frame rate of the selected frames"),
    ]

    @classmethod
    def check(cls, known):
        (path,) = known.take("path")
        if path is not None and not path.strip():
            yield Invalid("path", "the video path is empty", "name a video file or a PNG-frame folder")

    def run(self, ctx, path, fps, start, stride, max_frames, height, width, max_pixels, max_total_pixels):
        frames, rate = read_video(input_path(ctx, path), start, stride, max_frames, fps, height, width, max_pixels,
                                  max_total_pixels)
        return {"frames": frames, "fps": float(rate)}
