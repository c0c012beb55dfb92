"""2-D image UNets (Stable Diffusion's UNet2DConditionModel) on video: the frames are folded into the batch.

The call order follows TextToVideoZeroPipeline.backward_loop and StableDiffusionControlNetPipeline: every chunk
of the guider holds the B clips' F frames, (chunks*B*F, C, H, W); every frame gets its clip's text embedding; the
scheduler steps on the folded latents. The UNet's 3x3 convolutions act as space-only 1x3x3 3-D convolutions, so
frames meet only through attention patches.

Extra inputs: image latents (InstructPix2Pix: the VAE mode of each input frame), folded like the latents and
concatenated after the scaled model input on the channel axis, one copy per guider chunk as the guider stacks them
(`stack_image`), exactly as StableDiffusionInstructPix2PixPipeline; and the ControlNets attached to the UNet value
(`UNetHandle.controls`). Each one's residuals are computed
per frame every step, from the same folded input and the frame's condition image, summed over the ControlNets
(as diffusers' MultiControlNetModel) and added inside the UNet.

chunk_size > 0 calls the model on frame 0 (the attention anchor) plus chunk_size - 1 other frames at a time and
keeps frame 0's prediction from the first call only.
"""

from __future__ import annotations

import contextlib

import torch

from vdgraph_video.families.common import (
    check_control_frames,
    check_control_size,
    check_image_latents,
    control_kwargs,
    control_modules,
    folded_step,
    refuse_pooled,
)
from vdgraph_video.ops.latents import fold_frames, unfold_frames
from vdgraph_video.values import UNetHandle


def anchor_chunks(frames: int, chunk_size: int) -> list[list[int]]:
    """Frame indices per UNet call when denoising `chunk_size` frames at a time with frame 0 as the anchor.

    Every chunk starts with frame 0; the others are consecutive. chunk_size 0 (or >= frames) is one call with all.
    """
    if chunk_size <= 0 or chunk_size >= frames:
        return [list(range(frames))]
    assert chunk_size >= 2, f"chunk_size must be 0 or >= 2 (frame 0 plus at least one frame), got {chunk_size}"
    step = chunk_size - 1
    return [[0] + list(range(s, min(s + step, frames))) for s in range(1, frames, step)]


def per_frame_embeddings(embeds: torch.Tensor, frames: int) -> torch.Tensor:
    """(chunks*B, L, D) -> (chunks*B*F, L, D), frames contiguous inside each clip (TextToVideoZeroPipeline's
    `prompt_embeds[:, None].repeat(1, F, 1, 1)`); per-frame (chunks*B, F, L, D) embeddings are flattened."""
    if embeds.ndim == 4:  # per-frame (chunks*B, F, L, D) from prompt travel
        assert embeds.shape[1] == frames, f"per-frame conditioning has {embeds.shape[1]} frames, the latents {frames}"
        return embeds.reshape(-1, *embeds.shape[2:])
    n, length, width = embeds.shape
    return embeds[:, None].repeat(1, frames, 1, 1).reshape(n * frames, length, width)


class FoldedFramesUNet:
    def __init__(self, unet: UNetHandle, batch: int, frames: int, chunk_size: int = 0,
                 image_latents: torch.Tensor | None = None):
        self.unet, self.batch, self.frames = unet, batch, frames
        check_image_latents(unet, image_latents, batch, frames)
        self.image = None if image_latents is None else fold_frames(image_latents)  # (B*F, C', H, W)
        self.chunks = anchor_chunks(frames, chunk_size)
        if len(self.chunks) > 1:
            assert batch == 1, f"chunked denoising supports batch 1, got {batch}"
        check_control_frames(unet, frames)

    def begin(self, latents: torch.Tensor) -> torch.Tensor:
        h, w = latents.shape[-2:]
        if self.image is not None and tuple(self.image.shape[-2:]) != (h, w):
            raise ValueError(f"port 'image_latents': they are {self.image.shape[-2]}x{self.image.shape[-1]} but "
                             f"the latents {h}x{w}: encode frames of the size being denoised")
        check_control_size(self.unet, h, w)
        return fold_frames(latents)  # (B*F, C, H, W)

    def end(self, x: torch.Tensor) -> torch.Tensor:
        return unfold_frames(x, self.batch)

    def to_video(self, x: torch.Tensor) -> torch.Tensor:
        return unfold_frames(x, self.batch)

    def embeddings(self, embeds: torch.Tensor) -> torch.Tensor:
        return per_frame_embeddings(embeds, self.frames)

    def prepare(self, conditioning, guider) -> None:
        refuse_pooled(conditioning)

    @contextlib.contextmanager
    def models(self, guider):
        """The patched UNet and, per ControlNet, its module (patched with the UNet's patches when it shares them)."""
        clips = guider.chunks * self.batch
        with contextlib.ExitStack() as stack:
            unet = stack.enter_context(self.unet.patched(batch_chunks=clips))
            yield unet, control_modules(stack, self.unet, guider, self.batch)

    def predict(self, models, model_input, t, embeds, guider, index, steps):
        unet, controlnets = models
        if self.image is not None:
            image = guider.stack_image(self.image.to(model_input.device, model_input.dtype))
            model_input = torch.cat([model_input, image], dim=1)  # (chunks*B*F, C + C', H, W)
        if len(self.chunks) == 1:
            return self.call_frames(unet, controlnets, model_input, t, embeds, guider, index, steps,
                              list(range(self.frames)))
        _, c, h, w = model_input.shape
        halves = guider.chunks
        x = model_input.reshape(halves, self.frames, c, h, w)
        e = embeds.reshape(halves, self.frames, *embeds.shape[1:])
        pred = None  # (chunks, F, C_out, H, W): the model predicts fewer channels than it takes with image latents
        for k, frames in enumerate(self.chunks):
            n = len(frames)
            out = self.call_frames(unet, controlnets, x[:, frames].reshape(halves * n, c, h, w), t,
                             e[:, frames].reshape(halves * n, *e.shape[2:]), guider, index, steps, frames)
            out = out.reshape(halves, n, -1, h, w)
            if k == 0:
                pred = out.new_empty((halves, self.frames) + tuple(out.shape[2:]))
                pred[:, 0] = out[:, 0]
            pred[:, frames[1:]] = out[:, 1:]
        return pred.reshape(halves * self.frames, -1, h, w)

    def call_frames(self, unet, controlnets, model_input, t, embeds, guider, index, steps, frames):
        """One UNet call on (chunks*B*n, C, H, W) holding frames `frames` of every clip, with ControlNet residuals."""
        kwargs = control_kwargs(self.unet, controlnets, model_input, t, embeds, guider, self.batch, frames, index,
                                steps)
        return unet(model_input, t, encoder_hidden_states=embeds, **kwargs).sample

    def step(self, scheduler, noise_pred, t, x, kwargs):
        return folded_step(scheduler, noise_pred, t, x, kwargs)

