"""Editing clips of frames (F, H, W, 3) float in [0, 1]: join, stack, fit to a size, cut, reverse, loop, retime.

Pure functions on tensors; the nodes in `vdgraph_video.frame_nodes` wrap them. Errors name the argument so a node
can name its port.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from vdgraph_video.ops.smooth import flow_between

FitMode = Literal["crop", "resize", "pad"]
StackLayout = Literal["horizontal", "vertical", "grid"]
LoopMode = Literal["loop", "pingpong"]
Retime = Literal["repeat", "flow"]


def _check_frames(frames: torch.Tensor, name: str) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"port {name!r}: frames must be (F, H, W, 3), got shape {tuple(frames.shape)}")


def concat(clips: list[tuple[str, torch.Tensor]]) -> torch.Tensor:
    """Clips one after the other in time; every clip must have the first one's size."""
    first_name, first = clips[0]
    for name, clip in clips:
        _check_frames(clip, name)
        if clip.shape[1:] != first.shape[1:]:
            raise ValueError(f"port {name!r}: frames are {clip.shape[2]}x{clip.shape[1]} (W x H), but {first_name!r} "
                             f"are {first.shape[2]}x{first.shape[1]}; fit them to one size first (video.fit_frames)")
    return torch.cat([clip for _, clip in clips], dim=0)


def _hold_last(clip: torch.Tensor, length: int) -> torch.Tensor:
    """The clip extended to `length` frames by holding its last frame (or cut to it)."""
    if clip.shape[0] >= length:
        return clip[:length]
    return torch.cat([clip, clip[-1:].expand(length - clip.shape[0], *clip.shape[1:])], dim=0)


def stack(clips: list[tuple[str, torch.Tensor]], layout: StackLayout, gap: int = 0,
          length: Literal["shortest", "longest"] = "longest") -> torch.Tensor:
    """Clips side by side (horizontal), one above the other (vertical) or in an about-square grid, frame by frame,
    separated by `gap` white pixels. Clips of different lengths are cut to the shortest or held on their last frame
    to the longest. Heights must match side by side, widths one above the other; a grid needs equal sizes."""
    for name, clip in clips:
        _check_frames(clip, name)
    frames = (min if length == "shortest" else max)(clip.shape[0] for _, clip in clips)
    held = [(name, _hold_last(clip, frames)) for name, clip in clips]
    first_name, first = held[0]
    if layout == "grid":
        columns = math.ceil(math.sqrt(len(held)))
        rows = [held[i:i + columns] for i in range(0, len(held), columns)]
        for name, clip in held:
            if clip.shape[1:3] != first.shape[1:3]:
                raise ValueError(f"port {name!r}: a grid needs clips of one size; {name!r} is "
                                 f"{clip.shape[2]}x{clip.shape[1]}, {first_name!r} {first.shape[2]}x{first.shape[1]}")
        blank = torch.ones_like(first)
        rows[-1] += [("", blank)] * (columns - len(rows[-1]))
        return stack([(f"row {i}", stack(row, "horizontal", gap)) for i, row in enumerate(rows)], "vertical", gap)
    axis = 2 if layout == "horizontal" else 1  # stacking along width or height
    across = 1 if layout == "horizontal" else 2
    for name, clip in held:
        if clip.shape[across] != first.shape[across]:
            side = "height" if layout == "horizontal" else "width"
            raise ValueError(f"port {name!r}: stacked {layout}ly, clips need the same {side}; {name!r} has "
                             f"{clip.shape[across]}, {first_name!r} {first.shape[across]} (video.fit_frames fits them)")
    parts = []
    for i, (_, clip) in enumerate(held):
        if i and gap:
            shape = list(first.shape)
            shape[axis] = gap
            parts.append(torch.ones(shape, dtype=first.dtype))
        parts.append(clip)
    return torch.cat(parts, dim=axis)


