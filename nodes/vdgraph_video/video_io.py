"""Writing and reading videos, and contact sheets."""

from __future__ import annotations

import contextlib
import os
import posixpath

from vdgraph.node import Input, Invalid, Node, Output
from vdgraph.recipe import RECIPE_KEY, SIDECAR_SUFFIX, recipe_of, to_text, write_sidecar
from vdgraph.types import FILE, FLOAT

from vdgraph_video.ops.video_io import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_TOTAL_PIXELS,
    ImageFormat,
    VideoFormat,
    contact_sheet,
    encode_png,
    encode_video,
    format_for,
    labelled_sheet,
    local_copy,
    read_video,
    to_uint8,
    write_bytes,
    write_image_frames,
    write_png_frames,
)
from vdgraph_video.facts import FramesFacts
from vdgraph_video.types import FRAMES


def input_path(ctx, path: str) -> str:
    """`path` by the engine's one rule for relative input paths (RunContext.input_path); empty is an error."""
    if not path.strip():
        raise ValueError("port 'path': the video path is empty; name a video file or a PNG-frame folder")
    return ctx.input_path(path)


class WriteVideo(Node):
    """Writes frames as an mp4 (H.264, yuv420p; odd sides padded by one replicated row/column), a webm (VP9),
    an animated GIF (adaptive palette, 1/100 s timing) or a folder of lossless PNG frames, at `fps`.

    Format "auto" follows the extension (no extension: PNG folder). The target is the output folder's to give
    (`path` may hold {counter}, {workflow} and workflow inputs such as {seed}): it stays inside the output folder,
    and an existing file or folder is never replaced without --overwrite (a counter is added instead, as in
    clip_00001.mp4). The file is written under a temporary name and renamed, through fsspec for remote targets.
    A side effect, so it runs every time (upstream values come from the cache): changing only fps re-encodes.

    The file carries its recipe (the workflow, its inputs, the seeds, the versions; see vdgraph.recipe): an mp4 or
    webm in a container tag, a PNG folder in recipe.json inside it, a GIF in a `.recipe.json` file beside it.
    `audio_from` names a video (or audio) file whose sound goes into an mp4 or webm, cut to the clip's duration.
    """

    id = "video.write_video"
    version = 1
    category = "output"
    side_effects = True
    inputs = [
        Input("frames", FRAMES, doc="(F, H, W, 3) float in [0, 1], or (B, F, H, W, 3): one file per video"),
        Input("path", str, default="video.mp4", output_path=True, doc="target file or folder, inside the output folder"),
        Input("format", VideoFormat, default="auto", doc="auto (from the extension), mp4, webm, gif or png"),
        Input("fps", float, default=8.0, gt=0.0, le=240.0, doc="frames per second"),
        Input("quality", int, default=18, ge=0, le=63, doc="constant rate factor for mp4/webm (lower is better)"),
        Input("audio_from", str, optional=True, reads_file=True,
              doc="a video or audio file whose first audio stream goes into the mp4/webm, cut to its duration"),
    ]
    outputs = [Output("file", FILE, doc="the written path (of the first video, for a batch)"),
               Output("files", list[str], doc="every written path: one per video of a batch")]

    @classmethod
    def check(cls, known):
        path, fmt, audio_from = known.take("path", "format", "audio_from")
        if audio_from is not None and not audio_from.strip():
            yield Invalid("audio_from", "the audio_from path is empty", "name a video file with sound, or leave "
                                                                        "audio_from out")
        if path is None or "{" in posixpath.splitext(path.rstrip("/"))[1]:
            return  # a field in the extension is filled in at run time
        try:
            concrete = format_for(path, fmt)
        except ValueError as exc:
            yield Invalid("path", str(exc), "end the name in .mp4, .webm or .gif, give no extension for a folder of "
                                            "PNG frames, or set format")
            return
        if audio_from is not None and concrete not in ("mp4", "webm"):
            yield Invalid("audio_from", f"a {concrete} output has no sound track, so audio_from cannot be used",
                          "write an .mp4 or .webm, or leave audio_from out")

    def run(self, ctx, frames, path, format, fps, quality, audio_from=None):
        if frames.ndim == 5:  # a batch of videos (B, F, H, W, 3): one file each, named path_b0, path_b1, ...
            files = [self._write(ctx, clip, batch_item_name(path, b), format, fps, quality, audio_from)
                     for b, clip in enumerate(frames)]
        else:
            files = [self._write(ctx, frames, path, format, fps, quality, audio_from)]
        return {"file": files[0], "files": files}

    def _write(self, ctx, frames, path, format, fps, quality, audio_from):
        fmt = format_for(path, format)
        recipe = recipe_of(ctx)
        if fmt == "png":
            images = to_uint8(frames)
            if audio_from is not None:
                raise ValueError("port 'audio_from': a folder of PNG frames has no sound track; write .mp4 or .webm")
            with ctx.outputs.claim(path, port="path", folder=True) as target:
                return write_png_frames(images, target, recipe=to_text(recipe))
        if audio_from is not None and fmt not in ("mp4", "webm"):
            raise ValueError(f"port 'audio_from': a {fmt} file has no sound track; write .mp4 or .webm")
        audio = input_path(ctx, audio_from) if audio_from is not None else None
        metadata = {RECIPE_KEY: to_text(recipe)} if fmt in ("mp4", "webm") else None
        with local_copy(audio) if audio is not None else contextlib.nullcontext() as local_audio:
            # encoded before claiming, so the reserved name is soon filled
            data = encode_video(frames, fmt, fps, quality, metadata=metadata, audio_from=local_audio)
        with ctx.outputs.claim(path, port="path", companion="" if metadata else SIDECAR_SUFFIX) as target:
            written = write_bytes(data, target)
        if metadata is None:  # a GIF keeps no text that players keep: the recipe goes beside it
            write_sidecar(ctx, written, recipe)
        return written


