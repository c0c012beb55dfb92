"""FreeNoise (Qiu et al. 2023) as diffusers' AnimateDiffFreeNoiseMixin computes it: context windows over frames in
the motion modules, and shuffled-context initial noise.

- Context windows: every temporal transformer block of the motion modules runs its attention on windows of
  `length` frames every `stride` frames (plus one window ending at the last frame when they do not tile the clip),
  with positional embeddings counted from each window's start, and blends the overlapping windows with per-frame
  weights; the feed-forward then runs on all frames. A video longer than the motion module's window (its
  positional embeddings) renders this way. `installed_windows` swaps diffusers' FreeNoiseTransformerBlock in for
  the duration of a denoise call, sharing the block's own submodules (no weight is copied or changed), and puts the
  original blocks back in `finally`.
- Shuffled-context noise: after the first `length` frames, each run of `stride` frames repeats a random
  permutation of the frames `length` before it (so windows see the same noise in a new order).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch

NoiseType = Literal["shuffle_context", "random"]
Weighting = Literal["flat", "pyramid", "delayed_reverse_sawtooth"]


def shuffle_context(latents: torch.Tensor, length: int, stride: int, generator: torch.Generator) -> torch.Tensor:
    """(B, C, F, H, W) noise -> a new tensor whose frames from `length` on repeat shuffled earlier frames
    (diffusers' `_prepare_latents_free_noise` with noise_type "shuffle_context": the permutations are drawn from
    `generator` in the same order)."""
    assert latents.ndim == 5, f"latents must be (B, C, F, H, W), got {tuple(latents.shape)}"
    assert 1 <= stride <= length, f"context stride {stride} must be in 1 .. context length {length}"
    out = latents.clone()
    frames = out.shape[2]
    for i in range(length, frames, stride):
        start = max(0, i - length)
        end = min(frames, start + stride)
        n = end - start
        if n == 0:
            break
        indices = torch.LongTensor(list(range(start, end)))
        shuffled = indices[torch.randperm(n, generator=generator)]
        stop = min(frames, i + n)
        out[:, :, i:stop] = out[:, :, shuffled[:stop - i]]
    return out


def temporal_blocks(module: torch.nn.Module) -> list[tuple[torch.nn.ModuleList, int]]:
    """(list, index) of every transformer block inside the motion modules of a UNetMotionModel."""
    blocks = [*module.down_blocks, module.mid_block, *module.up_blocks]
    found = []
    for block in blocks:
        for motion_module in getattr(block, "motion_modules", None) or ():
            for k in range(len(motion_module.transformer_blocks)):
                found.append((motion_module.transformer_blocks, k))
    return found


def windowed_block(block: torch.nn.Module, length: int, stride: int, weighting: str) -> torch.nn.Module:
    """diffusers' FreeNoiseTransformerBlock running `block`'s own submodules (built on the meta device, so no
    weight is allocated, then given the block's children)."""
    from diffusers.models.attention import FreeNoiseTransformerBlock

    with torch.device("meta"):
        windowed = FreeNoiseTransformerBlock(
            dim=block.dim, num_attention_heads=block.num_attention_heads, attention_head_dim=block.attention_head_dim,
            dropout=block.dropout, cross_attention_dim=block.cross_attention_dim, activation_fn=block.activation_fn,
            attention_bias=block.attention_bias, only_cross_attention=block.only_cross_attention,
            double_self_attention=block.double_self_attention, positional_embeddings=block.positional_embeddings,
            num_positional_embeddings=block.num_positional_embeddings, context_length=length, context_stride=stride,
            weighting_scheme=weighting)
    for name, child in block.named_children():
        setattr(windowed, name, child)
    windowed.set_chunk_feed_forward(block._chunk_size, block._chunk_dim)
    windowed.train(block.training)
    return windowed


@contextlib.contextmanager
def installed_windows(module: torch.nn.Module, length: int, stride: int, weighting: str) -> Iterator[None]:
    """FreeNoise context windows in every motion module of `module` for the context's duration; restored after."""
    saved = [(container, k, container[k]) for container, k in temporal_blocks(module)]
    try:
        for container, k, block in saved:
            container[k] = windowed_block(block, length, stride, weighting)
        yield
    finally:
        for container, k, block in saved:
            container[k] = block


def _split_sites(module: torch.nn.Module, spatial: int, temporal: int):
    """(owner, key, split size, inputs to split) of every submodule diffusers' enable_free_noise_split_inference
    wraps: a motion module's proj_in / transformer blocks / proj_out over B*H*W in chunks of `spatial`, the spatial
    attentions, resnets and down/upsamplers over B*F in chunks of `temporal`. `key` is an attribute name or a list
    index."""
    for block in [*module.down_blocks, module.mid_block, *module.up_blocks]:
        for motion_module in getattr(block, "motion_modules", None) or ():
            yield motion_module, "proj_in", spatial, ["input"]
            for k in range(len(motion_module.transformer_blocks)):
                yield motion_module.transformer_blocks, k, spatial, ["hidden_states", "encoder_hidden_states"]
            yield motion_module, "proj_out", spatial, ["input"]
        for attribute, inputs in (("attentions", ["hidden_states", "encoder_hidden_states"]),
                                  ("resnets", ["input_tensor", "temb"]), ("downsamplers", ["hidden_states"]),
                                  ("upsamplers", ["hidden_states"])):
            for k in range(len(getattr(block, attribute, None) or ())):
                yield getattr(block, attribute), k, temporal, inputs


def _get(owner, key):
    return owner[key] if isinstance(key, int) else getattr(owner, key)


def _set(owner, key, value) -> None:
    if isinstance(key, int):
        owner[key] = value
    else:
        setattr(owner, key, value)


@contextlib.contextmanager
def installed_split_inference(module: torch.nn.Module, spatial: int, temporal: int) -> Iterator[None]:
    """diffusers' FreeNoise split inference in `module` for the context's duration (restored after): the motion
    modules see at most `spatial` pixels' frame sequences per call and the spatial layers at most `temporal` frames,
    so activation memory is bounded by the split, not the video's length."""
    from diffusers.pipelines.free_noise_utils import SplitInferenceModule

    sites = list(_split_sites(module, spatial, temporal))
    saved = [(owner, key, _get(owner, key)) for owner, key, _, _ in sites]
    try:
        for owner, key, size, inputs in sites:
            _set(owner, key, SplitInferenceModule(_get(owner, key), size, 0, inputs))
        yield
    finally:
        for owner, key, original in reversed(saved):
            _set(owner, key, original)
