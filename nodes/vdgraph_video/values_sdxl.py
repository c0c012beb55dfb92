"""The model values of the SDXL family: what an SDXL model adds to the UNet and text-encoder values.

SDXL (Podell et al. 2023) is a 2-D text-to-image UNet (UNet2DConditionModel with addition_embed_type
"text_time") conditioned by two text encoders (CLIP ViT-L and OpenCLIP ViT-bigG with a projection): the UNet's
cross-attention takes both encoders' penultimate hidden states concatenated, and its added embedding takes the
second encoder's pooled output and six "time ids", the micro-conditioning on the image size
(original height and width, crop top and left, target height and width).

The values stay those of the pack's ports (a UNet value, a text-encoder value): these handles are subclasses that
carry what SDXL needs, so every node that passes a model on (attention patches, LoRA, ControlNet attachment)
keeps it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from vdgraph_video.values import Conditioning, TextEncoderHandle, UNetHandle, module_nbytes

SDXL_FAMILY = "SDXL"


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class SDXLUNetHandle(UNetHandle):
    """An SDXL UNet: its size conditioning is in pixels, so the value knows the VAE's pixels per latent pixel."""

    pixels_per_latent: int

    @property
    def family(self) -> str:
        return SDXL_FAMILY


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class SDXLTextEncoderHandle(TextEncoderHandle):
    """SDXL's two text encoders: `module`/`tokenizer` the first (CLIPTextModel), `module_2`/`tokenizer_2` the
    second (CLIPTextModelWithProjection, which gives the pooled embedding). `zero_empty_negative` is the model's
    force_zeros_for_empty_prompt: an empty negative prompt is then zeros, not the encoding of ""."""

    module_2: torch.nn.Module
    tokenizer_2: Any
    zero_empty_negative: bool = True

    def encode(self, prompt: str, negative_prompt: str, device: torch.device, truncate: bool = False) -> Conditioning:
        """Sequence embeddings (1, 77, D1 + D2) and pooled embeddings (1, K) of both prompts, as
        StableDiffusionXLPipeline.encode_prompt (an empty negative prompt is diffusers' negative_prompt=None)."""
        from vdgraph_video.ops.text import encode_text_penultimate

        encoders, tokenizers = (self.module, self.module_2), (self.tokenizer, self.tokenizer_2)
        cond, pooled = encode_text_penultimate(encoders, tokenizers, prompt, device, truncate)
        if not negative_prompt and self.zero_empty_negative:
            uncond, uncond_pooled = torch.zeros_like(cond), torch.zeros_like(pooled)
        else:
            uncond, uncond_pooled = encode_text_penultimate(encoders, tokenizers, negative_prompt, device, truncate)
        return Conditioning(cond=cond, uncond=uncond, pooled=pooled, uncond_pooled=uncond_pooled)

    def __vdgraph_nbytes__(self) -> int:
        return module_nbytes(self.module) + module_nbytes(self.module_2)


@dataclasses.dataclass(frozen=True)
class SDXLTextEncoderFacts:
    """What validation knows of an SDXL model's text-encoder value: that it is SDXL's pair of encoders."""


def sdxl_values(unet: torch.nn.Module, vae: torch.nn.Module, text_encoders: tuple[torch.nn.Module, torch.nn.Module],
                tokenizers: tuple[Any, Any], zero_empty_negative: bool) -> tuple[SDXLUNetHandle, SDXLTextEncoderHandle]:
    """The UNet and text-encoder values of loaded SDXL modules."""
    pixels_per_latent = 2 ** (len(vae.config.block_out_channels) - 1)
    return (SDXLUNetHandle(unet, pixels_per_latent=pixels_per_latent),
            SDXLTextEncoderHandle(text_encoders[0], tokenizers[0], module_2=text_encoders[1],
                                  tokenizer_2=tokenizers[1], zero_empty_negative=zero_empty_negative))
