"""Stable Video Diffusion's spatio-temporal UNet (diffusers UNetSpatioTemporalConditionModel).

The call order follows StableVideoDiffusionPipeline: the loop works on (B, F, C, H, W) latents (frames before
channels); the guider-stacked, scaled input gets the image latents concatenated on the channel axis (the VAE
latents of the conditioning image repeated for every frame in the chunks that see the image, zeros in the others,
as the pipeline's negative), the CLIP image embedding as encoder_hidden_states (one token per clip) and the added
time ids [fps - 1, motion_bucket_id, noise_aug_strength] for every chunk. The scheduler (Euler) steps on the
(B, F, C, H, W) latents as they are.
"""

from __future__ import annotations

import torch

from vdgraph_video.families.common import refuse_pooled
from vdgraph_video.values import UNetHandle


def is_spatio_temporal(module: torch.nn.Module) -> bool:
    """True for a diffusers UNetSpatioTemporalConditionModel (Stable Video Diffusion)."""
    return type(module).__name__ == "UNetSpatioTemporalConditionModel"


class SpatioTemporalUNet:
    def __init__(self, unet: UNetHandle, image_latents: torch.Tensor, time_ids: torch.Tensor, batch: int,
                 frames: int):
        module = unet.module
        assert is_spatio_temporal(module), f"an SVD family needs a UNetSpatioTemporalConditionModel, got " \
                                           f"{type(module).__name__}"
        assert image_latents.ndim == 4 and image_latents.shape[0] == 1, (
            f"image latents must be (1, C, h, w), got {tuple(image_latents.shape)}")
        assert time_ids.shape == (1, 3), f"time ids must be (1, 3), got {tuple(time_ids.shape)}"
        if unet.controls:
            raise ValueError("ControlNets are attached to this UNet, but Stable Video Diffusion's UNet takes no "
                             "ControlNet residuals")
        self.unet, self.batch, self.frames = unet, batch, frames
        self.image_latents, self.time_ids = image_latents, time_ids
        self._conditioning: tuple[torch.Tensor, torch.Tensor] | None = None

    def begin(self, latents: torch.Tensor) -> torch.Tensor:
        h, w = latents.shape[-2:]
        if tuple(self.image_latents.shape[-2:]) != (h, w):
            ih, iw = self.image_latents.shape[-2:]
            raise ValueError(f"the image latents are {ih}x{iw} but the video latents {h}x{w}: encode the image at "
                             "the video's height and width")
        return latents.permute(0, 2, 1, 3, 4).contiguous()  # (B, F, C, H, W)

    def end(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 1, 3, 4)  # (B, C, F, H, W)

    def to_video(self, x: torch.Tensor) -> torch.Tensor:
        b = self.batch
        return x.reshape(b, -1, *x.shape[-3:]).permute(0, 2, 1, 3, 4)

    def embeddings(self, embeds: torch.Tensor) -> torch.Tensor:
        return embeds  # (chunks*B, 1, D): one image token per clip

    def prepare(self, conditioning, guider) -> None:
        refuse_pooled(conditioning)

    def models(self, guider):
        return self.unet.patched(batch_chunks=guider.chunks * self.batch)

    def conditioning(self, guider, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(chunks*B, F, C, h, w) image latents (zeros in chunks that do not see the image) and (chunks*B, 3)
        time ids, built once per loop."""
        if self._conditioning is None:
            latents = self.image_latents.to(device, dtype).repeat(self.batch, 1, 1, 1)  # (B, C, h, w)
            seen = set(guider.conditional_chunks())
            stacked = torch.cat([latents if k in seen else torch.zeros_like(latents) for k in range(guider.chunks)])
            stacked = stacked.unsqueeze(1).repeat(1, self.frames, 1, 1, 1)  # (chunks*B, F, C, h, w)
            ids = self.time_ids.to(dtype).repeat(self.batch, 1)
            ids = torch.cat([ids] * guider.chunks).to(device)  # (chunks*B, 3)
            self._conditioning = (stacked, ids)
        return self._conditioning

    def predict(self, module, model_input, t, embeds, guider, index, steps):
        image, ids = self.conditioning(guider, embeds.dtype, model_input.device)
        sample = torch.cat([model_input, image], dim=2)  # (chunks*B, F, 2C, h, w)
        return module(sample, t, encoder_hidden_states=embeds, added_time_ids=ids).sample  # (chunks*B, F, C, h, w)

    def step(self, scheduler, noise_pred, t, x, kwargs):
        out = scheduler.step(noise_pred, t, x, **kwargs)
        return out.prev_sample, getattr(out, "pred_original_sample", None)
