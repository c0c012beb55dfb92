"""The runtime values of Stable Video Diffusion's nodes: the CLIP image encoder and the image condition."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from vdgraph_video.values import module_nbytes, tensor_nbytes


@dataclasses.dataclass(frozen=True, eq=False)
class ImageEncoderHandle:
    """A loaded CLIPVisionModelWithProjection (never mutated after loading) and its CLIP image processor."""

    module: torch.nn.Module
    processor: Any

    def __vdgraph_nbytes__(self) -> int:
        return module_nbytes(self.module)


@dataclasses.dataclass(frozen=True, eq=False)
class ImageCondition:
    """What Stable Video Diffusion's UNet takes from the conditioning image besides its CLIP embedding: the VAE
    latents of the noise-augmented image (1, C, h, w), unscaled, and the noise_aug_strength that was added (the
    third added time id)."""

    latents: torch.Tensor  # (1, C, h, w)
    noise_aug_strength: float

    def __vdgraph_nbytes__(self) -> int:
        return tensor_nbytes(self.latents)
