"""Video files <-> frames (F, H, W, 3) float in [0, 1], with PyAV; contact sheets with Pillow.

Writes never leave a half-written target: files go through `vdgraph.io.atomic_write` (temporary name, then
rename, through fsspec for remote targets); PNG folders are filled under a temporary name and renamed onto the
target, which must be absent or an empty folder (nothing is deleted to make room). Which target a node may
write is the output folder's decision (`ctx.outputs.claim`), not these functions'.

Reads are lazy and bounded: frames are decoded one at a time and only the selected ones are converted to arrays;
decoding stops once `max_frames` are taken; a frame larger than `max_pixels`, or a selection holding more than
`max_total_pixels`, is refused before it is allocated; only regular files and folders are opened (a FIFO or a
device would block or never end).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import math
import os
import posixpath
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from fractions import Fraction
from typing import Any, Literal

import fsspec
import numpy as np
import torch
import torch.nn.functional as F
from fsspec.implementations.local import LocalFileSystem

from vdgraph.io import atomic_write, filesystem, naming_the_path, temporary_name

VideoFormat = Literal["auto", "mp4", "webm", "gif", "png"]
EXTENSIONS = {".mp4": "mp4", ".m4v": "mp4", ".webm": "webm", ".gif": "gif"}


def format_for(path: str, fmt: VideoFormat) -> str:
    """The concrete format: `fmt` unless "auto", then from the extension (no extension: a PNG-frame folder)."""
    if fmt != "auto":
        return fmt
    ext = posixpath.splitext(path.rstrip("/"))[1].lower()
    if ext in EXTENSIONS:
        return EXTENSIONS[ext]
    if ext in ("", ".png", ".frames"):
        return "png"
    raise ValueError(f"cannot tell the video format from {path!r}: use .mp4, .webm, .gif or a folder name, "
                     "or set the format")


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(F, H, W, 3) float in [0, 1] -> uint8 numpy, rounded."""
    assert frames.ndim == 4 and frames.shape[-1] == 3, f"frames must be (F, H, W, 3), got {tuple(frames.shape)}"
    return (frames.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _pad_even(images: np.ndarray) -> np.ndarray:
    """yuv420p needs even sides: replicate the last row/column where one is odd."""
    _, h, w, _ = images.shape
    return np.pad(images, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge") if h % 2 or w % 2 else images


def encode_video(frames: torch.Tensor, fmt: str, fps: float, quality: int, metadata: Mapping[str, str] | None = None,
                 audio_from: str | None = None) -> bytes:
    """Encoded bytes of an mp4 (H.264, yuv420p), webm (VP9) or animated GIF.

    quality is the constant-rate factor of H.264/VP9 (lower is better; 0 is lossless for H.264 in yuv420p terms).
    GIF goes through Pillow with an adaptive palette per frame (PyAV's GIF encoder only offers a fixed 3-3-2
    palette), at 1/100 s delay resolution. `metadata` becomes container tags of an mp4 or webm (mp4 keeps any
    key through ffmpeg's use_metadata_tags; WebM spells keys in capitals). `audio_from` is a local media file
    whose first audio stream is added to an mp4 or webm, cut to the video's duration (see `_add_audio`).
    """
    images = to_uint8(frames)
    if fmt == "gif":
        from PIL import Image

        pictures = [Image.fromarray(a).convert("P", palette=Image.Palette.ADAPTIVE, colors=256) for a in images]
        buffer = io.BytesIO()
        pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], loop=0,
                         duration=max(10, round(1000 / fps)), disposal=1)
        return buffer.getvalue()
    import av

    codec, container_format = {"mp4": ("libx264", "mp4"), "webm": ("libvpx-vp9", "webm")}[fmt]
    images = _pad_even(images)
    buffer = io.BytesIO()
    options = {"movflags": "use_metadata_tags"} if fmt == "mp4" and metadata else {}
    with av.open(buffer, "w", format=container_format, options=options) as container, \
            _audio_source(audio_from) as audio:
        for key, value in (metadata or {}).items():
            container.metadata[key] = value
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        audio_stream, copying = _add_audio_stream(container, audio, fmt) if audio is not None else (None, False)
        stream.width, stream.height = images.shape[2], images.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(quality)} if fmt == "mp4" else {"crf": str(quality), "b:v": "0"}
        for image in images:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio is not None:
            _add_audio(container, audio, audio_stream, copying, len(images) / fps)
    return buffer.getvalue()


