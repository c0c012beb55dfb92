"""workflows/video_instruct_pix2pix.json against diffusers' Video Instruct-Pix2Pix recipe, and its checks.

The recipe (diffusers' Text2Video-Zero docs): StableDiffusionInstructPix2PixPipeline with a cross-frame attention
processor of batch_size 3 on the UNet (the three guidance chunks text+image, image, none), the prompt repeated per
frame, the frames of the input video as the images. The reference installs CrossFrameAttnProcessor2_0 (SDPA, what
ours computes; the docs' CrossFrameAttnProcessor is the same attention with bmm + softmax and differs only in
rounding, see test_video_controlnet.py). Components are tiny and random: an 8-input-channel UNet (4 noisy-latent
plus 4 image-latent channels) beside the shared tiny VAE and text encoder.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch
import video_fixtures
from PIL import Image

import vdgraph

WORKFLOW = Path(__file__).resolve().parent.parent / "workflows" / "video_instruct_pix2pix.json"
PROMPT = "make the cat red"

pytestmark = pytest.mark.usefixtures("torch_threads")


def save_pix2pix_model(folder: str, seed: int = 0) -> str:
    """The tiny 2-D model folder with its UNet replaced by a seeded one taking 8 input channels (InstructPix2Pix's
    layout: noisy latents then image latents); saved with safetensors weights."""
    from diffusers import UNet2DConditionModel

    shutil.copytree(video_fixtures.tiny_model_folder("2d"), folder)
    with open(os.path.join(folder, "unet", "config.json")) as f:
        config = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**{**config, "in_channels": 8}).eval()
    shutil.rmtree(os.path.join(folder, "unet"))
    unet.save_pretrained(os.path.join(folder, "unet"), safe_serialization=True)
    return folder


@functools.cache
def pix2pix_folder() -> str:
    import atexit
    import tempfile

    root = tempfile.mkdtemp(prefix="vdgraph-tiny-pix2pix-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return save_pix2pix_model(os.path.join(root, "model"))


@functools.cache
def input_video(frames: int) -> str:
    import atexit
    import tempfile

    root = tempfile.mkdtemp(prefix="vdgraph-pix2pix-video-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return video_fixtures.write_png_frames(root, frames, 32, seed=100 + frames)


@functools.cache
def reference_pipeline():
    from diffusers import StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel

    zero = video_fixtures.load_reference_pipeline(video_fixtures.tiny_model_folder("2d"))
    unet = UNet2DConditionModel.from_pretrained(pix2pix_folder(), subfolder="unet", use_safetensors=True).eval()
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=zero.vae, text_encoder=zero.text_encoder, tokenizer=zero.tokenizer, unet=unet, scheduler=zero.scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reference_frames(frames, steps, seed, guidance, image_guidance, sampler):
    from diffusers import DDIMScheduler, EulerAncestralDiscreteScheduler, TextToVideoZeroPipeline

    pipe = reference_pipeline()
    zero_module = importlib.import_module(TextToVideoZeroPipeline.__module__)  # moved to deprecated/ in 0.38
    # The recipe's batch_size=3 is the 3 guidance chunks; without guidance the processor must be told 1, or it
    # splits the frames in three (the stock recipe has no guidance-off case).
    guided = guidance > 1.0 and image_guidance >= 1.0
    pipe.unet.set_attn_processor(zero_module.CrossFrameAttnProcessor2_0(batch_size=3 if guided else 1))
    cls = {"ddim": DDIMScheduler, "euler_ancestral": EulerAncestralDiscreteScheduler}[sampler]
    pipe.scheduler = cls.from_config(pipe.scheduler.config)
    folder = input_video(frames)
    images = [Image.open(os.path.join(folder, name)).convert("RGB") for name in sorted(os.listdir(folder))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pipe(prompt=[PROMPT] * frames, image=images, num_inference_steps=steps, guidance_scale=guidance,
                   image_guidance_scale=image_guidance, generator=torch.Generator().manual_seed(seed),
                   output_type="np")
    return torch.from_numpy(out.images)



def run_workflow(executor, tmp_path, frames, steps, seed, guidance, image_guidance, sampler, **extra):
    inputs = {"model": pix2pix_folder(), "video": input_video(frames), "prompt": PROMPT, "frames": frames,
              "height": 32, "width": 32, "steps": steps, "seed": seed, "guidance": guidance,
              "image_guidance": image_guidance, "sampler": sampler, **extra}
    return executor.run(WORKFLOW, inputs, outputs=["frames"], output_dir=str(tmp_path))["frames"]


CASES = [
    # frames, steps, seed, guidance, image guidance, sampler
    (1, 3, 0, 7.5, 1.5, "euler_ancestral"),
    (2, 4, 1, 7.5, 1.0, "euler_ancestral"),
    (3, 3, 2, 9.0, 1.5, "ddim"),
    (5, 3, 3, 5.0, 2.0, "euler_ancestral"),
    (3, 3, 4, 1.0, 1.5, "ddim"),  # guidance off: one chunk, the image latents still on the channels
    (3, 3, 5, 7.5, 0.5, "euler_ancestral"),  # image guidance < 1 switches all guidance off, as the pipeline
]


@pytest.mark.parametrize("frames, steps, seed, guidance, image_guidance, sampler", CASES)
def test_workflow_matches_the_diffusers_recipe_exactly(executor, tmp_path, frames, steps, seed, guidance,
                                                       image_guidance, sampler):
    ours = run_workflow(executor, tmp_path, frames, steps, seed, guidance, image_guidance, sampler)
    expected = reference_frames(frames, steps, seed, guidance, image_guidance, sampler)
    assert ours.shape == expected.shape == (frames, 32, 32, 3)
    assert (ours - expected).abs().max().item() == 0.0


def test_cross_frame_attention_and_image_guidance_change_the_output(executor, tmp_path):
    base = run_workflow(executor, tmp_path, 3, 3, 0, 7.5, 1.5, "ddim")
    alone = run_workflow(executor, tmp_path, 3, 3, 0, 7.5, 1.5, "ddim", cross_frame="none")
    assert torch.equal(base[0], alone[0])  # frame 0 attends to itself either way
    assert (base[1:] - alone[1:]).abs().max().item() > 1e-4
    stronger = run_workflow(executor, tmp_path, 3, 3, 0, 7.5, 3.0, "ddim")
    assert (base - stronger).abs().max().item() > 1e-4


# -- validation --------------------------------------------------------------------------------------------------

def problems(inputs):
    return [(p.code, p.node, p.port, p.message, p.hint) for p in vdgraph.validate(WORKFLOW, inputs=inputs)
            if p.severity == "error"]


def test_the_model_is_required(executor, tmp_path):
    assert vdgraph.load_workflow(WORKFLOW).inputs["model"].has_default is False  # shapes-64 is no IP2P model
    with pytest.raises(vdgraph.WorkflowInvalid) as info:
        executor.run(WORKFLOW, {"video": input_video(1)}, output_dir=str(tmp_path))
    assert [(p.code, p.port) for p in info.value.problems] == [("input.missing", "model")]


def test_a_model_whose_unet_takes_4_channels_is_a_validation_problem():
    found = problems({"model": video_fixtures.tiny_model_folder("2d"), "video": "in.mp4"})
    assert len(found) == 1, found
    code, node, port, message, hint = found[0]
    assert (code, node, port) == ("node.check", "denoise", "unet")
    assert "takes 4 input channels" in message and "InstructPix2Pix UNet takes 8" in message
    assert "pass an InstructPix2Pix model" in hint and "in_channels 8" in hint
    assert problems({"model": pix2pix_folder(), "video": "in.mp4"}) == []


def test_an_instruct_pix2pix_unet_without_image_latents_is_a_validation_problem(tmp_path):
    found = [p for p in vdgraph.validate(WORKFLOW.parent / "text2video_zero.json", inputs={"model": pix2pix_folder()})
             if p.severity == "error"]
    assert {(p.node, p.port) for p in found} == {("to_t1", "image_latents"), ("to_t0", "image_latents"),
                                                 ("final", "image_latents")}
    assert "takes 8 input channels but predicts 4" in found[0].message


def test_image_latents_of_another_frame_count_are_a_clear_run_time_error():
    from vdgraph_video.loading import load_components
    from vdgraph_video.ops.denoise import denoise
    from vdgraph_video.values import Conditioning

    unet, _, _, _ = load_components(pix2pix_folder(), torch.device("cpu"), torch.float32)
    scheduler = reference_pipeline().scheduler.__class__.from_config(reference_pipeline().scheduler.config)
    scheduler.set_timesteps(2)
    text = torch.zeros(1, 77, 32)
    message = r"port 'image_latents': they hold 1 video\(s\) of 2 frames but the latents 1 of 3"
    with pytest.raises(ValueError, match=message):
        denoise(unet, scheduler, Conditioning(text, text), torch.zeros(1, 4, 3, 16, 16), 7.5, 0, 2,
                image_latents=torch.zeros(1, 4, 2, 16, 16))


def test_chunked_denoising_with_image_latents_matches_the_unchunked_run():
    """chunk_size bounds memory with image latents too (each chunk's frames take their own image latents)."""
    from diffusers import DDIMScheduler

    from vdgraph_video.ops.attention import CrossFrameAttention
    from vdgraph_video.loading import load_components
    from vdgraph_video.ops.denoise import denoise
    from vdgraph_video.values import Conditioning

    unet, _, _, _ = load_components(pix2pix_folder(), torch.device("cpu"), torch.float32)
    unet = unet.with_patch(CrossFrameAttention("first_frame"))
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 5, 16, 16, generator=generator)
    image = torch.randn(1, 4, 5, 16, 16, generator=generator)
    text = Conditioning(torch.randn(1, 77, 32, generator=generator), torch.randn(1, 77, 32, generator=generator))
    runs = []
    for chunk_size in (0, 3):
        scheduler = DDIMScheduler.from_config(reference_pipeline().scheduler.config)
        scheduler.set_timesteps(3)
        runs.append(denoise(unet, scheduler, text, latents, 7.5, 0, 3, chunk_size=chunk_size, image_latents=image,
                            image_guidance=1.5).latents)
    assert runs[0].shape == (1, 4, 5, 16, 16)
    assert (runs[0] - runs[1]).abs().max().item() <= 1e-5  # batch-size-dependent rounding only
