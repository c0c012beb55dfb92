"""Acceptance: workflows/animatediff_controlnet.json reproduces diffusers' AnimateDiffControlNetPipeline exactly on
tiny random components (the tiny 2-D UNet + a MotionAdapter + a ControlNetModel.from_unet of it): frame counts,
guidance on and off, residual scales, control guidance start/end, and FreeInit with FreeNoise. Both sides run the
same kernels in the same process: max abs difference 0. Then the bad inputs: condition frames of another count or
size, a ControlNet of another block layout."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch
import video_fixtures
from animatediff_controlnet_fixtures import load_animatediff_controlnet_pipeline, png_frames
from test_video_controlnet import control_video_folder, tiny_controlnet_folder

import vdgraph

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
WORKFLOW = WORKFLOWS / "animatediff_controlnet.json"
PROMPT = "a red cat on the mat"

pytestmark = pytest.mark.usefixtures("torch_threads")



def folders() -> dict:
    return {"model": video_fixtures.tiny_model_folder("2d"), "motion_adapter": video_fixtures.tiny_motion_adapter_folder(),
            "controlnet": tiny_controlnet_folder()}


def ours(executor, tmp_path, workflow=WORKFLOW, **inputs) -> torch.Tensor:
    values = {**folders(), "prompt": PROMPT, "height": 32, "width": 32, "condition": "video",
              "control_video": control_video_folder(inputs.get("frames", 16)),
              "output": str(tmp_path / "out.gif"), "contact_sheet": str(tmp_path / "sheet.png")}
    values.update(inputs)
    return executor.run(workflow, values, output_dir=str(tmp_path), outputs=["frames"])["frames"]


def reference(frames, steps, guidance, seed, scale=1.0, start=0.0, end=1.0, prompt=PROMPT, free_init=None,
              free_noise=None) -> torch.Tensor:
    paths = folders()
    pipe = load_animatediff_controlnet_pipeline(paths["model"], paths["motion_adapter"], paths["controlnet"])
    if free_init:
        pipe.enable_free_init(**free_init)
    if free_noise:
        pipe.enable_free_noise(**free_noise)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pipe(prompt=prompt, num_frames=frames, height=32, width=32, num_inference_steps=steps,
                   guidance_scale=guidance, conditioning_frames=png_frames(control_video_folder(frames)),
                   controlnet_conditioning_scale=scale, control_guidance_start=start, control_guidance_end=end,
                   generator=torch.Generator().manual_seed(seed), output_type="np")
    return torch.from_numpy(out.frames[0])


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    return (a - b).abs().max().item()


@pytest.mark.parametrize("frames, steps, guidance, scale, start, end, seed", [
    (4, 3, 7.5, 1.0, 0.0, 1.0, 0),
    (5, 3, 1.0, 0.5, 0.0, 1.0, 1),  # guidance 1: no classifier-free guidance, one chunk for UNet and ControlNet
    (3, 5, 7.5, 2.0, 0.2, 0.8, 2),  # the ControlNet skips the first and the last step
])
def test_animatediff_controlnet_matches_the_reference_exactly(executor, tmp_path, frames, steps, guidance, scale,
                                                             start, end, seed):
    result = ours(executor, tmp_path, frames=frames, steps=steps, guidance=guidance, controlnet_scale=scale,
                  control_start=start, control_end=end, seed=seed)
    assert result.shape == (frames, 32, 32, 3)
    assert max_difference(result, reference(frames, steps, guidance, seed, scale, start, end)) == 0.0
    if start == 0.0:  # the ControlNet's residuals matter (a family that dropped them would fail here)
        off = ours(executor, tmp_path, frames=frames, steps=steps, guidance=guidance, controlnet_scale=0.0,
                   seed=seed)
        assert max_difference(result, off) > 1e-3


def test_free_init_and_free_noise_with_a_controlnet_match_the_reference(executor, tmp_path):
    """The pipeline supports both: FreeInit re-noises between passes, FreeNoise windows the motion modules (the
    ControlNet still sees every frame) and encodes the prompt per frame (the schedule '0: ...' here)."""
    result = ours(executor, tmp_path, frames=6, steps=2, seed=7, prompt=f"0: {PROMPT}", context_length=4,
                  context_stride=2, free_init_iterations=2)
    expected = reference(6, 2, 7.5, 7, prompt=PROMPT, free_init=dict(num_iters=2),
                         free_noise=dict(context_length=4, context_stride=2))
    assert max_difference(result, expected) == 0.0


def test_the_controlnet_may_be_attached_before_the_motion_adapter(executor, tmp_path):
    """inflate carries the 2-D UNet value's ControlNets over: the same frames either way."""
    data = json.loads(WORKFLOW.read_text())
    data["nodes"]["control"]["in"]["unet"] = "model.unet"
    data["nodes"]["inflate"]["in"]["unet"] = "control.unet"
    data["nodes"]["windows"]["in"]["unet"] = "inflate.unet"
    edited = tmp_path / "before.json"
    edited.write_text(json.dumps(data))
    assert errors(edited, {**folders(), "control_video": "in.mp4"}) == []
    before = ours(executor, tmp_path, workflow=edited, frames=3, steps=2, seed=4)
    after = ours(executor, tmp_path, frames=3, steps=2, seed=4)
    assert max_difference(before, after) == 0.0


