"""Prompt travel: per-frame text embeddings interpolated between key-frame prompts.

A schedule is written "0: a red circle | 8: a blue circle" (entries separated by "|" or new lines, each
"frame: prompt", frames from 0, strictly increasing). Its prompts are encoded in one batch and interpolated linearly
in conditioning space over the frames between key frames; the last key frame's prompt holds to the last frame. The
arithmetic is that of diffusers' AnimateDiffFreeNoiseMixin (`_encode_prompt_free_noise` with its `_lerp`), so a
schedule reproduces diffusers' dict prompts exactly. A text without "frame:" entries is not a schedule.

Families take per-frame embeddings (B, F, L, D): the 2-D and motion UNets as the batch of per-frame embeddings
they already use; the 3-D UNet (which repeats one embedding per clip inside its forward) through
`per_frame_cross_attention`, which hands every cross-attention layer the frame's own embedding.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch

from vdgraph_video.ops.text import PromptTooLong, count_tokens
from vdgraph_video.values import attention_layers

ENTRY = re.compile(r"^\s*(-?\d+)\s*:(.*)$", re.DOTALL)


class ScheduleError(ValueError):
    pass


def is_schedule(text: str) -> bool:
    """Whether `text` is written as key frames ("0: ..."); a plain prompt is not."""
    return bool(ENTRY.match(text.split("|")[0].split("\n")[0])) if text.strip() else False


def parse_schedule(text: str) -> list[tuple[int, str]]:
    """[(frame, prompt), ...] in the order written; malformed entries raise ScheduleError."""
    entries = []
    for part in re.split(r"[|\n]", text):
        if not part.strip():
            continue
        match = ENTRY.match(part)
        if match is None:
            raise ScheduleError(f"{part.strip()!r} is not a 'frame: prompt' entry")
        entries.append((int(match.group(1)), match.group(2).strip()))
    return entries


def schedule_problems(entries: list[tuple[int, str]], frames: int | None) -> list[str]:
    """Why a schedule cannot be used for `frames` frames (None: not known yet); [] when it can."""
    problems = []
    keys = [k for k, _ in entries]
    if keys and keys[0] != 0:
        problems.append(f"the first key frame is {keys[0]}, not 0: every frame needs a prompt, so the schedule must "
                        "start at frame 0")
    unordered = [f"{a} then {b}" for a, b in zip(keys, keys[1:]) if b <= a]
    if unordered:
        problems.append("key frames must be strictly increasing, but the schedule has " + ", ".join(unordered))
    if frames is not None:
        outside = [k for k in keys if not 0 <= k < frames]
        if outside:
            problems.append(f"key frame{'s' if len(outside) > 1 else ''} {', '.join(map(str, outside))} "
                            f"{'are' if len(outside) > 1 else 'is'} outside the video's frames 0 .. {frames - 1}")
    return problems


def key_frames(text: str, frames: int) -> dict[int, str]:
    """{frame: prompt} of a schedule or a plain prompt (frame 0), with the last prompt repeated at the last frame
    (diffusers' FreeNoise prompt dict)."""
    entries = parse_schedule(text) if is_schedule(text) else [(0, text)]
    problems = schedule_problems(entries, frames)
    if problems:
        raise ScheduleError("; ".join(problems))
    keys = dict(sorted(entries))
    keys[frames - 1] = keys[list(keys)[-1]]
    return keys


@torch.no_grad()
def encode_batch(text_encoder, tokenizer, texts: list[str], device: torch.device, truncate: bool = False
                 ) -> torch.Tensor:
    """(N, L, D) embeddings of `texts` encoded in one batch, as diffusers' encode_prompt encodes a list."""
    max_length = tokenizer.model_max_length
    for text in texts:
        n = count_tokens(tokenizer, text)
        if n > max_length and not truncate:
            raise PromptTooLong(f"the prompt {text!r} is {n} tokens long but the text encoder takes {max_length} "
                                "(start and end tokens included); shorten it or set truncate to true")
    tokens = tokenizer(texts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    mask = tokens.attention_mask.to(device) if getattr(text_encoder.config, "use_attention_mask", False) else None
    embeds = text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]
    return embeds.to(dtype=text_encoder.dtype, device=device)


def lerp(start: int, end: int, start_tensor: torch.Tensor, end_tensor: torch.Tensor) -> torch.Tensor:
    """(end - start + 1, L, D): frames start..end, linear in the embedding (diffusers' FreeNoise `_lerp`)."""
    count = end - start + 1
    values = []
    for i in range(count):
        alpha = i / (count - 1)
        values.append((1 - alpha) * start_tensor + alpha * end_tensor)
    return torch.cat(values)


def interpolate(keys: dict[int, str], embeds: torch.Tensor, frames: int) -> torch.Tensor:
    """(F, L, D) per-frame embeddings from the key frames' (K, L, D) embeddings."""
    indices = list(keys)
    out = embeds.new_zeros((frames, *embeds.shape[1:]))
    for i in range(len(indices) - 1):
        start, end = indices[i], indices[i + 1]
        out[start:end + 1] = lerp(start, end, embeds[i].unsqueeze(0), embeds[i + 1].unsqueeze(0))
    return out


def travel_embeddings(text_encoder, tokenizer, text: str, frames: int, device: torch.device,
                      truncate: bool = False) -> torch.Tensor:
    """(1, F, L, D) per-frame embeddings of a schedule (or of a plain prompt, held over every frame)."""
    keys = key_frames(text, frames)
    embeds = encode_batch(text_encoder, tokenizer, list(keys.values()), device, truncate)
    return interpolate(keys, embeds, frames)[None]


class PerFrameTextProcessor:
    """An attention processor that gives a cross-attention layer per-frame text embeddings instead of the one
    per clip that a 3-D UNet repeats over its frames; self-attention calls pass through unchanged."""

    def __init__(self, inner, embeds: torch.Tensor):
        self.inner, self.embeds = inner, embeds  # embeds: (chunks*B*F, L, D)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        if encoder_hidden_states is not None:
            assert encoder_hidden_states.shape[0] == self.embeds.shape[0], (
                f"a cross-attention call holds {encoder_hidden_states.shape[0]} items, the per-frame text "
                f"embeddings {self.embeds.shape[0]}")
            encoder_hidden_states = self.embeds
        return self.inner(attn, hidden_states, encoder_hidden_states, *args, **kwargs)


@contextlib.contextmanager
def per_frame_cross_attention(module: torch.nn.Module, embeds: torch.Tensor) -> Iterator[None]:
    """Per-frame text embeddings (chunks*B*F, L, D) in every cross-attention layer (attn2) of `module` for the
    context's duration; the processors in force are restored in `finally`."""
    layers = {name: layer for name, layer in attention_layers(module).items() if name.endswith("attn2.processor")}
    saved = {name: layer.processor for name, layer in layers.items()}
    try:
        for name, layer in layers.items():
            layer.set_processor(PerFrameTextProcessor(saved[name], embeds))
        yield
    finally:
        for name, layer in layers.items():
            layer.set_processor(saved[name])
