"""Text2Video-Zero's global translation motion field and the warp of latents by it.

Direction (both modes): the warped latent at position p samples the input at p + delta, delta = strength * frame id,
so positive strengths move content left (x) and up (y), as a camera panning right/down would.

- reference: exactly diffusers' `create_motion_field_and_warp_latents`: the flow lives on a fixed 512 x 512 pixel
  canvas whatever the resolution (so the shift per frame is strength/512 of the image), the sampling grid is
  resized bilinearly to the latent size and sampled with nearest neighbour and reflection padding: whole latent
  pixels only.
- resolution_aware: strength is in latent pixels per frame at any resolution, sampled bilinearly (sub-pixel
  motion), reflection padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

MotionMode = Literal["reference", "resolution_aware"]

REFERENCE_CANVAS = 512


def _reference_coords_grid(size: int, device: torch.device) -> torch.Tensor:
    """(1, 2, size, size) pixel coordinates (x, y), as the reference's RAFT-derived `coords_grid`."""
    coords = torch.meshgrid(torch.arange(size, device=device), torch.arange(size, device=device), indexing="ij")
    coords = torch.stack(coords[::-1], dim=0).float()
    return coords[None]


def reference_warp_frame(latent: torch.Tensor, shift_x: float, shift_y: float) -> torch.Tensor:
    """One frame (1, C, h, w) warped by a uniform flow (shift_x, shift_y) on the 512 canvas (reference arithmetic)."""
    _, _, h, w = latent.shape
    size = REFERENCE_CANVAS
    flow = torch.zeros((1, 2, size, size), device=latent.device, dtype=latent.dtype)
    flow[0, 0, :, :] = shift_x
    flow[0, 1, :, :] = shift_y
    coords = _reference_coords_grid(size, latent.device).to(latent.dtype) + flow  # (1, 2, 512, 512)
    coords[:, 0] /= size
    coords[:, 1] /= size
    coords = coords * 2.0 - 1.0
    coords = F.interpolate(coords, size=(h, w), mode="bilinear", align_corners=False)  # (1, 2, h, w)
    grid = torch.permute(coords, (0, 2, 3, 1))  # (1, h, w, 2)
    return F.grid_sample(latent, grid, mode="nearest", padding_mode="reflection", align_corners=False)


def resolution_aware_warp_frame(latent: torch.Tensor, shift_x: float, shift_y: float) -> torch.Tensor:
    """One frame (1, C, h, w) translated by (shift_x, shift_y) latent pixels, bilinear, reflection padding."""
    _, _, h, w = latent.shape
    ys = torch.arange(h, device=latent.device, dtype=torch.float32) + 0.5 + shift_y  # sample positions, pixels
    xs = torch.arange(w, device=latent.device, dtype=torch.float32) + 0.5 + shift_x
    gy = ys * (2.0 / h) - 1.0  # align_corners=False normalisation: pixel centre i+0.5 -> (2(i+0.5)/n) - 1
    gx = xs * (2.0 / w) - 1.0
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]  # (1, h, w, 2) as (x, y)
    return F.grid_sample(latent, grid.to(latent.dtype), mode="bilinear", padding_mode="reflection",
                         align_corners=False)


def warp_translation(
    latents: torch.Tensor,
    frame_ids: Sequence[int],
    strength_x: float,
    strength_y: float,
    mode: MotionMode,
) -> torch.Tensor:
    """Latents (N, C, h, w), one per frame id, each warped by (strength_x, strength_y) * its frame id."""
    assert latents.ndim == 4, f"latents must be (N, C, h, w), got {tuple(latents.shape)}"
    assert len(frame_ids) == latents.shape[0], f"{len(frame_ids)} frame ids for {latents.shape[0]} latents"
    warp = {"reference": reference_warp_frame, "resolution_aware": resolution_aware_warp_frame}[mode]
    warped = latents.clone()
    for i, frame_id in enumerate(frame_ids):
        warped[i] = warp(latents[i][None], strength_x * frame_id, strength_y * frame_id)[0]
    return warped