# Audio codecs each container takes as they are (copied packet by packet); any other is re-encoded.
AUDIO_COPY = {"mp4": ("aac", "mp3"), "webm": ("opus", "vorbis")}
AUDIO_ENCODER = {"mp4": "aac", "webm": "libopus"}


@contextlib.contextmanager
def _audio_source(path: str | None) -> Iterator[Any]:
    """The opened container of `path` (None: no audio wanted); a file without an audio stream is an error."""
    if path is None:
        yield None
        return
    import av

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no such file to take audio from", path) from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"audio_from {path!r} is not a regular file")
    try:
        source = av.open(path)
    except av.FFmpegError as exc:
        raise ValueError(f"cannot read audio_from {path!r} as a media file: {exc}") from exc
    with source:
        if not source.streams.audio:
            kinds = sorted({s.type for s in source.streams}) or ["no streams"]
            raise ValueError(f"audio_from {path!r} has no audio stream (it holds {' and '.join(kinds)}); name a "
                             "video or audio file with sound")
        yield source


def _add_audio_stream(container: Any, source: Any, fmt: str) -> tuple[Any, bool]:
    """(the output audio stream, whether it copies): a copy of the source's stream when the container takes its
    codec, else an encoder."""
    audio = source.streams.audio[0]
    if audio.codec_context.name in AUDIO_COPY[fmt]:
        return container.add_stream_from_template(audio), True
    rate = 48000 if fmt == "webm" else (audio.codec_context.sample_rate or 48000)  # Opus runs at 48 kHz
    stream = container.add_stream(AUDIO_ENCODER[fmt], rate=rate)
    stream.layout = "stereo" if audio.codec_context.channels > 1 else "mono"
    return stream, False


def _add_audio(container: Any, source: Any, stream: Any, copying: bool, seconds: float) -> None:
    """Mux the source's first audio stream into `stream`, up to `seconds` (the video's duration).

    Copied (remuxed) when the container takes the codec: whole packets whose start is before the end, so the
    sound ends within one packet of the video (about 21 ms for AAC at 48 kHz). Re-encoded otherwise: decoded
    frames are cut at the exact sample where the video ends.
    """
    audio = source.streams.audio[0]
    if copying:
        for packet in source.demux(audio):
            if packet.dts is None:
                continue  # the demuxer's flush packet
            if packet.pts is not None and float(packet.pts * packet.time_base) >= seconds:
                break
            packet.stream = stream
            container.mux(packet)
        return
    import av

    resampler = av.AudioResampler(format=stream.codec_context.format or "fltp", layout=stream.layout,
                                  rate=stream.codec_context.sample_rate)
    end = round(seconds * stream.codec_context.sample_rate)  # in output samples
    written = 0
    for frame in source.decode(audio):
        for out in resampler.resample(frame):
            keep = min(out.samples, end - written)
            if keep <= 0:
                break
            if keep < out.samples:
                channels = 1 if out.format.is_planar else len(out.layout.channels)
                array = out.to_ndarray()[:, :keep * channels]  # (channels, samples) planar, (1, samples*ch) packed
                cut = av.AudioFrame.from_ndarray(array, format=out.format.name, layout=out.layout.name)
                cut.sample_rate = out.sample_rate
                out = cut
            out.pts = written
            written += out.samples
            for packet in stream.encode(out):
                container.mux(packet)
        if written >= end:
            break
    for packet in stream.encode(None):
        container.mux(packet)