def batch_item_name(path: str, index: int) -> str:
    """The target of video `index` of a batch: `clip.mp4` -> `clip_b0.mp4`, a PNG folder `frames` -> `frames_b0`
    (the suffix goes before the extension, so counters and formats work as for one video)."""
    head, sep, tail = path.rstrip("/").rpartition("/")
    stem, ext = posixpath.splitext(tail)
    return f"{head}{sep}{stem}_b{index}{ext}"


class WriteImages(Node):
    """Writes frames as an image sequence: `frame_00000.png`, `frame_00001.png`, ... in the folder `path` (lossless
    PNG, or JPEG / WebP at `quality`), with the run's recipe in recipe.json beside them. The folder follows the
    output folder's rules (inside it; never replaced without --overwrite, a counter is added instead) and is filled
    under a temporary name, then renamed. A batch (B, F, H, W, 3) writes one folder per video (path_b0, ...)."""

    id = "video.write_images"
    version = 1
    category = "output"
    side_effects = True
    inputs = [
        Input("frames", FRAMES, doc="(F, H, W, 3) float in [0, 1], or (B, F, H, W, 3): one folder per video"),
        Input("path", str, default="frames", output_path=True, doc="target folder, inside the output folder"),
        Input("format", ImageFormat, default="png", doc="png (lossless), jpg or webp"),
        Input("quality", int, default=95, ge=1, le=100, doc="JPEG / WebP quality (ignored for png)"),
    ]
    outputs = [Output("folder", FILE, doc="the written folder (of the first video, for a batch)"),
               Output("folders", list[str], doc="every written folder: one per video of a batch")]

    def run(self, ctx, frames, path, format, quality):
        clips = list(frames) if frames.ndim == 5 else [frames]
        recipe = to_text(recipe_of(ctx))
        folders = []
        for b, clip in enumerate(clips):
            name = batch_item_name(path, b) if frames.ndim == 5 else path
            images = to_uint8(clip)
            with ctx.outputs.claim(name, port="path", folder=True) as target:
                folders.append(write_image_frames(images, target, recipe, format, quality))
        return {"folder": folders[0], "folders": folders}


class ContactSheet(Node):
    """Writes all frames in one PNG grid (row-major, white gaps; a batch of videos gets a row per video) to look
    at a result at a glance. With `input` and/or `condition` linked (one video), the sheet is labelled rows instead,
    one frame per column: input, condition, then the output `frames` last, so a person sees at a glance whether the
    output follows its input (`columns` is then unused). The target follows the output folder's rules, as
    video.write_video's does; the PNG carries the run's recipe in an iTXt chunk `vdgraph_recipe` (`vdgraph inspect`
    prints it)."""

    id = "video.contact_sheet"
    version = 1
    category = "output"
    side_effects = True
    inputs = [
        Input("frames", FRAMES, doc="(F, H, W, 3) float in [0, 1], or (B, F, H, W, 3)"),
        Input("path", str, default="contact_sheet.png", output_path=True, doc="target PNG, inside the output folder"),
        Input("columns", int, default=0, ge=0, doc="frames per row (0: about square)"),
        Input("input", FRAMES, optional=True, doc="the input video's frames, drawn as a row labelled 'input'"),
        Input("condition", FRAMES, optional=True, doc="condition images, drawn as a row labelled 'condition'"),
    ]
    outputs = [Output("file", FILE, doc="the written path")]

    def run(self, ctx, frames, path, columns, input=None, condition=None):
        extra = [(label, rows) for label, rows in (("input", input), ("condition", condition)) if rows is not None]
        if extra:
            assert frames.ndim == 4, f"labelled rows take one video (F, H, W, 3), got frames {tuple(frames.shape)}"
            sheet = labelled_sheet([*extra, ("output", frames)])
        else:
            if frames.ndim == 5:  # a batch of videos: a row per video
                columns, frames = frames.shape[1], frames.flatten(0, 1)
            sheet = contact_sheet(frames, columns)
        data = encode_png(sheet, text={RECIPE_KEY: to_text(recipe_of(ctx))})
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
        Input("path", str, reads_file=True, doc="a video file or PNG-frame folder (local or fsspec URL)"),
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

    @classmethod
    def infer(cls, known):
        max_frames, height, width = (known.get(port) for port in ("max_frames", "height", "width"))
        if max_frames is None and not (height or width):
            return {}
        return {"frames": FramesFacts(max_count=max_frames or None).resized(height, width)}

    @classmethod
    def content_key(cls, values, workflow_dir):
        """A PNG-frame folder is keyed by the files the node reads, its *.png, not by everything under it (a
        folder named by mistake, a home folder, would be hashed whole before the run says it holds no frames)."""
        from vdgraph.filekeys import files_content

        path = values.get("path")
        local = cls.locate_file("path", path, workflow_dir) if isinstance(path, str) and path.strip() else None
        if local is not None and os.path.isdir(local):
            try:
                names = [n for n in os.listdir(local) if n.lower().endswith(".png")]  # as ops.video_io reads
            except OSError as exc:
                return {"path": [f"unreadable: {exc.strerror or exc}"]}
            return {"path": [files_content(local, names)]}
        return super().content_key(values, workflow_dir)

    def run(self, ctx, path, fps, start, stride, max_frames, height, width, max_pixels, max_total_pixels):
        frames, rate = read_video(input_path(ctx, path), start, stride, max_frames, fps, height, width, max_pixels,
                                  max_total_pixels)
        return {"frames": frames, "fps": float(rate)}
