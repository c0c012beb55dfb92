"""Tiny, randomly initialised SDXL components for the tests (no download), shaped as diffusers' own SDXL tests
build theirs (tests/pipelines/stable_diffusion_xl/test_stable_diffusion_xl.py): a UNet with addition_embed_type
"text_time" whose added embedding takes the 6 time ids (8 numbers each) plus the pooled embedding (40), and two
CLIP text encoders of widths 32 and 48 (the second with a projection to 40), whose penultimate states concatenate
to the UNet's cross-attention width 80. The widths differ as SDXL's (768 and 1280) do: diffusers' single-file
loader tells the two encoders of a checkpoint apart by their width. 32x32 images, a 2x VAE (16x16x4 latents),
the tiny BPE tokenizer of video_fixtures for both encoders. Weights are seeded: two calls give identical folders.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile

import torch

from video_fixtures import IMAGE_SIZE, LATENT_CHANNELS, write_tiny_tokenizer

TEXT_WIDTH, TEXT_WIDTH_2, POOLED = 32, 48, 40
TIME_EMBED = 8
# the tiny tokenizer's ids (video_fixtures.write_tiny_tokenizer): the pooled output is read at the end token
BOS, EOS = 521, 522


def build_sdxl_components(seed: int = 0) -> dict:
    """The modules, seeded (each right after a fresh manual_seed), in eval mode."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 2, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time", addition_time_embed_dim=TIME_EMBED,
        projection_class_embeddings_input_dim=TIME_EMBED * 6 + POOLED, cross_attention_dim=TEXT_WIDTH + TEXT_WIDTH_2,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, block_out_channels=(8, 16),
        layers_per_block=1, norm_num_groups=8, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), sample_size=IMAGE_SIZE,
    )
    def config(width: int, projection: int) -> CLIPTextConfig:
        return CLIPTextConfig(vocab_size=600, hidden_size=width, intermediate_size=37, num_attention_heads=4,
                              num_hidden_layers=3, max_position_embeddings=77, bos_token_id=BOS, eos_token_id=EOS,
                              pad_token_id=EOS, projection_dim=projection, hidden_act="gelu")

    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(config(TEXT_WIDTH, TEXT_WIDTH))
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModelWithProjection(config(TEXT_WIDTH_2, POOLED))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    for module in (unet, vae, text_encoder, text_encoder_2):
        module.eval().requires_grad_(False)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "text_encoder_2": text_encoder_2,
            "scheduler": scheduler}


def save_sdxl_model(folder: str, seed: int = 0) -> str:
    """Write a StableDiffusionXLPipeline-layout folder of the tiny components (safetensors weights); returns it."""
    parts = build_sdxl_components(seed)
    os.makedirs(folder, exist_ok=True)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        parts[name].save_pretrained(os.path.join(folder, name), safe_serialization=True)
    parts["scheduler"].save_pretrained(os.path.join(folder, "scheduler"))
    for name in ("tokenizer", "tokenizer_2"):
        write_tiny_tokenizer(os.path.join(folder, name))
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump({
            "_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.42.1",
            "force_zeros_for_empty_prompt": True,
            "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
            "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "DDIMScheduler"],
        }, f, indent=2)
    return folder


@functools.cache
def tiny_sdxl_folder() -> str:
    """A saved tiny SDXL model, built once per test process; removed at exit."""
    root = tempfile.mkdtemp(prefix="vdgraph-tiny-sdxl-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return save_sdxl_model(os.path.join(root, "model"))


def load_reference_sdxl_pipeline(folder: str):
    """diffusers' TextToVideoZeroSDXLPipeline on a saved tiny SDXL folder, loaded component by component."""
    from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoZeroSDXLPipeline, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection

    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", use_safetensors=True).eval()
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", use_safetensors=True).eval()
    text_encoder = CLIPTextModel.from_pretrained(os.path.join(folder, "text_encoder"), use_safetensors=True).eval()
    text_encoder_2 = CLIPTextModelWithProjection.from_pretrained(os.path.join(folder, "text_encoder_2"),
                                                                 use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(folder, "tokenizer"))
    tokenizer_2 = AutoTokenizer.from_pretrained(os.path.join(folder, "tokenizer_2"))
    scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
    pipe = TextToVideoZeroSDXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                       tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler,
                                       add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
