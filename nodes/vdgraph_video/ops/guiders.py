"""Guiders: how many batch chunks a model call carries, how they are stacked, and how predictions combine.

A guider is the one place that knows the guidance layout of a model call (as diffusers' Modular Diffusers'
guiders do): the denoise loop asks it for the text embeddings of every chunk (a family with more prompt-dependent
inputs, SDXL's pooled embedding, has them arranged the same way by `arrange`), stacks the latents with it, tells the
attention patches how many chunks it has, and lets it combine the chunks' predictions into one noise prediction.

- `NoGuidance`: one chunk (the prompt); the prediction is used as it is.
- `ClassifierFreeGuidance(scale)`: two chunks [uncond, cond]; uncond + scale (cond - uncond).
- `InstructPix2PixGuidance(scale, image_scale)`: three chunks [text+image, image, none] as diffusers'
  StableDiffusionInstructPix2PixPipeline: uncond + scale (text - image) + image_scale (image - uncond).
- `FrameRampGuidance(min_scale, max_scale)`: two chunks [uncond, cond] with a guidance scale per frame, linear
  from min_scale at the first frame to max_scale at the last (StableVideoDiffusionPipeline); the predictions carry
  frames on `frame_axis` (1 in the (B, F, C, H, W) layout of Stable Video Diffusion).

Image latents that ride along on the channel axis (InstructPix2Pix) are a model-family input; the guider only says
which chunks see them (`stack_image`): every chunk for no guidance and text CFG, [image, image, zeros] for
InstructPix2Pix (the "none" chunk sees neither the prompt nor the image).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import torch

from vdgraph_video.values import Conditioning


def per_batch(x: torch.Tensor, batch: int) -> torch.Tensor:
    """(1 or B, L, D) embeddings -> (B, L, D); per-frame (1 or B, F, L, D) -> (B, F, L, D); pooled (1 or B, K) ->
    (B, K)."""
    assert x.shape[0] in (1, batch), f"conditioning batch {x.shape[0]} does not match latents batch {batch}"
    return x if x.shape[0] == batch else x.expand(batch, *x.shape[1:])


class Guider(Protocol):
    chunks: int
    """How many copies of the latents a model call stacks along its batch (each with B items)."""

    def arrange(self, cond: torch.Tensor, uncond: torch.Tensor, batch: int) -> torch.Tensor:
        """(chunks*B, ...): a prompt's and a negative prompt's tensors (1 or B, ...) in the chunk order, chunk-major."""
        ...

    def embeddings(self, conditioning: Conditioning, batch: int) -> torch.Tensor:
        """(chunks*B, L, D): the text embeddings of every chunk, chunk-major (`arrange` of the embeddings)."""
        ...

    def stack(self, x: torch.Tensor) -> torch.Tensor:
        """The model input: `x` repeated for every chunk along dim 0."""
        ...

    def stack_image(self, image: torch.Tensor) -> torch.Tensor:
        """The image latents of every chunk along dim 0 (zeros for a chunk that is unconditional on the image)."""
        ...

    def combine(self, prediction: torch.Tensor) -> torch.Tensor:
        """One noise prediction from the chunks' predictions (stacked along dim 0)."""
        ...

    def conditional_chunks(self) -> tuple[int, ...]:
        """The chunks that see the prompt (a ControlNet in guess mode runs on these only)."""
        ...


class ArrangedEmbeddings:
    """`Guider.embeddings` for every guider: the conditioning's embeddings in the guider's own `arrange` order."""

    def embeddings(self, conditioning: Conditioning, batch: int) -> torch.Tensor:
        return self.arrange(conditioning.cond, conditioning.uncond, batch)


class UncondCondChunks(ArrangedEmbeddings):
    """Two chunks [uncond, cond], every one seeing the latents and the image latents (classifier-free guidance,
    whatever the scale per frame)."""

    def arrange(self, cond: torch.Tensor, uncond: torch.Tensor, batch: int) -> torch.Tensor:
        return torch.cat([per_batch(uncond, batch), per_batch(cond, batch)])

    def stack(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x] * 2)

    def stack_image(self, image: torch.Tensor) -> torch.Tensor:
        return torch.cat([image] * 2)

    def conditional_chunks(self) -> tuple[int, ...]:
        return (1,)


