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


@pytest.fixture(scope="module")
def executor():
    return vdgraph.Executor(device="cpu")


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
