"""Prompt -> CLIP-style text embeddings, as diffusers' StableDiffusionPipeline.encode_prompt computes them."""

from __future__ import annotations

import torch


class PromptTooLong(ValueError):
    pass


def count_tokens(tokenizer, text: str) -> int:
    """Tokens of `text` including the start and end tokens, untruncated."""
    return len(tokenizer(text, truncation=False).input_ids)


@torch.no_grad()
def encode_text(text_encoder, tokenizer, text: str, device: torch.device, truncate: bool = False) -> torch.Tensor:
    """(1, L, D) last hidden states of `text` padded to the tokenizer's max length (77 for CLIP).

    Longer prompts raise PromptTooLong unless `truncate` (then the tail is cut, as diffusers does with a warning).
    """
    max_length = tokenizer.model_max_length
    n = count_tokens(tokenizer, text)
    if n > max_length and not truncate:
        raise PromptTooLong(
            f"the prompt is {n} tokens long but the text encoder takes {max_length} (start and end tokens included); "
            "shorten it or set truncate to true to cut the tail"
        )
    ids = tokenizer(text, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt").input_ids
    mask = None
    if getattr(text_encoder.config, "use_attention_mask", False):
        mask = tokenizer(text, padding="max_length", max_length=max_length, truncation=True,
                         return_tensors="pt").attention_mask.to(device)
    embeds = text_encoder(ids.to(device), attention_mask=mask)[0]
    return embeds.to(dtype=text_encoder.dtype, device=device)
