"""Model-family adapters: how the denoise loop calls a family's model and which extra inputs it takes.

The loop (`vdgraph_video.ops.denoise`) is the same for every family; an adapter owns the parts that differ:
the latents' layout during the loop (`begin` / `end`), the text embeddings per model call (`embeddings`), the
model call itself with its extra inputs (`predict`: ControlNet residuals for Stable Diffusion UNets; image latents
and time ids for Stable Video Diffusion; the pooled text embedding, taken in `prepare`, and the size time ids
for SDXL), the scheduler step in the layout the reference steps in (`step`),
and the modules to patch for the duration of the loop (`models`). A new family arrives as a new file here.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

import torch

from vdgraph_video.ops.guiders import Guider
from vdgraph_video.values import Conditioning, UNetHandle


class ModelFamily(Protocol):
    def begin(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, F, H, W) -> the loop layout."""
        ...

    def end(self, x: torch.Tensor) -> torch.Tensor:
        """The loop layout -> (B, C, F, H, W)."""
        ...

    def to_video(self, x: torch.Tensor) -> torch.Tensor:
        """A folded (B*F, C, H, W) prediction (x0) -> (B, C, F, H, W)."""
        ...

    def embeddings(self, embeds: torch.Tensor) -> torch.Tensor:
        """The guider's (chunks*B, L, D) embeddings -> those of one model call."""
        ...

    def prepare(self, conditioning: Conditioning, guider: Guider) -> None:
        """Before the first step: take the prompt-dependent model inputs besides the embeddings (SDXL's pooled
        embedding), arranged per chunk by the guider; a family without any refuses conditioning that has them."""
        ...

    def models(self, guider: Guider) -> contextlib.AbstractContextManager[Any]:
        """Patched modules for the loop's duration (restored on exit); passed back to `predict`."""
        ...

    def predict(self, models: Any, model_input: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor,
                guider: Guider, index: int, steps: int) -> torch.Tensor:
        """The noise prediction of every chunk for the guider-stacked, scaled `model_input` (loop layout)."""
        ...

    def step(self, scheduler, noise_pred: torch.Tensor, t: torch.Tensor, x: torch.Tensor,
             kwargs: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One scheduler step: (x at the next step in the loop layout, folded x0 or None)."""
        ...


# Model families with an adapter of their own, by the UNet value's `family` (its model class name, or "SDXL" for
# SDXL's UNet value) -> (module, class); any other UNet is a 2-D image UNet with the frames folded into its batch
# (families/sd.py).
FAMILIES = {
    "UNet3DConditionModel": ("vdgraph_video.families.video_unet", "VideoUNet"),
    "UNetMotionModel": ("vdgraph_video.families.motion_unet", "MotionUNet"),
    "SDXL": ("vdgraph_video.families.sdxl", "SDXLUNet"),  # the key of SDXL's UNet value (values_sdxl)
}


def family_for(unet: UNetHandle, batch: int, frames: int, chunk_size: int = 0,
               image_latents: torch.Tensor | None = None) -> ModelFamily:
    """The adapter for `unet`'s model: looked up by its family in FAMILIES, else a 2-D image UNet with the frames
    folded.

    `image_latents` (B, C', F, H, W) go to the model concatenated after the noisy latents on the channel axis
    (InstructPix2Pix), stacked per guider chunk by the guider's `stack_image`."""
    import importlib

    from vdgraph_video.families.svd import is_spatio_temporal

    if is_spatio_temporal(unet.module):
        raise ValueError("this is Stable Video Diffusion's image-conditioned UNet (UNetSpatioTemporalConditionModel): "
                         "denoise it with video.svd_denoise, which gives it the image condition and time ids")

    if getattr(unet.module.config, "addition_embed_type", None) == "text_time" and unet.family != "SDXL":
        raise ValueError(f"port 'unet': this {unet.family} takes SDXL's added conditions (a pooled text embedding "
                         "and size time ids), which its model family does not give it: SDXL runs as a 2-D UNet "
                         "loaded by video.load_model, without a motion adapter")
    module, name = FAMILIES.get(unet.family, ("vdgraph_video.families.sd", "FoldedFramesUNet"))
    return getattr(importlib.import_module(module), name)(unet, batch, frames, chunk_size, image_latents)
