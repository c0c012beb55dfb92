"""3-D video UNets (diffusers UNet3DConditionModel, ModelScope layout): the model takes (B, C, F, H, W).

The call order follows TextToVideoSDPipeline: the guider-stacked (chunks*B, C, F, H, W) input goes to the UNet as it
is; the scheduler steps on the folded (B*F, C, H, W) latents and prediction, unfolded afterwards exactly as the
reference does, so eta > 0 draws have the reference's shapes and order. Per-frame (prompt travel) embeddings reach
the cross-attention layers through `per_frame_cross_attention`.
"""

from __future__ import annotations


import torch

from vdgraph_video.families.common import WholeClipLayout, check_image_latents, folded_step
from vdgraph_video.ops.latents import fold_frames
from vdgraph_video.ops.prompt_travel import per_frame_cross_attention
from vdgraph_video.values import UNetHandle


class VideoUNet(WholeClipLayout):
    def __init__(self, unet: UNetHandle, batch: int, frames: int, chunk_size: int = 0,
                 image_latents: torch.Tensor | None = None):
        if 0 < chunk_size < frames:
            raise ValueError("chunked denoising needs a 2-D UNet: a 3-D UNet's temporal layers see the whole clip")
        if unet.controls:
            raise ValueError("ControlNets are attached to this UNet, but a 3-D video UNet takes no ControlNet "
                             "residuals: use a 2-D UNet (its frames are folded into the batch)")
        self.unet, self.batch, self.frames = unet, batch, frames
        check_image_latents(unet, image_latents, batch, frames)
        self.image = image_latents  # (B, C', F, H, W) or None

    def embeddings(self, embeds: torch.Tensor) -> torch.Tensor:
        if embeds.ndim == 4:  # per-frame (chunks*B, F, L, D) from prompt travel
            assert embeds.shape[1] == self.frames, (
                f"per-frame conditioning has {embeds.shape[1]} frames but the latents have {self.frames}")
        return embeds  # (chunks*B, L, D): one per clip

    def models(self, guider):
        return self.unet.patched(batch_chunks=guider.chunks * self.batch)

    def predict(self, module, model_input, t, embeds, guider, index, steps):
        if self.image is not None:
            image = guider.stack_image(self.image.to(model_input.device, model_input.dtype))
            model_input = torch.cat([model_input, image], dim=1)  # (chunks*B, C + C', F, H, W)
        if embeds.ndim == 4:  # the UNet repeats one embedding per clip: hand cross-attention the frames' own
            with per_frame_cross_attention(module, embeds.reshape(-1, *embeds.shape[2:])):
                return module(model_input, t, encoder_hidden_states=embeds[:, 0]).sample
        return module(model_input, t, encoder_hidden_states=embeds).sample  # (chunks*B, C, F, H, W)

    def step(self, scheduler, noise_pred, t, x, kwargs):
        b, c, f, h, w = x.shape
        prev, x0 = folded_step(scheduler, fold_frames(noise_pred), t, fold_frames(x), kwargs)
        return prev[None, :].reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4), x0