def test_noise_shared_mixes_the_starting_and_free_init_noise(executor, tmp_path):
    """noise_shared reaches video.noise and video.denoise_free_init as in animatediff.json: 0 is the reference
    exactly (the parity tests), a share draws other frames, and FreeInit's later passes draw with it too."""
    plain = ours(executor, tmp_path, frames=3, steps=2, seed=5)
    mixed = ours(executor, tmp_path, frames=3, steps=2, seed=5, noise_shared=0.6)
    assert bool(torch.isfinite(mixed).all()) and max_difference(plain, mixed) > 1e-4
    data = json.loads(WORKFLOW.read_text())
    del data["nodes"]["denoise"]["in"]["shared"]  # FreeInit's fresh noise independent again
    unlinked = tmp_path / "unlinked.json"
    unlinked.write_text(json.dumps(data))
    free_init = {"frames": 3, "steps": 2, "seed": 5, "free_init_iterations": 2, "noise_shared": 0.6}
    assert max_difference(ours(executor, tmp_path, **free_init),
                          ours(executor, tmp_path, workflow=unlinked, **free_init)) > 1e-4


def test_guess_mode_matches_the_reference_without_guidance_and_pads_zeros_with_it(executor, tmp_path):
    """video.apply_controlnet's guess_mode (not a workflow input; a param here). Without guidance the pipeline runs
    it and the frames match exactly. With guidance diffusers 0.42.1's AnimateDiffControlNetPipeline fails: it runs
    the ControlNet on the prompt chunk only and adds its (F, ...) residuals to the UNet's (2F, ...) blocks without
    padding; ours gives the unconditional chunk zero residuals, as StableDiffusionControlNetPipeline does."""
    data = json.loads(WORKFLOW.read_text())
    data["nodes"]["control"]["params"]["guess_mode"] = True
    edited = tmp_path / "guess.json"
    edited.write_text(json.dumps(data))
    paths = folders()
    pipe = load_animatediff_controlnet_pipeline(paths["model"], paths["motion_adapter"], paths["controlnet"])

    def expected(guidance):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.from_numpy(pipe(
                prompt=PROMPT, num_frames=3, height=32, width=32, num_inference_steps=2, guidance_scale=guidance,
                conditioning_frames=png_frames(control_video_folder(3)), guess_mode=True,
                generator=torch.Generator().manual_seed(0), output_type="np").frames[0])

    result = ours(executor, tmp_path, workflow=edited, frames=3, steps=2, guidance=1.0, seed=0)
    assert max_difference(result, expected(1.0)) == 0.0
    with pytest.raises(RuntimeError, match="must match the size"):
        expected(7.5)
    guided = ours(executor, tmp_path, workflow=edited, frames=3, steps=2, guidance=7.5, seed=0)
    plain = ours(executor, tmp_path, frames=3, steps=2, guidance=7.5, seed=0)
    assert bool(torch.isfinite(guided).all()) and max_difference(guided, plain) > 1e-4


# -- bad input ---------------------------------------------------------------------------------------------------

def errors(path, inputs):
    return [p for p in vdgraph.validate(path, inputs=inputs) if p.severity == "error"]


def edited_workflow(tmp_path, **control_video_params) -> Path:
    """animatediff_controlnet.json with literal params on its control_video reader (a user's edit)."""
    return video_fixtures.with_literal_params(WORKFLOW, tmp_path, "control_video", **control_video_params)


INPUTS = {"control_video": "in.mp4", "frames": 4, "height": 32, "width": 32}


def test_the_shipped_workflow_validates_on_its_builtin_defaults():
    assert errors(WORKFLOW, {"control_video": "in.mp4"}) == []
    assert errors(WORKFLOW, {**folders(), **INPUTS}) == []


def test_fewer_condition_frames_than_frames_is_a_validation_problem(tmp_path):
    found = errors(edited_workflow(tmp_path, max_frames=2), {**folders(), **INPUTS})
    assert [(p.code, p.node, p.port) for p in found] == [("node.check", "denoise", "unet")]
    assert "ControlNet 1's condition has at most 2 frames but the latents have 4" in found[0].message
    assert "one condition image per frame" in found[0].hint


