"""workflows/video2video.json (SDEdit) end to end on the built-in model, the strength-to-step rule, and its
validation problems: a strength outside (0, 1] or one that re-runs no step is reported before anything runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import REPO

import vdgraph
from vdgraph.registry import Registry
from vdgraph.validate import validate
from vdgraph.workflow import load_workflow
from vdgraph_shapes.judge import judge_video
from vdgraph_shapes.world import Scene, render
from vdgraph_video.ops.strength import noise_to_timestep, strength_start_step
from vdgraph_video.ops.video_io import write_png_frames

WORKFLOW = str(REPO / "workflows" / "video2video.json")
PROMPT = "a yellow circle on a green background"
TRACK = [(20.0 + 6 * k, 24.0 + 3 * k) for k in range(4)]  # a red circle moving linearly on blue


@pytest.fixture(scope="module")
def input_video(tmp_path_factory) -> str:
    frames = np.stack([render(Scene("blue", "red", "circle", x, y, 22.0)) for x, y in TRACK])  # (4, 64, 64, 3)
    return write_png_frames(frames, str(tmp_path_factory.mktemp("v2v") / "red_circle"))



def run(executor, tmp_path, video, strength):
    inputs = {"video": video, "strength": strength, "steps": 10, "frames": 4, "prompt": PROMPT}
    return executor.run(WORKFLOW, inputs, output_dir=str(tmp_path))


def test_low_strength_keeps_the_input_layout(executor, tmp_path, input_video):
    result = run(executor, tmp_path, input_video, 0.3)
    assert result["frames"].shape == (4, 64, 64, 3) and result["input_frames"].shape == (4, 64, 64, 3)
    judged = judge_video(result["frames"].numpy())
    errors = [np.hypot(j.x - x, j.y - y) for j, (x, y) in zip(judged, TRACK)]
    assert max(errors) <= 2.0, f"centroid errors {errors} px"
    assert all(j.shape == "circle" for j in judged)
    assert [j.background for j in judged] == ["blue"] * 4  # 3 of 10 steps re-run: the input's background stays


def test_full_strength_follows_the_prompt(executor, tmp_path, input_video):
    result = run(executor, tmp_path, input_video, 1.0)
    judged = judge_video(result["frames"].numpy())
    assert [(j.colour, j.background) for j in judged] == [("yellow", "green")] * 4


def test_strength_to_step_rule():
    assert [strength_start_step(20, s) for s in (1.0, 0.6, 0.3, 0.05)] == [0, 8, 14, 19]
    assert strength_start_step(10, 0.99) == 1  # int(9.9) = 9 steps re-run, as diffusers' img2img


def test_full_strength_starts_from_pure_noise_and_lower_strengths_keep_the_input():
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler()
    scheduler.set_timesteps(10)
    noise = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    clean = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(noise_to_timestep(clean, noise, scheduler, 0), noise)
    noisy = noise_to_timestep(clean, noise, scheduler, 7)
    abar = scheduler.alphas_cumprod[int(scheduler.timesteps[7])]
    assert torch.allclose(noisy, abar.sqrt() * clean + (1 - abar).sqrt() * noise, atol=1e-6)


@pytest.mark.parametrize("strength, code", [(0.0, "param.range"), (-0.5, "param.range"), (1.5, "param.range"),
                                            (0.01, "node.check")])
def test_a_strength_outside_the_range_is_a_validation_problem(strength, code):
    registry = Registry.discover(folders=(), env={})
    problems = [p for p in validate(load_workflow(WORKFLOW), registry, {"video": "in.mp4", "strength": strength})
                if p.severity == "error"]
    assert [(p.code, p.node, p.port) for p in problems] == [(code, "strength", "strength")]
    assert validate(load_workflow(WORKFLOW), registry, {"video": "in.mp4", "strength": 1.0}) == []


# -- ControlNet on the input video's own condition, against StableDiffusionControlNetImg2ImgPipeline ---------------

CONTROL_PROMPT = "a red cat on the mat"


@pytest.fixture(scope="module")
def random_video(tmp_path_factory) -> str:
    import video_fixtures

    return video_fixtures.write_png_frames(str(tmp_path_factory.mktemp("v2v-random")), 4, 32, seed=21)


@pytest.fixture(scope="module")
def tiny_controlnet(tmp_path_factory) -> str:
    import video_fixtures

    return video_fixtures.save_controlnet_for(video_fixtures.tiny_model_folder("2d"),
                                              str(tmp_path_factory.mktemp("v2v-net") / "net"), seed=3)


def controlnet_run(executor, tmp_path, video, controlnet, frames, steps, strength, seed, guidance, scale, **extra):
    import video_fixtures

    inputs = {"model": video_fixtures.tiny_model_folder("2d"), "video": video, "controlnet": controlnet,
              "condition": "canny", "prompt": CONTROL_PROMPT, "frames": frames, "height": 32, "width": 32,
              "steps": steps, "strength": strength, "seed": seed, "guidance": guidance, "controlnet_scale": scale,
              "noise_mode": "per_frame", **extra}
    return executor.run(WORKFLOW, inputs, outputs=["frames"], output_dir=str(tmp_path))["frames"]


def controlnet_img2img_reference(video, controlnet, frames, steps, strength, seed, guidance, scale):
    """The same SDEdit run through diffusers' StableDiffusionControlNetImg2ImgPipeline with the recipe's cross-frame
    processor on UNet and ControlNet. The pipeline encodes a *sample* of the posterior (a draw from the generator);
    the workflow encodes its mean, so the pipeline is given the mean as its latents (a 4-channel `image`, which it
    uses as they are), computed here with diffusers' own preprocessing and VAE. They are made contiguous as ours
    are: the VAE returns them channels-last (its input is a transposed HWC array), and the UNet's convolutions on
    a channels-last input round differently on CPU (9e-6 after two steps), a memory layout, not arithmetic."""
    import importlib
    import os
    import warnings

    import cv2
    import video_fixtures
    from diffusers import ControlNetModel, StableDiffusionControlNetImg2ImgPipeline, TextToVideoZeroPipeline
    from PIL import Image

    zero = video_fixtures.load_reference_pipeline(video_fixtures.tiny_model_folder("2d"))
    net = ControlNetModel.from_pretrained(controlnet, use_safetensors=True).eval()
    pipe = StableDiffusionControlNetImg2ImgPipeline(
        vae=zero.vae, text_encoder=zero.text_encoder, tokenizer=zero.tokenizer, unet=zero.unet, controlnet=net,
        scheduler=zero.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    processor = importlib.import_module(TextToVideoZeroPipeline.__module__).CrossFrameAttnProcessor2_0
    chunks = 2 if guidance > 1 else 1
    pipe.unet.set_attn_processor(processor(batch_size=chunks))
    pipe.controlnet.set_attn_processor(processor(batch_size=chunks))
    images = [Image.open(os.path.join(video, name)).convert("RGB") for name in sorted(os.listdir(video))][:frames]
    with torch.no_grad():
        pixels = pipe.image_processor.preprocess(images)  # (F, 3, 32, 32) in [-1, 1]
        latents = (pipe.vae.encode(pixels).latent_dist.mode() * pipe.vae.config.scaling_factor).contiguous()
    edges = [Image.fromarray(np.repeat(cv2.Canny(np.asarray(im), 100, 200)[..., None], 3, axis=-1)) for im in images]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pipe(prompt=[CONTROL_PROMPT] * frames, image=latents, control_image=edges, height=32, width=32,
                   strength=strength, num_inference_steps=steps, guidance_scale=guidance,
                   controlnet_conditioning_scale=scale, generator=torch.Generator().manual_seed(seed),
                   output_type="np")
    return torch.from_numpy(out.images)


@pytest.mark.parametrize("frames, steps, strength, seed, guidance, scale", [
    (1, 4, 0.5, 0, 7.5, 1.0),
    (3, 5, 0.6, 1, 7.5, 0.5),
    (4, 4, 0.9, 2, 9.0, 1.5),  # strength < 1: at 1 diffusers' img2img still adds noise to the input at the first
    # timestep (sqrt(abar) = 0.27 of it stays with 4 steps), where video.noise_to_step starts from pure noise
    (3, 4, 0.75, 3, 1.0, 1.0),  # guidance off: one chunk for the attention patches
])
def test_controlnet_video2video_matches_controlnet_img2img_exactly(executor, tmp_path, random_video, tiny_controlnet,
                                                                    frames, steps, strength, seed, guidance, scale):
    ours = controlnet_run(executor, tmp_path, random_video, tiny_controlnet, frames, steps, strength, seed, guidance,
                          scale)
    expected = controlnet_img2img_reference(random_video, tiny_controlnet, frames, steps, strength, seed, guidance,
                                            scale)
    assert ours.shape == expected.shape == (frames, 32, 32, 3)
    assert (ours - expected).abs().max().item() == 0.0


def test_the_controlnet_changes_the_output_with_its_scale(executor, tmp_path, random_video, tiny_controlnet):
    args = (executor, tmp_path, random_video)
    none = controlnet_run(*args, "", 3, 4, 0.75, 0, 7.5, 1.0)
    zero = controlnet_run(*args, tiny_controlnet, 3, 4, 0.75, 0, 7.5, 0.0)
    half = controlnet_run(*args, tiny_controlnet, 3, 4, 0.75, 0, 7.5, 0.5)
    full = controlnet_run(*args, tiny_controlnet, 3, 4, 0.75, 0, 7.5, 1.0)
    assert torch.equal(none, zero)  # scale 0 adds zero residuals: the run without a ControlNet
    assert 1e-4 < (half - none).abs().max().item() < (full - none).abs().max().item()


def test_an_empty_controlnet_name_is_no_controlnet_and_a_bad_one_is_reported():
    registry = Registry.discover(folders=(), env={})
    assert validate(load_workflow(WORKFLOW), registry, {"video": "in.mp4", "controlnet": ""}) == []
    found = [p for p in validate(load_workflow(WORKFLOW), registry, {"video": "in.mp4", "condition": "depth"})
             if p.severity == "error"]
    assert [(p.node, p.port) for p in found] == [("condition", "depth_model")]