def fit(frames: torch.Tensor, height: int, width: int, multiple: int, mode: FitMode) -> torch.Tensor:
    """Frames brought to height x width (0: the current size), each rounded down to a multiple of `multiple` (the
    VAE factor): by a centred crop (after scaling to cover the target, keeping the aspect ratio), a resize
    (bilinear, antialiased; the aspect ratio may change) or a centred pad with black (after scaling to fit)."""
    _check_frames(frames, "frames")
    _, h, w, _ = frames.shape
    target_h = (height or h) // multiple * multiple
    target_w = (width or w) // multiple * multiple
    if target_h < multiple or target_w < multiple:
        raise ValueError(f"port 'height'/'width': {height or h}x{width or w} is smaller than one block of "
                         f"{multiple} pixels")
    if (target_h, target_w) == (h, w):
        return frames
    if mode == "resize":
        return _resize(frames, target_h, target_w)
    scale = (max if mode == "crop" else min)(target_h / h, target_w / w)
    scaled_h, scaled_w = max(1, round(h * scale)), max(1, round(w * scale))
    scaled = _resize(frames, scaled_h, scaled_w) if (scaled_h, scaled_w) != (h, w) else frames
    if mode == "crop":
        top, left = (scaled_h - target_h) // 2, (scaled_w - target_w) // 2
        return scaled[:, top:top + target_h, left:left + target_w].contiguous()
    out = torch.zeros(frames.shape[0], target_h, target_w, 3, dtype=frames.dtype)
    top, left = (target_h - scaled_h) // 2, (target_w - scaled_w) // 2
    out[:, top:top + scaled_h, left:left + scaled_w] = scaled
    return out


def _resize(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    x = frames.permute(0, 3, 1, 2).float()  # (F, 3, H, W)
    out = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp(0, 1).permute(0, 2, 3, 1).contiguous().to(frames.dtype)


def select(frames: torch.Tensor, start: int, end: int | None, step: int) -> torch.Tensor:
    _check_frames(frames, "frames")
    out = frames[start:end:step]
    if out.shape[0] == 0:
        raise ValueError(f"port 'start'/'end': frames [{start}:{end}:{step}] of a {frames.shape[0]}-frame clip select "
                         "nothing")
    return out.contiguous()


def loop(frames: torch.Tensor, mode: LoopMode, times: int) -> torch.Tensor:
    """The clip played `times` times; ping-pong plays it forwards then backwards (the end frames not repeated)."""
    _check_frames(frames, "frames")
    once = torch.cat([frames, frames.flip(0)[1:-1]], dim=0) if mode == "pingpong" else frames  # (F or 2F-2, ...)
    return once.repeat(times, 1, 1, 1)


def retime(frames: torch.Tensor, fps: float, new_fps: float, method: Retime) -> torch.Tensor:
    """The clip at another frame rate, same duration: output frame k shows time k / new_fps. "repeat" takes the
    nearest earlier source frame (frames are repeated or dropped); "flow" builds in-between frames along the
    optical flow between the two source frames around that time (`ops.smooth.flow_between`, the motion-compensated
    interpolation the ControlVideo smoother uses)."""
    _check_frames(frames, "frames")
    if fps <= 0 or new_fps <= 0:
        raise ValueError(f"port 'fps'/'new_fps': frame rates must be > 0, got {fps} and {new_fps}")
    n = frames.shape[0]
    count = max(1, round(n * new_fps / fps))
    out = []
    cached: dict[int, object] = {}
    for k in range(count):
        position = min(k * fps / new_fps, n - 1)  # in source frames
        below = math.floor(position + 1e-9)
        fraction = position - below
        if method == "repeat" or fraction < 1e-6 or below + 1 >= n:
            out.append(frames[below])
            continue
        if below not in cached:
            cached[below] = (frames[below].numpy(), frames[below + 1].numpy())
        before, after = cached[below]
        out.append(torch.from_numpy(flow_between(before, after, fraction)).to(frames.dtype))
    return torch.stack(out).contiguous()
