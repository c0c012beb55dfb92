"""VAE decode (latents -> frames) and encode (frames -> latents), in chunks of frames to bound memory."""

from __future__ import annotations

import inspect

import torch

from vdgraph_video.ops.latents import fold_frames, unfold_frames


def _chunks(n: int, size: int) -> list[slice]:
    size = n if size <= 0 else size
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


@torch.no_grad()
def decode(vae: torch.nn.Module, latents: torch.Tensor, chunk_size: int = 0,
           unscale: str = "reciprocal") -> torch.Tensor:
    """Latents (B, C, F, h, w) -> frames (B*F, H, W, 3) float32 in [0, 1] on the CPU.

    Arithmetic of diffusers' decode_latents: (1 / scaling_factor) * latents ("reciprocal", TextToVideoZeroPipeline,
    TextToVideoSDPipeline) or latents / scaling_factor ("divide", StableDiffusionPipeline and its ControlNet
    pipeline; the two round differently), decode, (x / 2 + 0.5).clamp(0, 1). The output is cast to float32 before
    the [-1, 1] -> [0, 1] mapping (identical in fp32, more precise in fp16). chunk_size 0 decodes all frames in
    one call. A temporal decoder (AutoencoderKLTemporalDecoder, Stable Video Diffusion) mixes the frames of each
    call: it is told the call's frame count, as StableVideoDiffusionPipeline.decode_latents does, so chunk_size is
    its decode_chunk_size (fewer frames per call bound memory and change the result).
    """
    assert unscale in ("reciprocal", "divide"), f"unscale must be 'reciprocal' or 'divide', got {unscale!r}"
    folded = fold_frames(latents)  # (B*F, C, h, w)
    if unscale == "divide":
        folded = folded / vae.config.scaling_factor
    else:
        folded = 1 / vae.config.scaling_factor * folded
    temporal = "num_frames" in inspect.signature(vae.forward).parameters  # AutoencoderKLTemporalDecoder
    frames = []
    for part in _chunks(folded.shape[0], chunk_size):
        extra = {"num_frames": part.stop - part.start} if temporal else {}
        image = vae.decode(folded[part], **extra).sample.float()  # (n, 3, H, W) in about [-1, 1]
        frames.append((image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu())  # (n, H, W, 3)
    return torch.cat(frames) if len(frames) > 1 else frames[0].contiguous()


@torch.no_grad()
def encode(
    vae: torch.nn.Module,
    frames: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
    sample: bool = False,
    generator: torch.Generator | None = None,
    chunk_size: int = 0,
    scaled: bool = True,
) -> torch.Tensor:
    """Frames (F, H, W, 3) in [0, 1] -> latents (1, C, F, h, w) times the VAE's scaling factor (scaled=False: as
    they come out of the VAE, InstructPix2Pix's image latents).

    sample=False takes the posterior mean; sample=True draws from it with `generator` (chunk by chunk, in order).
    """
    assert frames.ndim == 4 and frames.shape[-1] == 3, f"frames must be (F, H, W, 3), got {tuple(frames.shape)}"
    latents = []
    for part in _chunks(frames.shape[0], chunk_size):
        x = frames[part].permute(0, 3, 1, 2).to(device=device, dtype=dtype) * 2 - 1  # (n, 3, H, W) in [-1, 1]
        dist = vae.encode(x).latent_dist
        latents.append(dist.sample(generator) if sample else dist.mode())
    folded = torch.cat(latents)  # (F, C, h, w)
    if scaled:
        folded = folded * vae.config.scaling_factor
    return unfold_frames(folded, 1).contiguous()
