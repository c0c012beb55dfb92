"""ControlNet: the loader, the attach node's checks, and text2video_zero_controlnet.json against diffusers' recipe.

The recipe (diffusers' Text2Video-Zero docs): StableDiffusionControlNetPipeline with a cross-frame attention processor
of batch_size 2 on both `unet` and `controlnet`, latents randn(1, 4, h, w) repeated over the F frames, the prompt
repeated F times, the F frames of the control video as the condition images, DDIM. The reference here installs
CrossFrameAttnProcessor2_0 (what TextToVideoZeroPipeline itself installs on torch 2; the docs' CrossFrameAttnProcessor
computes the same attention with bmm + softmax instead of SDPA, see the tolerance test).
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import video_fixtures
from PIL import Image

import vdgraph

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
PROMPT = "a red cat on the mat"


pytestmark = pytest.mark.usefixtures("torch_threads")  # VDGRAPH_TEST_THREADS threads (default 1)


@functools.cache
def tiny_controlnet_folder(seed: int = 0) -> str:
    """A ControlNet for the tiny 2-D model (video_fixtures.save_controlnet_for), built once per process."""
    import atexit
    import shutil
    import tempfile

    root = tempfile.mkdtemp(prefix="vdgraph-tiny-controlnet-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return video_fixtures.save_controlnet_for(video_fixtures.tiny_model_folder("2d"), os.path.join(root, "net"), seed)


@functools.cache
def control_video_folder(frames: int) -> str:
    """A PNG-frame folder of `frames` seeded random 32x32 images (the condition images as they are)."""
    import atexit
    import shutil
    import tempfile

    root = tempfile.mkdtemp(prefix="vdgraph-control-video-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return video_fixtures.write_png_frames(root, frames, 32, seed=frames)


@functools.cache
def reference_pipeline(processor: str = "2_0"):
    import importlib

    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, TextToVideoZeroPipeline

    zero_module = importlib.import_module(TextToVideoZeroPipeline.__module__)  # moved to deprecated/ in 0.38
    CrossFrameAttnProcessor, CrossFrameAttnProcessor2_0 = (zero_module.CrossFrameAttnProcessor,
                                                           zero_module.CrossFrameAttnProcessor2_0)

    zero = video_fixtures.load_reference_pipeline(video_fixtures.tiny_model_folder("2d"))
    controlnet = ControlNetModel.from_pretrained(tiny_controlnet_folder(), use_safetensors=True).eval()
    pipe = StableDiffusionControlNetPipeline(
        vae=zero.vae, text_encoder=zero.text_encoder, tokenizer=zero.tokenizer, unet=zero.unet,
        controlnet=controlnet, scheduler=zero.scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.processor_class = CrossFrameAttnProcessor2_0 if processor == "2_0" else CrossFrameAttnProcessor
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reference_frames(frames, steps, seed, guidance, scale, processor="2_0"):
    pipe = reference_pipeline(processor)
    # The recipe's batch_size=2 is the [uncond, cond] layout of classifier-free guidance; without guidance the
    # processor must be told 1, or it splits the frames in two (the stock recipe has no guidance-off case).
    batch_size = 2 if guidance > 1 else 1
    pipe.unet.set_attn_processor(pipe.processor_class(batch_size=batch_size))
    pipe.controlnet.set_attn_processor(pipe.processor_class(batch_size=batch_size))
    folder = control_video_folder(frames)
    images = [Image.open(os.path.join(folder, name)).convert("RGB") for name in sorted(os.listdir(folder))]
    latents = torch.randn((1, 4, 16, 16), generator=torch.Generator().manual_seed(seed)).repeat(frames, 1, 1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pipe(prompt=[PROMPT] * frames, image=images, latents=latents, height=32, width=32,
                   num_inference_steps=steps, guidance_scale=guidance, controlnet_conditioning_scale=scale,
                   output_type="np")
    return torch.from_numpy(out.images)



def run_workflow(executor, tmp_path, frames, steps, seed, guidance, scale):
    workflow = vdgraph.load_workflow(WORKFLOWS / "text2video_zero_controlnet.json")
    inputs = {"model": video_fixtures.tiny_model_folder("2d"), "controlnet": tiny_controlnet_folder(),
              "control_video": control_video_folder(frames), "condition": "video", "prompt": PROMPT, "seed": seed,
              "frames": frames,
              "height": 32, "width": 32, "steps": steps, "guidance": guidance, "controlnet_scale": scale,
              "output": str(tmp_path / "out.mp4")}
    return executor.run(workflow, inputs=inputs, outputs=["frames"])["frames"]


CASES = [
    # frames, steps, seed, guidance, controlnet scale
    (1, 3, 0, 7.5, 1.0),
    (2, 4, 1, 7.5, 1.0),
    (3, 3, 2, 9.0, 0.5),
    (5, 3, 3, 7.5, 2.0),
    (3, 3, 4, 1.0, 1.0),
]


@pytest.mark.parametrize("frames, steps, seed, guidance, scale", CASES)
def test_controlnet_workflow_matches_the_diffusers_recipe_exactly(executor, tmp_path, frames, steps, seed, guidance,
                                                                  scale):
    ours = run_workflow(executor, tmp_path, frames, steps, seed, guidance, scale)
    expected = reference_frames(frames, steps, seed, guidance, scale)
    assert ours.shape == expected.shape
    assert (ours - expected).abs().max().item() == 0.0


def test_the_docs_processor_differs_only_by_its_softmax_rounding(executor, tmp_path):
    """The docs' CrossFrameAttnProcessor computes attention as baddbmm + softmax + bmm, not SDPA: a reduction order
    that cannot be matched (ours and CrossFrameAttnProcessor2_0 use SDPA). After 3 steps the frames differ by
    2.3e-6 at most here, so the bound is 1e-5."""
    ours = run_workflow(executor, tmp_path, 3, 3, 5, 7.5, 1.0)
    expected = reference_frames(3, 3, 5, 7.5, 1.0, processor="docs")
    assert (ours - expected).abs().max().item() <= 1e-5


# -- several ControlNets, guess mode, control guidance start/end, through the ops ----------------------------

@pytest.mark.parametrize("guess_mode, guidance", [(False, 7.5), (True, 7.5), (True, 1.0)])
def test_two_controlnets_with_step_ranges_match_multicontrolnet_exactly(guess_mode, guidance):
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    from vdgraph_video.controlnet import load_controlnet
    from vdgraph_video.loading import load_components
    from vdgraph_video.ops.denoise import denoise
    from vdgraph_video.ops.text import encode_text
    from vdgraph_video.values import Conditioning, ControlAttachment

    frames, steps, seed = 3, 4, 3
    folder = video_fixtures.tiny_model_folder("2d")
    unet, _, text_encoder, _ = load_components(folder, torch.device("cpu"), torch.float32)
    nets = [load_controlnet(f, torch.device("cpu"), torch.float32)
            for f in (tiny_controlnet_folder(), tiny_controlnet_folder(7))]
    rng = np.random.default_rng(11)
    pixels = [rng.integers(0, 256, size=(frames, 32, 32, 3), dtype=np.uint8) for _ in nets]
    conditions = [torch.from_numpy(p).float() / 255 for p in pixels]
    scales, starts, ends = (0.8, 1.3), (0.0, 0.25), (0.75, 1.0)
    for net, condition, scale, start, end in zip(nets, conditions, scales, starts, ends):
        unet = unet.with_control(ControlAttachment(net, condition.permute(0, 3, 1, 2).contiguous(), scale, start,
                                                   end, guess_mode, share_attention=False))
    zero = video_fixtures.load_reference_pipeline(folder)
    scheduler = zero.scheduler
    scheduler.set_timesteps(steps)
    conditioning = Conditioning(cond=encode_text(text_encoder.module, text_encoder.tokenizer, PROMPT, torch.device("cpu")),
                                uncond=encode_text(text_encoder.module, text_encoder.tokenizer, "", torch.device("cpu")))
    noise = torch.randn((1, 4, 1, 16, 16), generator=torch.Generator().manual_seed(seed)).repeat(1, 1, frames, 1, 1)
    ours = denoise(unet, scheduler, conditioning, noise, guidance, 0, steps).latents  # (1, 4, F, 16, 16)

    pipe = StableDiffusionControlNetPipeline(
        vae=zero.vae, text_encoder=zero.text_encoder, tokenizer=zero.tokenizer, unet=zero.unet,
        controlnet=[ControlNetModel.from_pretrained(f, use_safetensors=True).eval()
                    for f in (tiny_controlnet_folder(), tiny_controlnet_folder(7))],
        scheduler=zero.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    images = [[Image.fromarray(p[k]) for p in pixels] for k in range(frames)]  # per frame: [net 1, net 2]
    latents = noise[0].permute(1, 0, 2, 3)  # (F, 4, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = pipe(prompt=[PROMPT] * frames, image=images, latents=latents, height=32, width=32,
                        num_inference_steps=steps, guidance_scale=guidance, controlnet_conditioning_scale=list(scales),
                        control_guidance_start=list(starts), control_guidance_end=list(ends), guess_mode=guess_mode,
                        output_type="latent").images
    assert (ours[0].permute(1, 0, 2, 3) - expected).abs().max().item() == 0.0


# -- loading, checks and errors ----------------------------------------------------------------------------------

def controlnet_copy(tmp_path) -> Path:
    import shutil

    target = tmp_path / "controlnet"
    shutil.copytree(tiny_controlnet_folder(), target)
    return target


@pytest.mark.parametrize("change, message", [
    ({"auto_map": {"AutoModel": "x.Net"}}, "'auto_map' names custom code"),
    ({"_class_name": "MyNet"}, "_class_name 'MyNet' is not supported: expected ControlNetModel"),
])
def test_a_controlnet_config_naming_code_is_refused(tmp_path, change, message):
    from vdgraph_video.controlnet import load_controlnet
    from vdgraph_video.loading import ModelFolderError

    folder = controlnet_copy(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ModelFolderError, match=message):
        load_controlnet(str(folder), torch.device("cpu"), torch.float32)


def test_pickle_only_controlnet_weights_are_refused(tmp_path):
    from vdgraph_video.controlnet import load_controlnet
    from vdgraph_video.loading import ModelFolderError

    folder = controlnet_copy(tmp_path)
    for weights in folder.glob("*.safetensors"):
        weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(ModelFolderError, match="only pickle weights"):
        load_controlnet(str(folder), torch.device("cpu"), torch.float32)


def test_a_controlnet_for_another_unet_is_a_validation_problem(tmp_path):
    from vdgraph.registry import Registry
    from vdgraph.validate import validate

    folder = tmp_path / "other"
    folder.mkdir()
    config = json.loads((Path(tiny_controlnet_folder()) / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "block_out_channels": [16, 64]}))
    workflow = vdgraph.load_workflow(str(WORKFLOWS / "text2video_zero_controlnet.json"))
    problems = validate(workflow, Registry.discover(folders=(), env={}), {"model": video_fixtures.tiny_model_folder("2d"),
                                                       "controlnet": str(folder), "control_video": "x"})
    assert [(p.node, p.port) for p in problems] == [("control", "controlnet")]
    assert "block_out_channels (16, 64) vs (16, 32)" in problems[0].message


def test_start_after_end_is_a_validation_problem():
    from vdgraph.registry import Registry
    from vdgraph.validate import validate

    data = json.loads((WORKFLOWS / "text2video_zero_controlnet.json").read_text())
    data["nodes"]["control"]["params"].update(start=0.6, end=0.4)
    problems = validate(vdgraph.load_workflow(data), Registry.discover(folders=(), env={}))
    assert [(p.node, p.port) for p in problems] == [("control", "end")]


@pytest.mark.parametrize("frames, size, message", [
    (2, 32, "ControlNet 1 has 2 condition frames but the latents have 3 frames"),
    (3, 16, "condition frames are 16x16 pixels but the video is 32x32"),
])
def test_condition_frames_of_another_count_or_size_are_clear_errors(frames, size, message):
    from vdgraph_video.controlnet import ApplyControlNet, load_controlnet
    from vdgraph_video.loading import load_components
    from vdgraph_video.ops.denoise import denoise
    from vdgraph_video.values import Conditioning

    unet, *_ = load_components(video_fixtures.tiny_model_folder("2d"), torch.device("cpu"), torch.float32)
    net = load_controlnet(tiny_controlnet_folder(), torch.device("cpu"), torch.float32)
    attached = ApplyControlNet.run(None, None, unet, net, torch.rand(frames, size, size, 3), 1.0, 0.0, 1.0, False,
                                   True)
    assert unet.controls == () and len(attached.controls) == 1  # the input value is untouched
    scheduler = video_fixtures.build_components("2d")["scheduler"]
    scheduler.set_timesteps(2)
    conditioning = Conditioning(cond=torch.zeros(1, 77, 32), uncond=torch.zeros(1, 77, 32))
    with pytest.raises(ValueError, match=message):
        denoise(attached, scheduler, conditioning, torch.zeros(1, 4, 3, 16, 16), 7.5, 0, 2)


@pytest.mark.parametrize("cross_frame, guess_mode, expected", [(True, False, 2), (True, True, 1), (False, False, None)])
def test_cross_frame_patches_reach_the_controlnet_only_when_asked(cross_frame, guess_mode, expected):
    from vdgraph_video.families import family_for
    from vdgraph_video.loading import load_components
    from vdgraph_video.controlnet import load_controlnet
    from vdgraph_video.ops.attention import CrossFrameAttention, CrossFrameAttnProcessor
    from vdgraph_video.ops.guiders import ClassifierFreeGuidance
    from vdgraph_video.values import ControlAttachment

    unet, *_ = load_components(video_fixtures.tiny_model_folder("2d"), torch.device("cpu"), torch.float32)
    net = load_controlnet(tiny_controlnet_folder(), torch.device("cpu"), torch.float32)
    before = dict(net.module.attn_processors)
    handle = unet.with_control(ControlAttachment(net, torch.zeros(3, 3, 32, 32), guess_mode=guess_mode,
                                                 share_attention=cross_frame))
    handle = handle.with_patch(CrossFrameAttention("first_frame"))
    with family_for(handle, batch=1, frames=3).models(ClassifierFreeGuidance(7.5)) as (_, controlnets):
        installed = {p.batch_chunks for p in controlnets[0].attn_processors.values()
                     if isinstance(p, CrossFrameAttnProcessor)}
        assert installed == ({expected} if expected else set())
    assert net.module.attn_processors == before  # restored
