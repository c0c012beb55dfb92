"""Pieces the model-family adapters share."""

from __future__ import annotations

import torch

from vdgraph_video.ops.latents import unfold_frames


class WholeClipLayout:
    """For families whose model takes the clip as it is, (B, C, F, H, W) (3-D and motion UNets): the loop layout
    is the video layout, and a folded x0 (B*F, C, H, W) unfolds by the batch."""

    batch: int

    def begin(self, latents: torch.Tensor) -> torch.Tensor:
        return latents  # (B, C, F, H, W)

    def end(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def to_video(self, x: torch.Tensor) -> torch.Tensor:
        return unfold_frames(x, self.batch)

    def prepare(self, conditioning, guider) -> None:
        refuse_pooled(conditioning)


def x0_from_epsilon(scheduler, noise_pred: torch.Tensor, sample: torch.Tensor, t) -> torch.Tensor | None:
    """x0 = (x - sqrt(1 - abar) eps) / sqrt(abar), for schedulers whose step output has no x0."""
    if getattr(scheduler.config, "prediction_type", "epsilon") != "epsilon" or not hasattr(scheduler, "alphas_cumprod"):
        return None
    abar = scheduler.alphas_cumprod[int(t)].to(sample.device, sample.dtype)
    return (sample - (1 - abar).sqrt() * noise_pred) / abar.sqrt()


def folded_step(scheduler, noise_pred: torch.Tensor, t, x: torch.Tensor, kwargs: dict):
    """scheduler.step on folded (B*F, C, H, W) latents: (x at the next step, x0 or None)."""
    out = scheduler.step(noise_pred, t, x, **kwargs)
    x0 = getattr(out, "pred_original_sample", None)
    if x0 is None:
        x0 = x0_from_epsilon(scheduler, noise_pred, x, t)
    return out.prev_sample, x0


def check_image_latents(unet, image_latents: torch.Tensor | None, batch: int, frames: int) -> None:
    """The image latents (B, C', F, H, W) fit the loop's latents and the UNet's input channels; without image
    latents, a UNet taking more channels than it predicts (InstructPix2Pix, inpainting) is refused clearly."""
    config = unet.module.config
    latent_channels = int(getattr(config, "out_channels", config.in_channels))
    extra = 0 if image_latents is None else int(image_latents.shape[1])
    if latent_channels + extra != unet.in_channels:
        if image_latents is None:
            raise ValueError(f"the UNet takes {unet.in_channels} input channels but predicts {latent_channels}: it "
                             f"expects {unet.in_channels - latent_channels} channels of image latents beside the "
                             "noisy latents (an InstructPix2Pix model): link image_latents")
        raise ValueError(f"the UNet takes {unet.in_channels} input channels, but {latent_channels} latent channels "
                         f"plus {extra} image-latent channels make {latent_channels + extra}: an image-conditioned "
                         f"model (InstructPix2Pix) takes {2 * latent_channels}; use such a model or leave "
                         "image_latents unlinked")
    if image_latents is not None:
        assert image_latents.ndim == 5, f"image_latents must be (B, C, F, H, W), got {tuple(image_latents.shape)}"
        b, _, f = image_latents.shape[:3]
        if (b, f) != (batch, frames):
            raise ValueError(f"port 'image_latents': they hold {b} video(s) of {f} frames but the latents {batch} "
                             f"of {frames}: "
                             "give one image latent per frame (encode as many frames as are denoised)")


def refuse_pooled(conditioning) -> None:
    """For families whose model takes the text embeddings alone: conditioning with a pooled embedding comes from
    SDXL's two text encoders, whose concatenated embeddings this model cannot take."""
    if getattr(conditioning, "pooled", None) is not None:
        raise ValueError("port 'conditioning': it comes from an SDXL model's two text encoders (it has a pooled "
                         "embedding) but the UNet is not SDXL's: encode the prompt with this model's own text "
                         "encoder")
