"""diffusers' AnimateDiffControlNetPipeline on saved tiny (or small) folders, for the parity test and the bench."""

from __future__ import annotations

import os

import video_fixtures


def load_animatediff_controlnet_pipeline(model_folder: str, adapter_folder: str, controlnet_folder: str):
    """AnimateDiffControlNetPipeline on a saved 2-D model folder, motion adapter and ControlNet (its own weights,
    loaded from disk as AnimateDiffPipeline's are in video_fixtures)."""
    from diffusers import AnimateDiffControlNetPipeline, ControlNetModel

    plain = video_fixtures.load_animatediff_pipeline(model_folder, adapter_folder)
    controlnet = ControlNetModel.from_pretrained(controlnet_folder, use_safetensors=True).eval()
    pipe = AnimateDiffControlNetPipeline(vae=plain.vae, text_encoder=plain.text_encoder, tokenizer=plain.tokenizer,
                                         unet=plain.unet, motion_adapter=plain.motion_adapter, controlnet=controlnet,
                                         scheduler=plain.scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def png_frames(folder: str) -> list:
    """The PIL images of a PNG-frame folder, in name order (the pipeline's conditioning_frames)."""
    from PIL import Image

    return [Image.open(os.path.join(folder, name)).convert("RGB") for name in sorted(os.listdir(folder))]
