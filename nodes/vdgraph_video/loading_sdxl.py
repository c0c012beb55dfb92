"""SDXL model folders (diffusers StableDiffusionXLPipeline layout): a Stable Diffusion folder plus text_encoder_2/
(CLIPTextModelWithProjection) and tokenizer_2/.

A folder is an SDXL folder when its model_index.json names an SDXL pipeline or it has a text_encoder_2/
subfolder. It is checked by the rules of every model folder (`vdgraph_video.loading.check_model_folder`: configs
are data, weights only from safetensors), the second text encoder and tokenizer included, and loaded by
`load_components` into the SDXL values of `vdgraph_video.values_sdxl`.
"""

from __future__ import annotations

import os

from vdgraph_video.facts import read_json_dict

SDXL_PIPELINES = ("StableDiffusionXLPipeline", "TextToVideoZeroSDXLPipeline")
SECOND_TEXT = ("text_encoder_2", "tokenizer_2")
SECOND_TEXT_CONFIGS = {"text_encoder_2": "config.json", "tokenizer_2": "tokenizer_config.json"}


def _model_index(folder: str) -> dict:
    return read_json_dict(os.path.join(folder, "model_index.json")) or {}


def is_sdxl_folder(folder: str) -> bool:
    """Whether `folder` holds an SDXL model (by model_index.json or a text_encoder_2/ subfolder)."""
    return _model_index(folder).get("_class_name") in SDXL_PIPELINES or \
        os.path.isdir(os.path.join(folder, "text_encoder_2"))


def zero_empty_negative(folder: str) -> bool:
    """The pipeline's force_zeros_for_empty_prompt from model_index.json (SDXL base: true, the default)."""
    value = _model_index(folder).get("force_zeros_for_empty_prompt", True)
    return value if isinstance(value, bool) else True


def sdxl_model_facts(folder: str) -> dict:
    """{"text_encoder": SDXLTextEncoderFacts} for an SDXL folder (or configuration folder), {} otherwise."""
    from vdgraph_video.values_sdxl import SDXLTextEncoderFacts

    return {"text_encoder": SDXLTextEncoderFacts()} if is_sdxl_folder(folder) else {}
