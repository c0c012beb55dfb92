"""Tiny, randomly initialised diffusion components for the video pack's tests (no download).

`save_tiny_model(folder, kind)` writes a diffusers-format folder (model_index.json, unet/, vae/, text_encoder/,
tokenizer/, scheduler/) with safetensors weights; `kind` is "2d" (UNet2DConditionModel, Text2Video-Zero) or "3d"
(UNet3DConditionModel, ModelScope layout). Weights are seeded, so two calls give identical folders.

Sizes: 32x32 images, a 2x VAE (16x16x4 latents), 77-token CLIP with a 32-wide hidden state. A Text2Video-Zero
run of 3 frames and 8 steps takes well under a second on one CPU core.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile

import torch

IMAGE_SIZE = 32
LATENT_CHANNELS = 4
TEXT_WIDTH = 32


def _byte_alphabet() -> list[str]:
    """GPT-2/CLIP's byte-to-unicode alphabet (the 256 symbols byte-level BPE works on)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tiny_tokenizer(folder: str) -> None:
    """A CLIP tokenizer with a byte alphabet and a handful of merges, written as vocab.json + merges.txt."""
    os.makedirs(folder, exist_ok=True)
    alphabet = _byte_alphabet()
    vocab: dict[str, int] = {}
    for symbol in alphabet:
        vocab[symbol] = len(vocab)
    for symbol in alphabet:
        vocab[symbol + "</w>"] = len(vocab)
    merges = ["a n", "an d</w>", "r e", "re d</w>", "c a", "ca t</w>", "o n</w>", "t h", "th e</w>"]
    for merge in merges:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    config = {"model_max_length": 77, "tokenizer_class": "CLIPTokenizer", "bos_token": "<|startoftext|>",
              "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(config, f)


# Bigger random 2-D models for benchmarks. "small": 64x64 images, a 4x VAE (16x16x4 latents), three UNet levels.
# "real": Stable Diffusion 1.5's configuration with random weights (about 1.07 B parameters, 512x512 images, an 8x
# VAE; a GPU machine's benchmark): the UNet's and VAE's defaults are SD's, the text encoder is CLIP ViT-L/14's
# transformer over the tiny tokenizer's vocabulary (its cost is the transformer's, not the vocabulary's).
SMALL = {"unet": {"block_out_channels": (32, 64, 128), "layers_per_block": 2, "norm_num_groups": 16,
                  "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                  "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                  "attention_head_dim": 8, "sample_size": 16},
         "vae": {"block_out_channels": (32, 64, 64), "layers_per_block": 1, "norm_num_groups": 16,
                 "down_block_types": ("DownEncoderBlock2D",) * 3, "up_block_types": ("UpDecoderBlock2D",) * 3,
                 "sample_size": 64},
         "text_width": 64, "text": {"intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2},
         "image_size": 64}
REAL = {"unet": {"attention_head_dim": 8, "sample_size": 64},
        "vae": {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2,
                "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
                "sample_size": 512},
        "text_width": 768, "text": {"intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12},
        "image_size": 512}
BENCH_SIZES = {"small": SMALL, "real": REAL}


def build_components(kind: str = "2d", seed: int = 0, size: str = "tiny") -> dict:
    """The modules, seeded (every module is initialised right after a fresh manual_seed); size "tiny" (tests),
    "small" or "real" (benchmarks, 2-D only: BENCH_SIZES)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    if size in BENCH_SIZES:
        assert kind == "2d", "the benchmark models are 2-D UNets"
        spec = BENCH_SIZES[size]
        unet = UNet2DConditionModel(in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
                                    cross_attention_dim=spec["text_width"], **spec["unet"])
        torch.manual_seed(seed + 1)
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, **spec["vae"])
        torch.manual_seed(seed + 2)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=600, hidden_size=spec["text_width"], max_position_embeddings=77, bos_token_id=598,
            eos_token_id=599, pad_token_id=599, projection_dim=spec["text_width"], **spec["text"],
        ))
        scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                  clip_sample=False, set_alpha_to_one=False, steps_offset=1)
        for module in (unet, vae, text_encoder):
            module.eval().requires_grad_(False)
        return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "scheduler": scheduler}
    if kind == "2d":
        unet = UNet2DConditionModel(
            sample_size=IMAGE_SIZE // 2, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
            block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=TEXT_WIDTH, attention_head_dim=4,
        )
    elif kind == "3d":
        unet = UNet3DConditionModel(
            sample_size=IMAGE_SIZE // 2, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
            block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
            down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
            up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
            cross_attention_dim=TEXT_WIDTH, attention_head_dim=4,
        )
        # The last temporal conv of each block starts at zero in diffusers (an identity at init); give it weights so
        # the test exercises the temporal path.
        with torch.no_grad():
            for name, p in unet.named_parameters():
                if "temp_convs" in name and "conv4" in name:
                    p.normal_(0, 0.02)
    else:
        raise ValueError(f"kind must be '2d' or '3d', got {kind!r}")
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, block_out_channels=(8, 16),
        layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), sample_size=IMAGE_SIZE,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=600, hidden_size=TEXT_WIDTH, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=77, bos_token_id=598, eos_token_id=599, pad_token_id=599, projection_dim=TEXT_WIDTH,
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    for module in (unet, vae, text_encoder):
        module.eval().requires_grad_(False)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "scheduler": scheduler}


def save_tiny_model(folder: str, kind: str = "2d", seed: int = 0, size: str = "tiny") -> str:
    """Write a diffusers-format folder with the tiny (or small) components (safetensors weights); returns it."""
    parts = build_components(kind, seed, size)
    os.makedirs(folder, exist_ok=True)
    parts["unet"].save_pretrained(os.path.join(folder, "unet"), safe_serialization=True)
    parts["vae"].save_pretrained(os.path.join(folder, "vae"), safe_serialization=True)
    parts["text_encoder"].save_pretrained(os.path.join(folder, "text_encoder"), safe_serialization=True)
    parts["scheduler"].save_pretrained(os.path.join(folder, "scheduler"))
    write_tiny_tokenizer(os.path.join(folder, "tokenizer"))
    pipeline = "TextToVideoZeroPipeline" if kind == "2d" else "TextToVideoSDPipeline"
    unet_class = type(parts["unet"]).__name__
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump({
            "_class_name": pipeline, "_diffusers_version": "0.42.1",
            "unet": ["diffusers", unet_class], "vae": ["diffusers", "AutoencoderKL"],
            "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
            "scheduler": ["diffusers", "DDIMScheduler"],
        }, f, indent=2)
    return folder


def load_reference_pipeline(folder: str):
    """The diffusers reference pipeline for a saved tiny folder, loaded component by component from disk."""
    from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline, TextToVideoZeroPipeline
    from diffusers import UNet2DConditionModel, UNet3DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    with open(os.path.join(folder, "unet", "config.json")) as f:
        unet_class = json.load(f)["_class_name"]
    unet_type = UNet3DConditionModel if unet_class == "UNet3DConditionModel" else UNet2DConditionModel
    unet = unet_type.from_pretrained(folder, subfolder="unet", use_safetensors=True).eval()
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", use_safetensors=True).eval()
    text_encoder = CLIPTextModel.from_pretrained(os.path.join(folder, "text_encoder"), use_safetensors=True).eval()
    # AutoTokenizer takes the class the folder declares (shapes-64 ships a word-level tokenizer, not CLIP's BPE),
    # as diffusers' own from_pretrained does; forcing CLIPTokenizer would encode a different prompt.
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(folder, "tokenizer"))
    scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
    if unet_type is UNet3DConditionModel:
        return TextToVideoSDPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                     scheduler=scheduler)
    return TextToVideoZeroPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


@functools.cache
def tiny_model_folder(kind: str = "2d") -> str:
    """A saved tiny model, built once per test process (every test module shares it); removed at exit."""
    root = tempfile.mkdtemp(prefix=f"vdgraph-tiny-{kind}-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return save_tiny_model(os.path.join(root, "model"), kind)


@functools.cache
def reference_pipeline(kind: str = "2d"):
    """The diffusers reference pipeline on the shared tiny folder (its own copy of the weights)."""
    pipe = load_reference_pipeline(tiny_model_folder(kind))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def single_thread():
    """A fixture body: torch on one thread for the test, restored afterwards.

    The test machine shares two cores with other jobs; two torch threads contending with them made the tiny
    runs 20x slower and erratic, one thread keeps them steady.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def save_controlnet_for(model_folder: str, folder: str, seed: int = 0, residual_std: float = 0.05) -> str:
    """A ControlNetModel.from_unet of a model folder's UNet (its condition embedding downsamples by the VAE's
    factor), with the zero-initialised convolutions given seeded weights so its residuals are not zero; saved
    with safetensors weights to `folder`, which is returned."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(model_folder, subfolder="unet", use_safetensors=True)
    with open(os.path.join(model_folder, "vae", "config.json")) as f:
        levels = len(json.load(f)["block_out_channels"])
    torch.manual_seed(seed)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=tuple(8 * 2 ** k
                                                                                           for k in range(levels)))
    with torch.no_grad():
        for name, p in controlnet.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")):
                p.normal_(0, residual_std)
    controlnet.save_pretrained(folder, safe_serialization=True)
    return folder


def write_png_frames(folder: str, frames: int, size: int, seed: int = 0) -> str:
    """A PNG-frame folder of `frames` seeded random size x size images; returns it."""
    import numpy as np
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(frames):
        Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)).save(
            os.path.join(folder, f"{k:05d}.png"))
    return folder


def save_motion_adapter_for(folder: str, seed: int = 0, max_frames: int = 32, blocks: tuple[int, ...] = (16, 32),
                            layers: int = 1, model_folder: str | None = None, heads: int = 2,
                            norm_groups: int = 8) -> str:
    """A seeded MotionAdapter matching the tiny 2-D UNet (block_out_channels (16, 32), one layer per block; pass
    other blocks/layers for a mismatching one, or `model_folder` to match that model's UNet), saved with
    safetensors weights to `folder`, which is returned (heads 8 and norm_groups 32 with a "real" model's folder give
    animatediff-motion-adapter-v1-5-2's configuration). The motion modules' output projections start at zero in
    diffusers (an identity at init): they get seeded weights so the tests exercise the temporal path."""
    from diffusers import MotionAdapter

    if model_folder is not None:
        with open(os.path.join(model_folder, "unet", "config.json")) as f:
            config = json.load(f)
        blocks, layers = tuple(config["block_out_channels"]), config["layers_per_block"]
    torch.manual_seed(seed)
    adapter = MotionAdapter(block_out_channels=blocks, motion_layers_per_block=layers,
                            motion_norm_num_groups=norm_groups, motion_num_attention_heads=heads,
                            motion_max_seq_length=max_frames)
    with torch.no_grad():
        for name, p in adapter.named_parameters():
            if "proj_out" in name:
                p.normal_(0, 0.2)
    adapter.save_pretrained(folder, safe_serialization=True)
    return folder


@functools.cache
def tiny_motion_adapter_folder(max_frames: int = 32) -> str:
    """A saved tiny motion adapter for the tiny 2-D model, built once per test process; removed at exit."""
    root = tempfile.mkdtemp(prefix="vdgraph-tiny-motion-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return save_motion_adapter_for(os.path.join(root, "adapter"), max_frames=max_frames)


def load_animatediff_pipeline(model_folder: str, adapter_folder: str):
    """diffusers' AnimateDiffPipeline on a saved tiny 2-D model folder and motion adapter (its own weights)."""
    from diffusers import AnimateDiffPipeline, AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(model_folder, subfolder="unet", use_safetensors=True).eval()
    vae = AutoencoderKL.from_pretrained(model_folder, subfolder="vae", use_safetensors=True).eval()
    text_encoder = CLIPTextModel.from_pretrained(os.path.join(model_folder, "text_encoder"),
                                                 use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(model_folder, "tokenizer"))
    scheduler = DDIMScheduler.from_pretrained(model_folder, subfolder="scheduler")
    adapter = MotionAdapter.from_pretrained(adapter_folder, use_safetensors=True).eval()
    pipe = AnimateDiffPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                               motion_adapter=adapter, scheduler=scheduler)
    pipe.unet.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def with_literal_params(workflow, tmp_path, node: str, **params):
    """A copy of `workflow` (a JSON file) in `tmp_path` whose node `node` takes `params` as literals instead of
    whatever fed those ports (a user's edit); returns its path."""
    from pathlib import Path

    data = json.loads(Path(workflow).read_text())
    spec = data["nodes"][node]
    for port, value in params.items():
        spec.get("in", {}).pop(port, None)
        spec.setdefault("params", {})[port] = value
    path = Path(tmp_path) / "edited.json"
    path.write_text(json.dumps(data))
    return path
