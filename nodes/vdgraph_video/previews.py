"""Previews of the denoiser's x0 prediction while it samples: a step hook that turns x0 into a small PNG strip.

Two ways to colour latents (vdgraph.previews.PreviewSettings.source):
- `latent`: a linear map fitted per model (RGB = latents @ factors + bias, the latent-to-RGB factors image UIs
  use), read from `vae/latent_rgb.json` in the model folder. A model without that file gets no latent previews
  (nothing is guessed). shapes-64 ships one (fitted by `python -m vdgraph_shapes.fit_latent_rgb`).
- `vae`: a real decode of the shown frames with the model folder's VAE (loaded on the first preview of the node).

The hook only reads x0 (or the current latents, for a sampler that predicts no x0): the denoised result is the
same with and without previews.
"""

from __future__ import annotations

import io
import json
import math
import os
from typing import Any

import torch

from vdgraph_video.ops.denoise import StepState

LATENT_RGB_FILE = "latent_rgb.json"


def model_folder(unet: Any) -> str | None:
    """The folder a UNet handle's module was loaded from (diffusers records it in the config), if it exists."""
    module = getattr(unet, "module", None)
    folder = getattr(getattr(module, "config", None), "_name_or_path", None)
    return folder if isinstance(folder, str) and folder and os.path.isdir(folder) else None


def read_latent_rgb(folder: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(factors (C, 3), bias (3,)) from `<folder>/vae/latent_rgb.json`, or None when the model ships none."""
    path = os.path.join(folder, "vae", LATENT_RGB_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    factors = torch.tensor(data["factors"], dtype=torch.float32)
    bias = torch.tensor(data["bias"], dtype=torch.float32)
    if factors.ndim != 2 or factors.shape[1] != 3 or bias.shape != (3,):
        raise ValueError(f"{path}: factors must be (latent channels) x 3 and bias 3 numbers")
    return factors, bias


def latent_to_rgb(latents: torch.Tensor, factors: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) latents -> (N, h, w, 3) colours in [0, 1] by the linear map."""
    x = latents.detach().float().cpu().permute(0, 2, 3, 1)  # (N, h, w, C)
    return (x @ factors + bias).clamp(0, 1)


def png_strip(frames: torch.Tensor, size: int) -> tuple[bytes, int, int]:
    """(N, h, w, 3) in [0, 1] -> a PNG of the frames side by side, each scaled (nearest) to >= `size` pixels on its
    short side; returns (png bytes, width, height)."""
    from PIL import Image

    n, h, w, _ = frames.shape
    scale = max(1, math.ceil(size / min(h, w)))
    if scale > 1:
        frames = frames.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    strip = torch.cat(list(frames), dim=1)  # (H, N*W, 3)
    pixels = (strip * 255).round().to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue(), int(pixels.shape[1]), int(pixels.shape[0])


def shown_frames(count: int, most: int) -> list[int]:
    """At most `most` frame indices of `count`, evenly spaced, the first and last included."""
    if count <= most:
        return list(range(count))
    if most == 1:
        return [0]
    return sorted({round(i * (count - 1) / (most - 1)) for i in range(most)})


class PreviewHook:
    """A denoise-loop step hook sending the x0 prediction of clip 0 as a `preview` event (see ctx.preview)."""

    def __init__(self, ctx: Any, unet: Any, start: int, total: int) -> None:
        self.ctx = ctx
        self.settings = ctx.previews
        self.folder = model_folder(unet)
        self.start = start
        self.total = total
        self._latent_rgb: tuple[torch.Tensor, torch.Tensor] | None = None
        self._vae: Any = None

    def before(self, state: StepState) -> None:
        pass

    def after(self, state: StepState) -> None:
        done = state.index - self.start + 1
        if not self.ctx.wants_preview(done, self.total):
            return
        latents = (state.family.to_video(state.x0) if state.x0 is not None
                   else state.family.end(state.latents))  # (B, C, F, h, w)
        picked = latents[0, :, shown_frames(latents.shape[2], self.settings.frames)].transpose(0, 1)  # (n, C, h, w)
        rgb = self.colours(picked)
        if rgb is None:
            return
        png, width, height = png_strip(rgb, self.settings.size)
        self.ctx.preview(done, self.total, png, width, height, frames=rgb.shape[0],
                         source="vae" if self.settings.source == "vae" else "latent_rgb")

    def colours(self, latents: torch.Tensor) -> torch.Tensor | None:
        if self.folder is None:
            return None
        if self.settings.source == "vae":
            return self.decode(latents)
        if self._latent_rgb is None:
            self._latent_rgb = read_latent_rgb(self.folder) or (torch.empty(0), torch.empty(0))
        factors, bias = self._latent_rgb
        if factors.numel() == 0 or factors.shape[0] != latents.shape[1]:
            return None
        return latent_to_rgb(latents, factors, bias)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        from vdgraph_video.ops.vae import decode

        if self._vae is None:
            import diffusers

            self._vae = diffusers.AutoencoderKL.from_pretrained(
                self.folder, subfolder="vae", use_safetensors=True, torch_dtype=latents.dtype).to(latents.device)
            self._vae.eval()
        return decode(self._vae, latents.transpose(0, 1).unsqueeze(0))  # (n, H, W, 3)


def preview_hooks(ctx: Any, unet: Any, start: int, end: int) -> tuple[PreviewHook, ...]:
    """The step hooks that send previews for steps [start, end) when the run asks for them, else none."""
    if getattr(ctx, "previews", None) is None or end <= start:
        return ()
    return (PreviewHook(ctx, unet, start, end - start),)
