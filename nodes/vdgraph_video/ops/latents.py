"""Moving between the video layout (B, C, F, H, W) and the folded image layout (B*F, C, H, W)."""

from __future__ import annotations

import torch


def fold_frames(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, F, H, W) -> (B*F, C, H, W), frames contiguous inside each batch item."""
    assert latents.ndim == 5, f"latents must be (B, C, F, H, W), got shape {tuple(latents.shape)}"
    b, c, f, h, w = latents.shape
    return latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)


def unfold_frames(folded: torch.Tensor, batch: int) -> torch.Tensor:
    """(B*F, C, H, W) -> (B, C, F, H, W); a view where possible (the inverse of `fold_frames`)."""
    assert folded.ndim == 4, f"folded latents must be (B*F, C, H, W), got shape {tuple(folded.shape)}"
    bf, c, h, w = folded.shape
    assert bf % batch == 0, f"{bf} folded items do not split into batch {batch}"
    return folded.reshape(batch, bf // batch, c, h, w).permute(0, 2, 1, 3, 4)


def repeat_frames(latents: torch.Tensor, times: int) -> torch.Tensor:
    """(B, C, F, H, W) -> (B, C, F*times, H, W): the clip repeated `times` times along the frame axis."""
    assert times >= 1, f"times must be >= 1, got {times}"
    return latents.repeat(1, 1, times, 1, 1)


def concat_frames(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Two clips (B, C, F1, H, W) and (B, C, F2, H, W) -> (B, C, F1+F2, H, W)."""
    assert first.shape[:2] == second.shape[:2] and first.shape[3:] == second.shape[3:], (
        f"clips {tuple(first.shape)} and {tuple(second.shape)} differ in more than the frame axis"
    )
    return torch.cat([first, second], dim=2)


def resolve_index(index: int, length: int, what: str) -> int:
    """Python-style index (negative counts from the end) -> 0 <= i <= length; out of range raises IndexError."""
    resolved = index + length if index < 0 else index
    if not 0 <= resolved <= length:
        raise IndexError(f"{what} {index} is out of range for {length} steps (allowed {-length}..{length})")
    return resolved
