"""Cross-frame attention: self-attention whose keys and values come from other frames of the clip.

The UNet sees frames folded into the batch: a call holds `batch_chunks` clips stacked along the batch (per video,
2 with text classifier-free guidance: [uncond, cond]; 1 without; 3 for InstructPix2Pix), each with the F frames of
the clip in order. Only the denoise loop knows that number, per model call: it passes it to `UNetHandle.patched`,
which hands it to the patch when it builds the processors (so no workflow has to state it, and guidance off just
works). Modes, for frame i of a chunk:
- first_frame: keys/values of frame 0 (Text2Video-Zero). Arithmetic identical to diffusers'
  `CrossFrameAttnProcessor2_0`, which is installed on every attention layer (cross-attention passes through).
- sparse_causal: keys/values of frame 0 and frame i-1 concatenated along the tokens (Tune-A-Video; frame 0 uses
  frame 0 twice).
- full: the clip attends as one large image: queries of every frame against the keys/values of all F frames
  (ControlVideo). One scaled_dot_product_attention call over F*T tokens: on CPU (float32) and CUDA torch picks a
  fused flash / memory-efficient kernel, so memory stays linear in the tokens and the (F*T)^2 score matrix is never
  materialised (bench/controlvideo_memory.py measures it).
- references: every frame attends to the keys/values of the frames at fixed clip positions (`references`),
  concatenated along the tokens (ControlVideo's hierarchical sampler: a clip [key i, key i+1, inner frames...]
  attends to both key frames; first_frame is references (0,)).
Text cross-attention is untouched in every mode. Temporal attention layers of video UNets (modules whose class
name contains "Temporal", and AnimateDiff's motion modules) are left alone: they attend over frames already.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F

CrossFrameMode = Literal["first_frame", "sparse_causal", "full", "references"]


def _split_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(chunks*F, T, C) -> (chunks, F, T, C), as the reference's rearrange_3."""
    n, tokens, channels = x.size()
    return torch.reshape(x, (n // frames, frames, tokens, channels))


def _merge_frames(x: torch.Tensor) -> torch.Tensor:
    """(chunks, F, T, C) -> (chunks*F, T, C), as the reference's rearrange_4."""
    chunks, frames, tokens, channels = x.size()
    return torch.reshape(x, (chunks * frames, tokens, channels))


class CrossFrameAttnProcessor:
    """An attention processor (diffusers' processor protocol) implementing the modes above."""

    def __init__(self, mode: CrossFrameMode, batch_chunks: int, references: tuple[int, ...] = ()):
        assert mode in ("first_frame", "sparse_causal", "full", "references"), f"unknown cross-frame mode {mode!r}"
        assert batch_chunks >= 1, f"batch_chunks (clips per model call) must be >= 1, got {batch_chunks}"
        assert (mode == "references") == bool(references), (
            f"reference frames {references} go with mode 'references' only (mode {mode!r})")
        self.mode = mode
        self.batch_chunks = batch_chunks
        self.references = tuple(references)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        inner_dim = hidden_states.shape[-1]
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])

        query = attn.to_q(hidden_states)
        is_cross_attention = encoder_hidden_states is not None
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        head_dim = inner_dim // attn.heads

        if not is_cross_attention and self.mode == "full":
            assert attention_mask is None, "full cross-frame attention does not support attention masks"
            return self._full(attn, query, key, value, head_dim)

        if not is_cross_attention:
            assert key.size(0) % self.batch_chunks == 0, (
                f"attention batch {key.size(0)} does not split into the {self.batch_chunks} clips of this model call"
            )
            frames = max(1, key.size()[0] // self.batch_chunks)
            first = [0] * frames
            key = _split_frames(key, frames)
            value = _split_frames(value, frames)
            if self.mode == "first_frame":
                key = key[:, first]
                value = value[:, first]
            elif self.mode == "references":  # (chunks, F, T, C) -> (chunks, F, R*T, C): the same R frames for all
                assert all(-frames <= r < frames for r in self.references), (
                    f"reference positions {self.references} fall outside a clip of {frames} frames")
                key = _references(key, self.references)
                value = _references(value, self.references)
            else:  # sparse_causal: [frame 0, frame i-1] along the tokens
                previous = [max(i - 1, 0) for i in range(frames)]
                key = torch.cat([key[:, first], key[:, previous]], dim=2)
                value = torch.cat([value[:, first], value[:, previous]], dim=2)
            key = _merge_frames(key)
            value = _merge_frames(value)

        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        hidden_states = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False
        )  # (batch, heads, tokens, head_dim)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        return hidden_states

    def _full(self, attn, query, key, value, head_dim):
        n, tokens, _ = query.shape
        assert n % self.batch_chunks == 0, (
            f"attention batch {n} does not split into the {self.batch_chunks} clips of this model call"
        )
        chunks = self.batch_chunks
        frames = n // chunks

        def as_clip(x: torch.Tensor) -> torch.Tensor:  # (chunks*F, T, C) -> (chunks, heads, F*T, head_dim)
            return x.reshape(chunks, frames * tokens, attn.heads, head_dim).transpose(1, 2)

        out = F.scaled_dot_product_attention(as_clip(query), as_clip(key), as_clip(value), dropout_p=0.0)
        out = out.transpose(1, 2).reshape(n, tokens, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


def _references(x: torch.Tensor, positions: tuple[int, ...]) -> torch.Tensor:
    """(chunks, F, T, C) -> (chunks, F, R*T, C): the frames at `positions` side by side along the tokens, for
    every frame."""
    chunks, frames, tokens, channels = x.shape
    picked = x[:, list(positions)].reshape(chunks, 1, len(positions) * tokens, channels)
    return picked.expand(chunks, frames, -1, -1)


_TEMPORAL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _temporal_prefixes(module: torch.nn.Module) -> tuple[str, ...]:
    """Names of the temporal submodules (cached per module: loaded modules never change): 3-D UNets' temporal
    transformers and AnimateDiff's motion modules (not the "...Motion" blocks holding them: their spatial
    attention is per frame)."""
    if module not in _TEMPORAL:
        _TEMPORAL[module] = tuple(name for name, sub in module.named_modules()
                                  if name and ("Temporal" in type(sub).__name__
                                               or type(sub).__name__ == "AnimateDiffTransformer3D"))
    return _TEMPORAL[module]


@dataclasses.dataclass(frozen=True)
class CrossFrameAttention:
    """An attention patch (see `vdgraph_video.values.AttentionPatch`): one processor on every spatial attention."""

    mode: CrossFrameMode = "first_frame"
    references: tuple[int, ...] = ()
    """Clip positions whose keys/values every frame attends to (mode "references" only)."""

    def processors(self, module: torch.nn.Module, current: Mapping[str, Any], batch_chunks: int) -> dict[str, Any]:
        processor = CrossFrameAttnProcessor(self.mode, batch_chunks, self.references)
        temporal = _temporal_prefixes(module)
        out = dict(current)
        for name in current:
            if not any(name.startswith(prefix + ".") for prefix in temporal):
                out[name] = processor
        return out