@dataclasses.dataclass(frozen=True)
class NoGuidance(ArrangedEmbeddings):
    chunks: int = dataclasses.field(default=1, init=False)

    def arrange(self, cond: torch.Tensor, uncond: torch.Tensor, batch: int) -> torch.Tensor:
        return per_batch(cond, batch)

    def stack(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def stack_image(self, image: torch.Tensor) -> torch.Tensor:
        return image

    def combine(self, prediction: torch.Tensor) -> torch.Tensor:
        return prediction

    def conditional_chunks(self) -> tuple[int, ...]:
        return (0,)


@dataclasses.dataclass(frozen=True)
class ClassifierFreeGuidance(UncondCondChunks):
    scale: float
    chunks: int = dataclasses.field(default=2, init=False)

    def combine(self, prediction: torch.Tensor) -> torch.Tensor:
        uncond, text = prediction.chunk(2)
        return uncond + self.scale * (text - uncond)


@dataclasses.dataclass(frozen=True)
class InstructPix2PixGuidance(ArrangedEmbeddings):
    scale: float
    image_scale: float
    chunks: int = dataclasses.field(default=3, init=False)

    def arrange(self, cond: torch.Tensor, uncond: torch.Tensor, batch: int) -> torch.Tensor:
        cond, uncond = per_batch(cond, batch), per_batch(uncond, batch)
        return torch.cat([cond, uncond, uncond])

    def stack(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x] * 3)

    def stack_image(self, image: torch.Tensor) -> torch.Tensor:
        return torch.cat([image, image, torch.zeros_like(image)])  # prepare_image_latents' layout

    def combine(self, prediction: torch.Tensor) -> torch.Tensor:
        text, image, uncond = prediction.chunk(3)
        return uncond + self.scale * (text - image) + self.image_scale * (image - uncond)

    def conditional_chunks(self) -> tuple[int, ...]:
        return (0,)


@dataclasses.dataclass(frozen=True)
class FrameRampGuidance(UncondCondChunks):
    min_scale: float
    max_scale: float
    frame_axis: int = 1
    chunks: int = dataclasses.field(default=2, init=False)

    def combine(self, prediction: torch.Tensor) -> torch.Tensor:
        uncond, cond = prediction.chunk(2)
        frames = prediction.shape[self.frame_axis]
        ramp = torch.linspace(self.min_scale, self.max_scale, frames).to(prediction.device, prediction.dtype)
        shape = [1] * prediction.ndim
        shape[self.frame_axis] = frames
        return uncond + ramp.reshape(shape) * (cond - uncond)


def frame_ramp_guider(min_scale: float, max_scale: float, frame_axis: int = 1) -> NoGuidance | FrameRampGuidance:
    """A per-frame guidance ramp when max_scale > 1, none otherwise (StableVideoDiffusionPipeline decides
    classifier-free guidance on the largest scale)."""
    return FrameRampGuidance(min_scale, max_scale, frame_axis) if max_scale > 1.0 else NoGuidance()


def text_guider(scale: float) -> NoGuidance | ClassifierFreeGuidance:
    """Classifier-free guidance for scale > 1, none otherwise (as the references: scale 1 means no CFG)."""
    return ClassifierFreeGuidance(scale) if scale > 1.0 else NoGuidance()


def image_guider(scale: float, image_scale: float) -> NoGuidance | InstructPix2PixGuidance:
    """InstructPix2Pix's 3-way guidance when scale > 1 and image_scale >= 1, none otherwise (the pipeline's
    do_classifier_free_guidance rule)."""
    return InstructPix2PixGuidance(scale, image_scale) if scale > 1.0 and image_scale >= 1.0 else NoGuidance()
