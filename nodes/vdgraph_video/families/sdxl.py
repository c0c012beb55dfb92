"""SDXL's UNet (UNet2DConditionModel with addition_embed_type "text_time") on video: frames folded into the batch.

The layout, the per-frame text embeddings, the frame chunks and the scheduler step are those of Stable
Diffusion's 2-D family (`vdgraph_video.families.sd`); SDXL adds two inputs to every UNet call, passed as
`added_cond_kwargs` exactly as TextToVideoZeroSDXLPipeline.backward_loop passes them:
- `text_embeds`: the pooled text embedding (the second text encoder's projected output), arranged per guider
  chunk like the sequence embeddings ([negative, prompt] with classifier-free guidance) and repeated for every
  frame of the call;
- `time_ids`: the size micro-conditioning (original height, width, crop top, left, target height, width), here
  (H, W, 0, 0, H, W) for frames of H x W pixels (the latents' size times the VAE factor), the pipeline's default
  when original_size and target_size are not given; the same for every row.
ControlNets, image latents (InstructPix2Pix) and motion adapters are not part of this family yet: refused here,
and before the run by the nodes' checks.
"""

from __future__ import annotations

import torch

from vdgraph_video.families.sd import FoldedFramesUNet

TIME_IDS = 6  # original (h, w) + crop (top, left) + target (h, w)


def size_time_ids(height: int, width: int) -> list[int]:
    """SDXL's time ids for frames of height x width pixels, uncropped: original = target = (H, W), crop (0, 0)."""
    return [height, width, 0, 0, height, width]


class SDXLUNet(FoldedFramesUNet):
    def __init__(self, unet, batch: int, frames: int, chunk_size: int = 0, image_latents: torch.Tensor | None = None):
        if unet.controls:
            raise ValueError("port 'unet': ControlNets are attached to an SDXL UNet, and the SDXL family takes no "
                             "ControlNet residuals yet: denoise without video.apply_controlnet")
        if image_latents is not None:
            raise ValueError("port 'image_latents': an SDXL UNet takes no image latents (the SDXL family has no "
                             "InstructPix2Pix form yet): leave image_latents unlinked")
        super().__init__(unet, batch, frames, chunk_size)
        self.pooled: torch.Tensor | None = None  # (chunks*B, K), set by `prepare`
        self.time_ids: torch.Tensor | None = None  # (1, 6), set by `begin`

    def prepare(self, conditioning, guider) -> None:
        if conditioning.pooled is None:
            raise ValueError("port 'conditioning': an SDXL UNet needs the pooled text embedding of SDXL's second "
                             "text encoder, and this conditioning has none: encode the prompt with the SDXL model's "
                             "own text_encoder (video.encode_text)")
        config = self.unet.module.config
        expected = self.unet.module.add_embedding.linear_1.in_features
        given = int(config.addition_time_embed_dim) * TIME_IDS + int(conditioning.pooled.shape[-1])
        if given != expected:
            raise ValueError(f"port 'conditioning': the UNet's added embedding takes {expected} numbers, but the "
                             f"pooled embedding ({conditioning.pooled.shape[-1]}) and {TIME_IDS} time ids of "
                             f"{config.addition_time_embed_dim} make {given}: encode the prompt with the text encoders "
                             "of this UNet's model")
        self.pooled = guider.arrange(conditioning.pooled, conditioning.uncond_pooled, self.batch)

    def begin(self, latents: torch.Tensor) -> torch.Tensor:
        factor = self.unet.pixels_per_latent
        h, w = latents.shape[-2:]
        self.time_ids = torch.tensor([size_time_ids(h * factor, w * factor)])  # (1, 6)
        return super().begin(latents)

    def call_frames(self, unet, controlnets, model_input, t, embeds, guider, index, steps, frames):
        """One UNet call on (chunks*B*n, C, H, W): frames `frames` of every clip, each with its clip's pooled
        embedding and the time ids."""
        assert self.pooled is not None and self.time_ids is not None, "prepare and begin run before the first call"
        rows = model_input.shape[0]
        per_clip = rows // self.pooled.shape[0]  # frames of each clip in this call
        text_embeds = self.pooled.to(model_input.device).repeat_interleave(per_clip, dim=0)  # (rows, K)
        time_ids = self.time_ids.to(model_input.device, embeds.dtype).repeat(rows, 1)  # (rows, 6)
        return unet(model_input, t, encoder_hidden_states=embeds,
                    added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids}).sample
