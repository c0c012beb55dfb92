"""Pieces the model-family adapters share."""

from __future__ import annotations

import contextlib

import torch

from vdgraph_video.ops.controlnet import control_residuals
from vdgraph_video.ops.latents import unfold_frames
from vdgraph_video.values import patched_module


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


# ControlNets attached to a UNet value (`UNetHandle.controls`): the checks and the call every family that takes
# residuals shares (the 2-D family on folded frames, the motion family on its clip folded per frame).

def check_control_frames(unet, frames: int) -> None:
    """Every attached ControlNet has one condition image per frame."""
    for k, control in enumerate(unet.controls):
        count = control.condition.shape[0]
        if count != frames:
            fix = ("read no more condition frames than the video has (max_frames of the node reading the control "
                   "video, e.g. linked to the frames input)" if count > frames else
                   "a control video with at least as many frames, or ask for fewer frames")
            raise ValueError(f"port 'unet': ControlNet {k + 1} has {count} condition frames but the latents have "
                             f"{frames} frames: give one condition image per frame ({fix})")


def check_control_size(unet, height: int, width: int) -> None:
    """Every attached ControlNet's condition frames are the video's size ((height, width) latents times the
    ControlNet's condition-embedding factor)."""
    for k, control in enumerate(unet.controls):
        factor = 2 ** (len(control.controlnet.module.config.conditioning_embedding_out_channels) - 1)
        size = tuple(control.condition.shape[-2:])
        if size != (height * factor, width * factor):
            raise ValueError(f"port 'unet': ControlNet {k + 1}'s condition frames are {size[0]}x{size[1]} pixels but "
                             f"the video is {height * factor}x{width * factor} ({height}x{width} latents, {factor}x "
                             "the ControlNet's condition embedding): give condition frames of the video's size")


def control_modules(stack: contextlib.ExitStack, unet, guider, batch: int) -> list[torch.nn.Module]:
    """Per attached ControlNet, its module for the loop's duration: patched with the UNet's attention patches when
    it shares them (restored when `stack` closes), else as loaded (it attends per frame)."""
    modules = []
    for control in unet.controls:
        module = control.controlnet.module
        if control.share_attention:
            guess = guess_mode(control) and guider.chunks > 1
            chunks = len(guider.conditional_chunks()) if guess else guider.chunks
            module = stack.enter_context(patched_module(module, unet.patches, chunks * batch))
        modules.append(module)
    return modules


def control_kwargs(unet, modules, model_input: torch.Tensor, t, embeds: torch.Tensor, guider, batch: int,
                   frames: list[int], index: int, steps: int) -> dict:
    """The UNet call's residual keyword arguments for a folded (chunks*B*n, C, H, W) input holding frames `frames`
    of every clip and its (chunks*B*n, L, D) embeddings; {} when no ControlNet applies at this step."""
    if not unet.controls:
        return {}
    residuals = control_residuals(unet.controls, modules, model_input, t, embeds, guider, batch, frames, index, steps)
    if residuals is None:
        return {}
    return {"down_block_additional_residuals": residuals[0], "mid_block_additional_residual": residuals[1]}


def guess_mode(control) -> bool:
    """Guess mode as diffusers decides it: asked for, or implied by a ControlNet with global pooled conditions."""
    return control.guess_mode or bool(getattr(control.controlnet.module.config, "global_pool_conditions", False))
