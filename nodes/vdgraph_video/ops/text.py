"""Prompt -> CLIP-style text embeddings, as diffusers' StableDiffusionPipeline.encode_prompt computes them."""

from __future__ import annotations

import torch

from vdgraph.errors import short_repr


class PromptTooLong(ValueError):
    pass


def count_tokens(tokenizer, text: str) -> int:
    """Tokens of `text` including the start and end tokens, untruncated."""
    return len(tokenizer(text, truncation=False).input_ids)


def check_length(tokenizer, text: str, truncate: bool) -> None:
    """PromptTooLong when `text` has more tokens than the tokenizer's max length, unless `truncate`."""
    max_length = tokenizer.model_max_length
    n = count_tokens(tokenizer, text)
    if n > max_length and not truncate:
        raise PromptTooLong(  # the text says which prompt it is (the prompt or the negative one)
            f"the prompt is {n} tokens long but the text encoder takes {max_length} (start and end tokens included): "
            f"{short_repr(text, 60)}; shorten it or set truncate to true to cut the tail"
        )


@torch.no_grad()
def encode_text(text_encoder, tokenizer, text: str, device: torch.device, truncate: bool = False) -> torch.Tensor:
    """(1, L, D) last hidden states of `text` padded to the tokenizer's max length (77 for CLIP).

    Longer prompts raise PromptTooLong unless `truncate` (then the tail is cut, as diffusers does with a warning).
    """
    max_length = tokenizer.model_max_length
    check_length(tokenizer, text, truncate)
    ids = tokenizer(text, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt").input_ids
    mask = None
    if getattr(text_encoder.config, "use_attention_mask", False):
        mask = tokenizer(text, padding="max_length", max_length=max_length, truncation=True,
                         return_tensors="pt").attention_mask.to(device)
    embeds = text_encoder(ids.to(device), attention_mask=mask)[0]
    return embeds.to(dtype=text_encoder.dtype, device=device)


@torch.no_grad()
def encode_text_penultimate(text_encoders, tokenizers, text: str, device: torch.device,
                            truncate: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """SDXL's prompt encoding, as StableDiffusionXLPipeline.encode_prompt computes it: (1, L, D1 + D2) the
    penultimate hidden states of every encoder concatenated on the channel axis, in the last encoder's dtype,
    and (1, K) the pooled embedding (the projected output of the encoder with a projection,
    CLIPTextModelWithProjection).

    Each tokenizer pads to its max length (77); longer prompts raise PromptTooLong unless `truncate`."""
    hidden, pooled = [], None
    for encoder, tokenizer in zip(text_encoders, tokenizers, strict=True):
        check_length(tokenizer, text, truncate)
        ids = tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        out = encoder(ids.to(device), output_hidden_states=True)
        if pooled is None and out[0].ndim == 2:  # text_embeds (1, K) of a projection model
            pooled = out[0]
        hidden.append(out.hidden_states[-2])  # (1, L, D_k)
    assert pooled is not None, "no text encoder gave a pooled embedding (SDXL's second one has a projection)"
    embeds = torch.concat(hidden, dim=-1)
    return embeds.to(dtype=text_encoders[-1].dtype, device=device), pooled
