"""AnimateDiff motion UNets (diffusers UNetMotionModel: a 2-D UNet inflated with temporal motion modules).

The call order follows AnimateDiffPipeline: the guider-stacked (chunks*B, C, F, H, W) input goes to the UNet as it
is, with one text embedding per frame ((chunks*B*F, L, D): the clip's embedding repeated over its frames, or the
per-frame embeddings of a prompt-travel conditioning); the scheduler steps on the (B, C, F, H, W) latents as they
are (not folded), so eta > 0 draws have the reference's shape and order.

ControlNets attached to the UNet value (`UNetHandle.controls`) follow AnimateDiffControlNetPipeline: each sees the
same scaled input folded per frame ((chunks*B*F, C, H, W), frames contiguous in each clip), the per-frame text
embeddings and its condition image of each frame, with its scale and control guidance start/end; the residuals (summed
over ControlNets) are added inside the motion UNet's 2-D blocks (`families.common.control_kwargs`, shared with the 2-D
family).

FreeNoise context windows carried by the UNet value (`MotionUNetHandle.windows`) are installed in the motion modules
for the loop's duration (`vdgraph_video.ops.free_noise`), with diffusers' split inference when asked (activation
memory bounded by the split instead of the frame count). Without them the frame count is bounded by the motion
module's window (its positional embeddings).
"""

from __future__ import annotations

import contextlib

import torch

from vdgraph_video.families.common import (
    WholeClipLayout,
    check_control_frames,
    check_control_size,
    check_image_latents,
    control_kwargs,
    control_modules,
    x0_from_epsilon,
)
from vdgraph_video.ops.free_noise import installed_split_inference, installed_windows
from vdgraph_video.ops.latents import fold_frames


class MotionUNet(WholeClipLayout):
    def __init__(self, unet, batch: int, frames: int, chunk_size: int = 0,
                 image_latents: torch.Tensor | None = None):
        if 0 < chunk_size < frames:
            raise ValueError("chunked denoising needs a 2-D UNet: a motion UNet's motion modules see the whole clip "
                             "(render long videos in context windows, video.context_windows)")
        check_control_frames(unet, frames)
        windows = getattr(unet, "windows", None)
        max_frames = getattr(unet, "max_frames", None)
        if windows is None and max_frames is not None and frames > max_frames:
            raise ValueError(f"{frames} frames are more than the motion module's window of {max_frames} frames: ask "
                             "for fewer frames or render in context windows (video.context_windows)")
        if windows is not None and frames < windows.length:
            raise ValueError(f"{frames} frames are fewer than the context windows' length of {windows.length}: ask "
                             "for more frames or shorten the windows")
        check_image_latents(unet, image_latents, batch, frames)
        self.unet, self.batch, self.frames, self.windows = unet, batch, frames, windows
        self.image = image_latents  # (B, C', F, H, W) or None

    def begin(self, latents: torch.Tensor) -> torch.Tensor:
        check_control_size(self.unet, *latents.shape[-2:])
        return latents  # (B, C, F, H, W)

    def embeddings(self, embeds: torch.Tensor) -> torch.Tensor:
        """(chunks*B, L, D) -> (chunks*B*F, L, D) as AnimateDiffPipeline's repeat_interleave; per-frame
        (chunks*B, F, L, D) -> (chunks*B*F, L, D)."""
        if embeds.ndim == 4:
            assert embeds.shape[1] == self.frames, (
                f"per-frame conditioning has {embeds.shape[1]} frames but the latents have {self.frames}")
            return embeds.reshape(-1, *embeds.shape[2:])
        return embeds.repeat_interleave(repeats=self.frames, dim=0)

    @contextlib.contextmanager
    def models(self, guider):
        with contextlib.ExitStack() as stack:
            module = stack.enter_context(self.unet.patched(batch_chunks=guider.chunks * self.batch))
            controlnets = control_modules(stack, self.unet, guider, self.batch)
            if self.windows is not None:
                stack.enter_context(installed_windows(module, self.windows.length, self.windows.stride,
                                                      self.windows.weighting))
                if self.windows.split_frames:
                    stack.enter_context(installed_split_inference(module, self.windows.split_pixels,
                                                                  self.windows.split_frames))
            yield module, controlnets

    def predict(self, models, model_input, t, embeds, guider, index, steps):
        module, controlnets = models
        if self.image is not None:  # image-conditioned motion UNets (PIA-style conv_in) as the other families
            image = guider.stack_image(self.image.to(model_input.device, model_input.dtype))
            model_input = torch.cat([model_input, image], dim=1)  # (chunks*B, C + C', F, H, W)
        kwargs = {}
        if self.unet.controls:  # the ControlNets see every frame alone, the same input folded
            kwargs = control_kwargs(self.unet, controlnets, fold_frames(model_input), t, embeds, guider, self.batch,
                                    list(range(self.frames)), index, steps)
        return module(model_input, t, encoder_hidden_states=embeds, **kwargs).sample  # (chunks*B, C, F, H, W)

    def step(self, scheduler, noise_pred, t, x, kwargs):
        out = scheduler.step(noise_pred, t, x, **kwargs)
        x0 = getattr(out, "pred_original_sample", None)
        if x0 is None:
            x0 = x0_from_epsilon(scheduler, noise_pred, x, t)
        return out.prev_sample, (fold_frames(x0) if x0 is not None else None)