def test_condition_frames_of_another_size_are_a_validation_problem(tmp_path):
    found = errors(edited_workflow(tmp_path, height=64, width=48), {**folders(), **INPUTS})
    assert [(p.code, p.node, p.port) for p in found] == [("node.check", "denoise", "unet")]
    assert "condition frames are 64x48 pixels but the latents are for 32x32" in found[0].message


def test_a_controlnet_for_another_unet_is_a_validation_problem(tmp_path):
    folder = tmp_path / "other"
    folder.mkdir()
    config = json.loads((Path(tiny_controlnet_folder()) / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "block_out_channels": [16, 64]}))
    found = errors(WORKFLOW, {**folders(), **INPUTS, "controlnet": str(folder)})
    assert [(p.node, p.port) for p in found] == [("control", "controlnet")]
    assert "block_out_channels (16, 64) vs (16, 32)" in found[0].message


def test_a_short_control_video_is_a_run_time_error_naming_node_port_and_controlnet(executor, tmp_path):
    message = r"denoise.*port 'unet': ControlNet 1 has 2 condition frames but the latents have 3"
    with pytest.raises(Exception, match=message):
        ours(executor, tmp_path, frames=3, steps=1, control_video=control_video_folder(2))


@pytest.mark.parametrize("frames, size, message", [
    (2, 32, "ControlNet 1 has 2 condition frames but the latents have 3 frames"),
    (3, 16, "condition frames are 16x16 pixels but the video is 32x32"),
])
def test_the_motion_family_refuses_conditions_that_do_not_fit(frames, size, message):
    """What video.denoise says where validation cannot know (condition frames from an unknown-length video)."""
    from vdgraph_video.controlnet import ApplyControlNet, load_controlnet
    from vdgraph_video.loading import load_components
    from vdgraph_video.motion_adapter import inflate, load_motion_adapter
    from vdgraph_video.ops.denoise import denoise
    from vdgraph_video.values import Conditioning

    cpu = torch.device("cpu")
    unet, *_ = load_components(video_fixtures.tiny_model_folder("2d"), cpu, torch.float32)
    motion = inflate(unet, load_motion_adapter(video_fixtures.tiny_motion_adapter_folder(), cpu, torch.float32))
    net = load_controlnet(tiny_controlnet_folder(), cpu, torch.float32)
    attached = ApplyControlNet.run(None, None, motion, net, torch.rand(frames, size, size, 3), 1.0, 0.0, 1.0, False,
                                   False)
    assert motion.controls == () and type(attached) is type(motion)  # a new motion UNet value; the input untouched
    scheduler = video_fixtures.build_components("2d")["scheduler"]
    scheduler.set_timesteps(2)
    conditioning = Conditioning(cond=torch.zeros(1, 77, 32), uncond=torch.zeros(1, 77, 32))
    with pytest.raises(ValueError, match=message):
        denoise(attached, scheduler, conditioning, torch.zeros(1, 4, 3, 16, 16), 7.5, 0, 2)


def test_a_controlnet_of_another_layout_is_refused_at_run_time_on_a_motion_unet(tmp_path):
    """Where validation cannot read the configs (a hub id, a URL), video.apply_controlnet compares the motion UNet's
    2-D layout with the ControlNet's when it runs."""
    from diffusers import ControlNetModel

    from vdgraph_video.controlnet import ApplyControlNet, load_controlnet
    from vdgraph_video.loading import load_components
    from vdgraph_video.motion_adapter import inflate, load_motion_adapter

    cpu = torch.device("cpu")
    unet, *_ = load_components(video_fixtures.tiny_model_folder("2d"), cpu, torch.float32)
    motion = inflate(unet, load_motion_adapter(video_fixtures.tiny_motion_adapter_folder(), cpu, torch.float32))
    config = dict(ControlNetModel.load_config(tiny_controlnet_folder()))
    config["block_out_channels"] = [16, 64]
    torch.manual_seed(0)
    ControlNetModel.from_config(config).save_pretrained(str(tmp_path / "other"), safe_serialization=True)
    other = load_controlnet(str(tmp_path / "other"), cpu, torch.float32)
    with pytest.raises(ValueError, match=r"block_out_channels \(16, 64\) vs \(16, 32\)"):
        ApplyControlNet.run(None, None, motion, other, torch.rand(3, 32, 32, 3), 1.0, 0.0, 1.0, False, False)
    matching = load_controlnet(tiny_controlnet_folder(), cpu, torch.float32)
    ApplyControlNet.run(None, None, motion, matching, torch.rand(3, 32, 32, 3), 1.0, 0.0, 1.0, False, False)