@contextlib.contextmanager
def atomic_folder(url_or_path: str) -> Iterator[str]:
    """Yield a local folder to fill; on success it is renamed (uploaded, for remote) onto the target.

    The target must be absent or an empty folder (the reservation `OutputFolder.claim` makes); a folder with
    anything in it is never replaced here, so nothing is deleted to make room.
    """
    fs, path = filesystem(url_or_path)  # a local path as written, as the output folder reserved it
    path = path.rstrip("/")
    local = isinstance(fs, LocalFileSystem)
    with naming_the_path(url_or_path):
        staging = temporary_name(path) if local else tempfile.mkdtemp(prefix="vdgraph-frames-")
        if local:
            os.makedirs(staging)
        try:
            yield staging
            if local:
                os.replace(staging, path)  # onto an empty folder at most: a full one raises ENOTEMPTY
            else:
                if fs.exists(path) and fs.ls(path, detail=False):
                    raise FileExistsError(errno.EEXIST, "a folder with files is already there", url_or_path)
                remote_tmp = temporary_name(path)
                fs.put(staging, remote_tmp, recursive=True)
                fs.mv(remote_tmp, path, recursive=True)
        finally:
            if os.path.isdir(staging):
                shutil.rmtree(staging, ignore_errors=True)  # ours: created above


def write_png_frames(images: np.ndarray, path: str, recipe: str | None = None) -> str:
    """(F, H, W, 3) uint8 frames as `frame_00000.png` ... in the folder `path` (filled, then renamed); `recipe`
    (JSON text) is written beside them as recipe.json."""
    return write_image_frames(images, path, recipe)


ImageFormat = Literal["png", "jpg", "webp"]


def write_image_frames(images: np.ndarray, path: str, recipe: str | None = None, image_format: ImageFormat = "png",
                       quality: int = 95) -> str:
    """(F, H, W, 3) uint8 frames as an image sequence `frame_00000.<ext>` ... in the folder `path` (filled under a
    temporary name, then renamed): lossless PNG, or JPEG / WebP at `quality` (1-100); `recipe` (JSON text) is
    written beside them as recipe.json."""
    from PIL import Image

    assert image_format in ("png", "jpg", "webp"), f"unknown image format {image_format!r}"
    options = {} if image_format == "png" else {"quality": int(quality)}
    with atomic_folder(path) as folder:
        for i, image in enumerate(images):
            Image.fromarray(image).save(os.path.join(folder, f"frame_{i:05d}.{image_format}"),
                                        format={"jpg": "JPEG"}.get(image_format, image_format.upper()), **options)
        if recipe is not None:
            with open(os.path.join(folder, "recipe.json"), "w", encoding="utf-8") as handle:
                handle.write(recipe + "\n")
    return path


def write_bytes(data: bytes, path: str) -> str:
    with atomic_write(path, "wb") as handle:
        handle.write(data)
    return path


def write_video(frames: torch.Tensor, path: str, fmt: VideoFormat = "auto", fps: float = 8.0, quality: int = 18) -> str:
    """Write frames to `path` (local or fsspec URL) as mp4, webm, gif or a folder of PNG frames; returns `path`."""
    assert fps > 0, f"fps must be > 0, got {fps}"
    fmt = format_for(path, fmt)
    if fmt == "png":
        return write_png_frames(to_uint8(frames), path)
    return write_bytes(encode_video(frames, fmt, fps, quality), path)


