"""Video files <-> frames (F, H, W, 3) float in [0, 1], with PyAV; contact sheets with Pillow.

Writes never leave a half-written target: files go through `vdgraph.io.atomic_write` (temporary name, then
rename, through fsspec for remote targets); PNG folders are filled under a temporary name and renamed onto the
target, which must be absent or an empty folder (nothing is deleted to make room). Which target a node may
write is the output folder's decision (`ctx.outputs.claim`), not these functions'.
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from typing import Literal

import fsspec
import numpy as np
import torch
import torch.nn.functional as F
from fsspec.implementations.local import LocalFileSystem

from vdgraph.io import atomic_write, naming_the_path, temporary_name

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


def encode_video(frames: torch.Tensor, fmt: str, fps: float, quality: int) -> bytes:
    """Encoded bytes of an mp4 (H.264, yuv420p), webm (VP9) or animated GIF.

    quality is the constant-rate factor of H.264/VP9 (lower is better; 0 is lossless for H.264 in yuv420p terms).
    GIF goes through Pillow with an adaptive palette per frame (PyAV's GIF encoder only offers a fixed 3-3-2
    palette), at 1/100 s delay resolution.
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
    with av.open(buffer, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = images.shape[2], images.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(quality)} if fmt == "mp4" else {"crf": str(quality), "b:v": "0"}
        for image in images:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


@contextlib.contextmanager
def atomic_folder(url_or_path: str) -> Iterator[str]:
    """Yield a local folder to fill; on success it is renamed (uploaded, for remote) onto the target.

    The target must be absent or an empty folder (the reservation `OutputFolder.claim` makes); a folder with
    anything in it is never replaced here, so nothing is deleted to make room.
    """
    fs, path = fsspec.core.url_to_fs(url_or_path)
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


def write_png_frames(images: np.ndarray, path: str) -> str:
    """(F, H, W, 3) uint8 frames as `frame_00000.png` ... in the folder `path` (filled, then renamed)."""
    from PIL import Image

    with atomic_folder(path) as folder:
        for i, image in enumerate(images):
            Image.fromarray(image).save(os.path.join(folder, f"frame_{i:05d}.png"))
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


def encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
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


def read_video(path: str, start: int = 0, stride: int = 1, max_frames: int = 0, fps: float = 0.0,
               height: int = 0, width: int = 0) -> tuple[torch.Tensor, float]:
    """Frames (F, H, W, 3) float in [0, 1] and their frame rate from a video file or a PNG-frame folder.

    Selection, in order: resample to `fps` (0 keeps the source rate; otherwise the source frame nearest to each
    1/fps tick), then skip `start` frames, take every `stride`-th, stop at `max_frames` (0: all). Resize: both
    sides given -> that size; one given -> the other follows the aspect ratio (bilinear with antialiasing).
    """
    assert stride >= 1, f"stride must be >= 1, got {stride}"
    with local_copy(path) as local:
        images, source_fps = _decode(local)
    if not images:
        raise ValueError(f"{path!r} holds no video frames")
    if fps > 0:
        times = np.arange(len(images)) / source_fps
        ticks = np.arange(0, times[-1] + 1e-9, 1 / fps)
        picks = np.clip(np.round(ticks * source_fps).astype(int), 0, len(images) - 1)
        images = [images[i] for i in picks]
        rate = fps
    else:
        rate = source_fps
    images = images[start::stride]
    if max_frames > 0:
        images = images[:max_frames]
    if not images:
        raise ValueError(f"no frames left after start={start}, stride={stride} in {path!r}")
    frames = torch.from_numpy(np.stack(images)).float() / 255  # (F, H, W, 3)
    return resize_frames(frames, height, width), rate / stride


def _decode(local: str) -> tuple[list[np.ndarray], float]:
    if os.path.isdir(local):
        from PIL import Image

        names = sorted(n for n in os.listdir(local) if n.lower().endswith(".png"))
        return [np.asarray(Image.open(os.path.join(local, n)).convert("RGB")) for n in names], 8.0
    if local.lower().endswith(".gif"):
        from PIL import Image, ImageSequence

        with Image.open(local) as gif:
            images = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]
            duration = gif.info.get("duration", 125) or 125
        return images, 1000.0 / duration
    import av

    with av.open(local) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 8)
        images = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    return images, rate


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
