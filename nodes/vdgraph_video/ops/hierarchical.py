"""ControlVideo's hierarchical sampler for long videos: which frames each model call sees.

Key frames are every (window - 1)-th frame plus the last one (window about sqrt(F)); every step, the key frames are
denoised together with fully cross-frame attention, then each clip between two neighbouring key frames is denoised
as [key i, key i+1, inner frames...] with both key frames as its attention references, and only the inner frames'
predictions are kept. A model call never sees more than max(len(key frames), window) frames, so memory is bounded by
the clip, not the length.
"""

from __future__ import annotations

import math

MIN_WINDOW = 3  # a clip holds its two key frames and at least one inner frame (the reference asserts window >= 3)


def default_window(frames: int) -> int:
    """The paper's window, int(sqrt(F)), at least MIN_WINDOW."""
    return max(MIN_WINDOW, int(math.sqrt(frames)))


def key_frames(frames: int, window: int) -> list[int]:
    """Every (window - 1)-th frame from 0, plus the last frame: 15 frames, window 3 -> [0, 2, 4, ..., 14]."""
    assert window >= MIN_WINDOW, f"window {window} must be >= {MIN_WINDOW} (two key frames and an inner frame)"
    assert frames >= 1, f"a video has at least one frame, got {frames}"
    keys = list(range(0, frames, window - 1))
    if keys[-1] != frames - 1:
        keys.append(frames - 1)
    return keys


def clip_calls(frames: int, window: int) -> list[list[int]]:
    """Per gap between neighbouring key frames a and b (with frames between them): [a, b, a+1, ..., b-1], the
    frame order the reference feeds its clip pass (the two key frames at clip positions 0 and 1)."""
    keys = key_frames(frames, window)
    return [[a, b, *range(a + 1, b)] for a, b in zip(keys, keys[1:]) if b - a > 1]
