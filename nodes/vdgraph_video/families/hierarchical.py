"""ControlVideo's hierarchical sampler as a model-family adapter: a 2-D UNet (frames folded into the batch) called
once on the key frames and once per clip between two key frames, every step.

The frame plan is `vdgraph_video.ops.hierarchical`. Each call installs its own self-attention for its duration
(restored in `finally`): fully cross-frame attention for the key frames' call, and for a clip call
[key i, key i+1, inner...] attention whose keys and values are those of clip positions 0 and 1, the two key frames
(the paper's choice; ControlVideo's code takes positions [0, -1], the first key frame and the clip's last inner
frame). These patches are appended to the UNet value's own, so they decide its spatial self-attention. The key
frames' predictions come from their own call; a clip call keeps its inner frames' predictions only. ControlNets
attached to the UNet run per call on the call's frames and condition images (with the call's attention when they
share the UNet's). The scheduler steps on all frames at once, which for DDIM is the same arithmetic per frame as the
reference's step per group.
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch

from vdgraph_video.families.sd import FoldedFramesUNet
from vdgraph_video.ops.attention import CrossFrameAttention
from vdgraph_video.ops.hierarchical import clip_calls, default_window, key_frames
from vdgraph_video.values import UNetHandle

KEY_ATTENTION = CrossFrameAttention("full")
CLIP_ATTENTION = CrossFrameAttention("references", references=(0, 1))


class HierarchicalFrames:
    def __init__(self, unet: UNetHandle, batch: int, frames: int, window: int):
        if unet.is_3d:
            raise ValueError("the hierarchical sampler calls a 2-D UNet on chosen frames; a 3-D video UNet's temporal "
                             "layers see the whole clip: use a 2-D UNet")
        if batch != 1:
            raise ValueError(f"the hierarchical sampler takes one video (batch 1), got batch {batch}")
        if unet.family == "SDXL":
            raise ValueError("port 'frame_plan': the hierarchical sampler calls Stable Diffusion's 2-D UNet family; "
                             "SDXL's (with its added conditions) is not supported by it yet: unlink frame_plan")
        self.frames = frames
        self.whole = FoldedFramesUNet(unet, batch, frames)  # layout, embeddings, step, condition-frame checks
        self.keys = key_frames(frames, window)
        self.clips = clip_calls(frames, window)
        self.key_pass = FoldedFramesUNet(unet.with_patch(KEY_ATTENTION), batch, frames)
        self.clip_pass = FoldedFramesUNet(unet.with_patch(CLIP_ATTENTION), batch, frames)

    def begin(self, latents: torch.Tensor) -> torch.Tensor:
        return self.whole.begin(latents)

    def end(self, x: torch.Tensor) -> torch.Tensor:
        return self.whole.end(x)

    def to_video(self, x: torch.Tensor) -> torch.Tensor:
        return self.whole.to_video(x)

    def embeddings(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.whole.embeddings(embeds)

    def prepare(self, conditioning, guider) -> None:
        self.whole.prepare(conditioning, guider)

    @contextlib.contextmanager
    def models(self, guider):
        yield None  # nothing for the whole loop: every call installs its own attention (see `predict`)

    def calls(self) -> list[tuple[FoldedFramesUNet, list[int], slice]]:
        """(adapter with the call's attention, frames of the call, positions whose predictions are kept)."""
        return [(self.key_pass, self.keys, slice(None))] + [(self.clip_pass, clip, slice(2, None))
                                                            for clip in self.clips]

    def predict(self, models, model_input, t, embeds, guider, index, steps):
        chunks = guider.chunks
        _, c, h, w = model_input.shape
        x = model_input.reshape(chunks, self.frames, c, h, w)
        e = embeds.reshape(chunks, self.frames, *embeds.shape[1:])
        pred = torch.empty_like(x)
        for adapter, frames, keep in self.calls():
            n = len(frames)
            with adapter.models(guider) as (unet, controlnets):
                out = adapter.call_frames(unet, controlnets, x[:, frames].reshape(chunks * n, c, h, w), t,
                                    e[:, frames].reshape(chunks * n, *e.shape[2:]), guider, index, steps, frames)
            pred[:, frames[keep]] = out.reshape(chunks, n, c, h, w)[:, keep]
        return pred.reshape(chunks * self.frames, c, h, w)

    def step(self, scheduler, noise_pred, t, x, kwargs):
        return self.whole.step(scheduler, noise_pred, t, x, kwargs)


@dataclasses.dataclass(frozen=True)
class HierarchicalPlan:
    """A frame plan (`vdgraph_video.ops.denoise.FramePlan`): the hierarchical sampler with this window (0: the
    paper's int(sqrt(F)), at least 3)."""

    window: int = 0

    def window_for(self, frames: int) -> int:
        return self.window or default_window(frames)

    def family(self, unet: UNetHandle, batch: int, frames: int) -> HierarchicalFrames:
        return HierarchicalFrames(unet, batch, frames, self.window_for(frames))

    def __vdgraph_nbytes__(self) -> int:
        return 64