def contact_sheet(frames: torch.Tensor, columns: int = 0, gap: int = 2) -> np.ndarray:
    """All frames in a grid (row-major), `gap` pixels of white between them: (rows*H + gaps, cols*W + gaps, 3) uint8."""
    images = to_uint8(frames)
    n, h, w, _ = images.shape
    columns = columns if columns > 0 else math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    sheet = np.full((rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, 3), 255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        sheet[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = image
    return sheet


LABEL_WIDTH = 64
"""Width in pixels of the label column of a labelled contact sheet (fits "condition" in Pillow's default font)."""


def labelled_sheet(rows: list[tuple[str, torch.Tensor]], gap: int = 2) -> np.ndarray:
    """One row per (label, frames (F, H, W, 3)), frames left to right, the label written in a white column on the
    left, `gap` pixels of white between rows and frames: (R*H + gaps, LABEL_WIDTH + cols*(W + gap), 3) uint8.

    Rows are drawn at the size of the last row's frames (the output; others are resized to it) and a row with
    fewer frames ends early (white). Why: input | condition | output stacked frame over frame shows at a glance
    whether the output follows its condition.
    """
    from PIL import Image, ImageDraw

    assert rows, "a labelled sheet needs at least one row"
    _, h, w, _ = rows[-1][1].shape
    columns = max(frames.shape[0] for _, frames in rows)
    sheet = np.full((len(rows) * h + (len(rows) - 1) * gap, LABEL_WIDTH + columns * (w + gap), 3), 255, np.uint8)
    for r, (_, frames) in enumerate(rows):
        assert frames.ndim == 4 and frames.shape[-1] == 3, f"row {r} must be (F, H, W, 3), got {tuple(frames.shape)}"
        images = to_uint8(resize_frames(frames, h, w))  # (F, h, w, 3)
        top = r * (h + gap)
        for c, image in enumerate(images):
            left = LABEL_WIDTH + c * (w + gap)
            sheet[top:top + h, left:left + w] = image
    canvas = Image.fromarray(sheet)
    draw = ImageDraw.Draw(canvas)
    for r, (label, _) in enumerate(rows):
        draw.text((2, r * (h + gap) + h // 2 - 5), label, fill=(0, 0, 0))
    return np.asarray(canvas).copy()


def encode_png(image: np.ndarray, text: Mapping[str, str] | None = None) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 image; `text` goes into compressed iTXt chunks (UTF-8, any length)."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = None
    if text:
        info = PngInfo()
        for key, value in text.items():
            info.add_itxt(key, value, zip=True)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def write_png(image: np.ndarray, path: str) -> str:
    return write_bytes(encode_png(image), path)


@contextlib.contextmanager
def local_copy(url_or_path: str) -> Iterator[str]:
    """A local path for reading: the path itself, or a temporary download of a remote file or folder."""
    fs, path = fsspec.core.url_to_fs(url_or_path)
    if isinstance(fs, LocalFileSystem):
        yield path
        return
    tmp = tempfile.mkdtemp(prefix="vdgraph-read-")
    try:
        target = os.path.join(tmp, posixpath.basename(path.rstrip("/")) or "data")
        fs.get(path, target, recursive=fs.isdir(path))
        yield target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


DEFAULT_MAX_PIXELS = 3840 * 2160
"""The largest source frame read_video decodes by default: one 4K UHD frame (8.3 M pixels)."""
DEFAULT_MAX_TOTAL_PIXELS = 1 << 28
"""The most pixels read_video returns by default, summed over frames: 268 M, about 3.2 GB as float32 RGB."""


@dataclasses.dataclass
class _Picture:
    """One source frame, not converted yet: its size (read from the header where it can be) and its pixels."""

    size: Callable[[], tuple[int, int]]
    """(width, height)"""
    to_array: Callable[[], np.ndarray]
    """(H, W, 3) uint8"""


def read_video(path: str, start: int = 0, stride: int = 1, max_frames: int = 0, fps: float = 0.0,
               height: int = 0, width: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_total_pixels: int = DEFAULT_MAX_TOTAL_PIXELS) -> tuple[torch.Tensor, float]:
    """Frames (F, H, W, 3) float in [0, 1] and their frame rate from a video file or a PNG-frame folder.

    Selection, in order: resample to `fps` (0 keeps the source rate; otherwise the source frame nearest to each
    1/fps tick), then skip `start` frames, take every `stride`-th, stop at `max_frames` (0: all). Resize: both
    sides given -> that size; one given -> the other follows the aspect ratio (bilinear with antialiasing).

    Decoding is lazy: only selected frames become arrays, and decoding stops at `max_frames`. A source frame
    over `max_pixels` (width x height) or a selection over `max_total_pixels` is refused before it is allocated.
    """
    assert stride >= 1, f"stride must be >= 1, got {stride}"
    if not isinstance(path, str) or not path.strip():
        raise ValueError("the video path is empty: name a video file or a PNG-frame folder")
    with local_copy(path) as local, _frames_of(local, path, max_pixels) as (pictures, source_fps):
        images = _select(_resampled(pictures, source_fps, fps), start, stride, max_frames, path, max_pixels,
                         max_total_pixels)
    frames = torch.from_numpy(np.stack(images)).float() / 255  # (F, H, W, 3)
    rate = fps if fps > 0 else source_fps
    return resize_frames(frames, height, width), rate / stride


def _select(pictures: Iterable[_Picture], start: int, stride: int, max_frames: int, shown: str, max_pixels: int,
            max_total_pixels: int) -> list[np.ndarray]:
    """Arrays of the pictures at positions start, start + stride, ... (at most max_frames); the others are never
    converted, and the source is not read past the last one taken."""
    images: list[np.ndarray] = []
    first: tuple[int, int] | None = None
    seen = 0
    for position, picture in enumerate(pictures):
        seen += 1
        if position < start or (position - start) % stride:
            continue
        w, h = picture.size()
        _check_frame_size(w, h, max_pixels, shown)
        first = first or (w, h)
        if (w, h) != first:
            raise ValueError(f"{shown!r}: frame {position} is {w}x{h} but the first selected frame is "
                             f"{first[0]}x{first[1]}; the frames of one video must share a size")
        if (len(images) + 1) * w * h > max_total_pixels:
            raise ValueError(f"{shown!r}: {len(images) + 1} frames of {w}x{h} would hold more than "
                             f"max_total_pixels={max_total_pixels:,} pixels; take fewer frames (max_frames, stride, "
                             f"fps) or raise max_total_pixels")
        images.append(picture.to_array())
        if max_frames and len(images) == max_frames:
            break
    if not images:
        raise ValueError(f"{shown!r} holds no video frames" if not seen else
                         f"no frames left after start={start}, stride={stride} in {shown!r} ({seen} frames)")
    return images


def _resampled(pictures: Iterable[_Picture], source_fps: float, fps: float) -> Iterator[_Picture]:
    """The pictures at `fps`: for each 1/fps tick up to the last frame's time, the source frame nearest to it
    (repeated or skipped as the rates need); all of them, once each, when `fps` is 0."""
    if fps <= 0:
        yield from pictures
        return
    step = 1 / fps
    tick = 0
    for index, (picture, last) in enumerate(_with_last(pictures)):
        end = math.ceil((index / source_fps + 1e-9) / step) if last else math.inf  # no tick past the last frame
        while tick < end and round(tick * step * source_fps) <= index:
            yield picture
            tick += 1


def _with_last(items: Iterable[_Picture]) -> Iterator[tuple[_Picture, bool]]:
    """Each item and whether it is the last one (one item of look-ahead)."""
    iterator = iter(items)
    for current in iterator:
        for following in iterator:
            yield current, False
            current = following
        yield current, True


def _check_frame_size(width: int, height: int, max_pixels: int, shown: str) -> None:
    if width * height > max_pixels:
        raise ValueError(f"{shown!r}: frames are {width}x{height} ({width * height:,} pixels), over "
                         f"max_pixels={max_pixels:,}; raise max_pixels to read them (each frame needs "
                         f"{width * height * 3:,} bytes decoded, 4 times that as floats)")


@contextlib.contextmanager
def _frames_of(local: str, shown: str, max_pixels: int) -> Iterator[tuple[Iterator[_Picture], float]]:
    """The pictures of a local file or folder, lazily, and the source frame rate. `shown` names it in messages."""
    try:
        mode = os.stat(local).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no such video file or PNG-frame folder", shown) from None
    if stat.S_ISDIR(mode):
        source = _png_folder(local, shown)
    elif not stat.S_ISREG(mode):
        what = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise ValueError(f"{shown!r} is {what}; read_video reads only regular files and folders (a pipe or a "
                         f"device could block or never end)")
    elif local.lower().endswith(".gif"):
        source = _gif(local, shown, max_pixels)
    else:
        source = _av_video(local, shown, max_pixels)
    with source as (pictures, rate):
        try:
            yield pictures, rate
        finally:
            pictures.close()  # a decoder stopped early is released before its file is closed


@contextlib.contextmanager
def _png_folder(local: str, shown: str) -> Iterator[tuple[Iterator[_Picture], float]]:
    from PIL import Image

    names = sorted(n for n in os.listdir(local) if n.lower().endswith(".png"))

    def picture(name: str) -> _Picture:
        file = os.path.join(local, name)
        where = f"{shown.rstrip('/')}/{name}"

        def size() -> tuple[int, int]:
            if not stat.S_ISREG(os.stat(file).st_mode):
                raise ValueError(f"{where!r} is not a regular file; a PNG-frame folder holds PNG files only")
            try:
                with Image.open(file) as image:  # reads the header only
                    return image.size
            except Image.DecompressionBombError as exc:
                raise ValueError(f"{where!r}: the frame is too large to read ({exc})") from exc
            except OSError as exc:
                raise ValueError(f"{where!r} is not a readable PNG: {exc}") from exc

        def to_array() -> np.ndarray:
            with Image.open(file) as image:
                return np.asarray(image.convert("RGB"))

        return _Picture(size, to_array)

    yield (picture(name) for name in names), 8.0


@contextlib.contextmanager
def _gif(local: str, shown: str, max_pixels: int) -> Iterator[tuple[Iterator[_Picture], float]]:
    from PIL import Image, ImageSequence

    with Image.open(local) as gif:
        _check_frame_size(*gif.size, max_pixels, shown)
        duration = gif.info.get("duration", 125) or 125

        def pictures() -> Iterator[_Picture]:
            for frame in ImageSequence.Iterator(gif):
                kept = frame.copy()  # the next frame reuses `frame`: keep this one's pixels, still unconverted
                yield _Picture(lambda kept=kept: kept.size, lambda kept=kept: np.asarray(kept.convert("RGB")))

        yield pictures(), 1000.0 / duration


@contextlib.contextmanager
def _av_video(local: str, shown: str, max_pixels: int) -> Iterator[tuple[Iterator[_Picture], float]]:
    import av

    try:
        container = av.open(local)
    except av.FFmpegError as exc:
        raise ValueError(f"cannot read {shown!r} as a video: {exc}") from exc
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            holds = f"it holds only {' and '.join(kinds)}" if kinds else "it holds no streams"
            raise ValueError(f"{shown!r} has no video stream ({holds}); read_video needs a video file or a "
                             f"PNG-frame folder")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width and height:
            _check_frame_size(width, height, max_pixels, shown)  # from the header, before any frame is decoded
        rate = float(stream.average_rate or stream.guessed_rate or 8)

        def pictures() -> Iterator[_Picture]:
            try:
                for frame in container.decode(stream):
                    yield _Picture(lambda frame=frame: (frame.width, frame.height),
                                   lambda frame=frame: frame.to_ndarray(format="rgb24"))
            except av.FFmpegError as exc:
                raise ValueError(f"cannot decode {shown!r}: {exc}") from exc

        yield pictures(), rate


def resize_frames(frames: torch.Tensor, height: int = 0, width: int = 0) -> torch.Tensor:
    """(F, H, W, 3) resized to (F, height, width, 3); 0 for one side keeps the aspect ratio, 0 for both is a no-op."""
    _, h, w, _ = frames.shape
    if height <= 0 and width <= 0:
        return frames
    height = height if height > 0 else max(1, round(h * width / w))
    width = width if width > 0 else max(1, round(w * height / h))
    if (height, width) == (h, w):
        return frames
    x = frames.permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1).permute(0, 2, 3, 1).contiguous()
