"""The denoising loop over a range of scheduler steps, for 2-D (frames folded) and 3-D video UNets.

Arithmetic and call order follow diffusers' TextToVideoZeroPipeline.backward_loop (2-D UNet) and
TextToVideoSDPipeline (3-D UNet) exactly: CFG batch [uncond, cond]; scale_model_input on the doubled input;
guidance uncond + g (cond - uncond); the scheduler step on the folded (B*F, C, H, W) latents, so the variance draws
of eta > 0 have the reference's shapes and order.

The loop decides the batch layout of every UNet call: halves x B clips of F frames stacked along the batch
([uncond, cond] with guidance, cond alone without; B batch items in each) and tells the attention patches through
`UNetHandle.patched`, so they never guess it.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import torch

from vdgraph_video.ops.latents import fold_frames, unfold_frames
from vdgraph_video.values import Conditioning, UNetHandle


@dataclasses.dataclass
class DenoiseResult:
    latents: torch.Tensor  # (B, C, F, H, W) after the last step
    x0: torch.Tensor | None  # (B, C, F, H, W) the last step's prediction of the clean latents


def step_kwargs(scheduler, eta: float, generator: torch.Generator | None) -> dict:
    """eta and generator for schedulers whose step accepts them (diffusers' prepare_extra_step_kwargs)."""
    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs = {}
    if "eta" in accepted:
        kwargs["eta"] = eta
    if "generator" in accepted:
        kwargs["generator"] = generator
    return kwargs


def guidance_embeddings(conditioning: Conditioning, batch: int, frames: int, guided: bool, fold: bool) -> torch.Tensor:
    """Encoder states for one UNet call: [uncond, cond] halves (or cond alone), each (B, L, D), per frame if folded.

    Folded (2-D UNet): every frame gets its item's embedding, frames contiguous inside each half,
    (halves*B*F, L, D), as TextToVideoZeroPipeline's `prompt_embeds[:, None].repeat(1, F, 1, 1)`.
    """
    def per_batch(x: torch.Tensor) -> torch.Tensor:
        assert x.shape[0] in (1, batch), f"conditioning batch {x.shape[0]} does not match latents batch {batch}"
        return x if x.shape[0] == batch else x.expand(batch, -1, -1)

    embeds = torch.cat([per_batch(conditioning.uncond), per_batch(conditioning.cond)]) if guided else per_batch(
        conditioning.cond)
    if fold:
        n, length, width = embeds.shape
        embeds = embeds[:, None].repeat(1, frames, 1, 1).reshape(n * frames, length, width)
    return embeds


def anchor_chunks(frames: int, chunk_size: int) -> list[list[int]]:
    """Frame indices per UNet call when denoising `chunk_size` frames at a time with frame 0 as the anchor.

    Every chunk starts with frame 0; the others are consecutive. chunk_size 0 (or >= frames) is one call with all.
    """
    if chunk_size <= 0 or chunk_size >= frames:
        return [list(range(frames))]
    assert chunk_size >= 2, f"chunk_size must be 0 or >= 2 (frame 0 plus at least one frame), got {chunk_size}"
    step = chunk_size - 1
    return [[0] + list(range(s, min(s + step, frames))) for s in range(1, frames, step)]


def _predict_chunked(module, model_input, t, embeds, halves: int, frames: int, chunks: list[list[int]]):
    """UNet noise prediction of a folded (halves*F, C, H, W) input, frames in anchor chunks; same layout out."""
    _, c, h, w = model_input.shape
    x = model_input.reshape(halves, frames, c, h, w)
    e = embeds.reshape(halves, frames, *embeds.shape[1:])
    pred = torch.empty_like(x)
    for k, index in enumerate(chunks):
        n = len(index)
        out = module(x[:, index].reshape(halves * n, c, h, w), t,
                     encoder_hidden_states=e[:, index].reshape(halves * n, *e.shape[2:])).sample
        out = out.reshape(halves, n, c, h, w)
        if k == 0:
            pred[:, 0] = out[:, 0]
        pred[:, index[1:]] = out[:, 1:]
    return pred.reshape(halves * frames, c, h, w)


def _x0_from_epsilon(scheduler, noise_pred: torch.Tensor, sample: torch.Tensor, t) -> torch.Tensor | None:
    """x0 = (x - sqrt(1 - abar) eps) / sqrt(abar), for schedulers whose step output has no x0."""
    if getattr(scheduler.config, "prediction_type", "epsilon") != "epsilon" or not hasattr(scheduler, "alphas_cumprod"):
        return None
    abar = scheduler.alphas_cumprod[int(t)].to(sample.device, sample.dtype)
    return (sample - (1 - abar).sqrt() * noise_pred) / abar.sqrt()


@torch.no_grad()
def denoise(
    unet: UNetHandle,
    scheduler,
    conditioning: Conditioning,
    latents: torch.Tensor,
    guidance: float,
    start: int,
    end: int,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    chunk_size: int = 0,
    on_step: Callable[[int, int], None] | None = None,
) -> DenoiseResult:
    """Run scheduler steps [start, end) on latents (B, C, F, H, W); `scheduler` is advanced in place (pass a copy).

    Attention patches of `unet` are installed for the duration of the call and restored in `finally`; every UNet
    call stacks halves x B clips along its batch ([uncond, cond] with guidance, cond alone without, each with the
    B items' frames), which the patches are told.
    """
    assert latents.ndim == 5, f"latents must be (B, C, F, H, W), got {tuple(latents.shape)}"
    b, c, f, h, w = latents.shape
    guided = guidance > 1.0  # as the reference: guidance 1 means no CFG
    halves = 2 if guided else 1  # [uncond, cond] or cond alone
    fold = not unet.is_3d
    chunks = anchor_chunks(f, chunk_size)
    if len(chunks) > 1:
        if unet.is_3d:
            raise ValueError("chunked denoising needs a 2-D UNet: a 3-D UNet's temporal layers see the whole clip")
        assert b == 1, f"chunked denoising supports batch 1, got {b}"
    embeds = guidance_embeddings(conditioning, b, f, guided, fold)
    kwargs = step_kwargs(scheduler, eta, generator)
    timesteps = scheduler.timesteps
    x = fold_frames(latents) if fold else latents  # (B*F, C, H, W) or (B, C, F, H, W)
    x0 = None
    total = end - start
    with unet.patched(batch_chunks=halves * b) as module:  # clips per UNet call, chunked (b == 1) or not
        for done, i in enumerate(range(start, end)):
            t = timesteps[i]
            model_input = torch.cat([x] * 2) if guided else x
            model_input = scheduler.scale_model_input(model_input, t)
            if len(chunks) > 1:
                noise_pred = _predict_chunked(module, model_input, t, embeds, halves, f, chunks)
            else:
                noise_pred = module(model_input, t, encoder_hidden_states=embeds).sample
            if guided:
                noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
                noise_pred = noise_pred_uncond + guidance * (noise_pred_text - noise_pred_uncond)
            if fold:
                out = scheduler.step(noise_pred, t, x, **kwargs)
                x0 = getattr(out, "pred_original_sample", None)
                if x0 is None:
                    x0 = _x0_from_epsilon(scheduler, noise_pred, x, t)
                x = out.prev_sample
            else:  # the 3-D reference steps on folded latents; fold, step, unfold exactly as it does
                x_folded = fold_frames(x)
                pred_folded = fold_frames(noise_pred)
                out = scheduler.step(pred_folded, t, x_folded, **kwargs)
                x0 = getattr(out, "pred_original_sample", None)
                if x0 is None:
                    x0 = _x0_from_epsilon(scheduler, pred_folded, x_folded, t)
                x = out.prev_sample[None, :].reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)
            if on_step is not None:
                on_step(done + 1, total)
    if fold:
        x = unfold_frames(x, b)
    if x0 is not None:
        x0 = unfold_frames(x0, b).contiguous()  # x0 is folded in both paths
    return DenoiseResult(latents=x.contiguous(), x0=x0)
