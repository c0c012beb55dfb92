"""Tiny, randomly initialised Stable Video Diffusion components (no download), as diffusers' own SVD test builds
them, sized so that the CLIP image encoder takes the 224x224 image StableVideoDiffusionPipeline._encode_image makes.

`save_svd_model(folder, size)` writes a diffusers-format SVD folder (model_index.json, unet/, vae/, image_encoder/,
feature_extractor/, scheduler/) with safetensors weights, seeded so that two calls give identical folders.
"tiny" (tests): UNet blocks (32, 64), a 2x temporal-decoder VAE, 8 frames at most. "small" (benchmarks): UNet
blocks (32, 64, 128) with two attention levels, a 4x VAE, 16 frames at most. "real": the released model's
configuration with random weights (benchmarks on a GPU machine only).
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile

import torch

# The scheduler config of stabilityai/stable-video-diffusion-img2vid (EulerDiscrete, v-prediction, Karras sigmas).
SVD_SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                 "interpolation_type": "linear", "num_train_timesteps": 1000, "prediction_type": "v_prediction",
                 "sigma_max": 700.0, "sigma_min": 0.002, "steps_offset": 1, "timestep_spacing": "leading",
                 "timestep_type": "continuous", "trained_betas": None, "use_karras_sigmas": True}

EMBED = 32  # CLIP projection width = the UNet's cross-attention width (tiny and small)
TIME_EMBED = 32  # addition_time_embed_dim (three time ids -> 96 inputs)
TINY_CLIP = {"hidden_size": 32, "projection_dim": EMBED, "num_attention_heads": 4, "image_size": 224,
             "patch_size": 28, "intermediate_size": 37}
SIZES = {
    "tiny": {"unet": {"block_out_channels": (32, 64), "layers_per_block": 1,
                      "down_block_types": ("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
                      "up_block_types": ("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
                      "num_attention_heads": (2, 4), "num_frames": 8, "sample_size": 16,
                      "cross_attention_dim": EMBED, "addition_time_embed_dim": TIME_EMBED,
                      "projection_class_embeddings_input_dim": 3 * TIME_EMBED},
             "vae": {"block_out_channels": (32, 64), "down_block_types": ("DownEncoderBlock2D",) * 2,
                     "layers_per_block": 1},
             "clip": {**TINY_CLIP, "num_hidden_layers": 2}},
    "small": {"unet": {"block_out_channels": (32, 64, 128), "layers_per_block": 2,
                       "down_block_types": ("CrossAttnDownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal",
                                            "DownBlockSpatioTemporal"),
                       "up_block_types": ("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal",
                                          "CrossAttnUpBlockSpatioTemporal"),
                       "num_attention_heads": (2, 4, 8), "num_frames": 16, "sample_size": 16,
                       "cross_attention_dim": EMBED, "addition_time_embed_dim": TIME_EMBED,
                       "projection_class_embeddings_input_dim": 3 * TIME_EMBED},
              "vae": {"block_out_channels": (32, 64, 64), "down_block_types": ("DownEncoderBlock2D",) * 3,
                      "layers_per_block": 1},
              "clip": {**TINY_CLIP, "num_hidden_layers": 4}},
    # stabilityai/stable-video-diffusion-img2vid's configuration (random weights, about 2.3 B parameters; for a
    # GPU machine: the UNet's defaults are SVD's, the VAE is SD's 8x, the image encoder is CLIP ViT-H/14).
    "real": {"unet": {"num_frames": 14, "sample_size": 96},
             "vae": {"block_out_channels": (128, 256, 512, 512), "down_block_types": ("DownEncoderBlock2D",) * 4,
                     "layers_per_block": 2},
             "clip": {"hidden_size": 1280, "projection_dim": 1024, "num_hidden_layers": 32, "num_attention_heads": 16,
                      "image_size": 224, "patch_size": 14, "intermediate_size": 5120, "hidden_act": "gelu"}},
}


def build_svd_components(size: str = "tiny", seed: int = 0) -> dict:
    """The five SVD components, seeded (each module right after a fresh manual_seed)."""
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, UNetSpatioTemporalConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    spec = SIZES[size]
    torch.manual_seed(seed)
    unet = UNetSpatioTemporalConditionModel(in_channels=8, out_channels=4, **spec["unet"])
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLTemporalDecoder(in_channels=3, out_channels=3, latent_channels=4, **spec["vae"])
    torch.manual_seed(seed + 2)
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**spec["clip"]))
    feature_extractor = CLIPImageProcessor(crop_size=224, size=224)
    scheduler = EulerDiscreteScheduler(**SVD_SCHEDULER)
    for module in (unet, vae, image_encoder):
        module.eval().requires_grad_(False)
    return {"unet": unet, "vae": vae, "image_encoder": image_encoder, "feature_extractor": feature_extractor,
            "scheduler": scheduler}


def save_svd_model(folder: str, size: str = "tiny", seed: int = 0) -> str:
    """Write a diffusers-format SVD folder with the components (safetensors weights); returns it."""
    parts = build_svd_components(size, seed)
    os.makedirs(folder, exist_ok=True)
    for name in ("unet", "vae", "image_encoder"):
        parts[name].save_pretrained(os.path.join(folder, name), safe_serialization=True)
    parts["feature_extractor"].save_pretrained(os.path.join(folder, "feature_extractor"))
    parts["scheduler"].save_pretrained(os.path.join(folder, "scheduler"))
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump({
            "_class_name": "StableVideoDiffusionPipeline", "_diffusers_version": "0.42.1",
            "unet": ["diffusers", "UNetSpatioTemporalConditionModel"],
            "vae": ["diffusers", "AutoencoderKLTemporalDecoder"],
            "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
            "feature_extractor": ["transformers", "CLIPImageProcessor"],
            "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        }, f, indent=2)
    return folder


def load_svd_reference(folder: str):
    """diffusers' StableVideoDiffusionPipeline on a saved folder, loaded component by component from disk."""
    from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, StableVideoDiffusionPipeline,
                           UNetSpatioTemporalConditionModel)
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    pipe = StableVideoDiffusionPipeline(
        vae=AutoencoderKLTemporalDecoder.from_pretrained(folder, subfolder="vae", use_safetensors=True).eval(),
        image_encoder=CLIPVisionModelWithProjection.from_pretrained(os.path.join(folder, "image_encoder"),
                                                                    use_safetensors=True).eval(),
        unet=UNetSpatioTemporalConditionModel.from_pretrained(folder, subfolder="unet", use_safetensors=True).eval(),
        scheduler=EulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler"),
        feature_extractor=CLIPImageProcessor.from_pretrained(os.path.join(folder, "feature_extractor")),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@functools.cache
def svd_model_folder(size: str = "tiny") -> str:
    """A saved SVD model, built once per test process; removed at exit."""
    root = tempfile.mkdtemp(prefix=f"vdgraph-svd-{size}-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return save_svd_model(os.path.join(root, "model"), size)


def write_test_image(path: str, height: int, width: int, seed: int = 0) -> str:
    """A seeded RGB PNG or JPEG (by the extension) with smooth colour ramps and some noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x / max(width - 1, 1), y / max(height - 1, 1), (x + y) / max(width + height - 2, 1)], -1)
    image = np.clip(image * 200 + rng.integers(0, 56, (height, width, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(path)
    return path
