"""Acceptance: workflows/animatediff.json reproduces diffusers' AnimateDiffPipeline exactly on tiny random
components: plain, with FreeInit (enable_free_init), with FreeNoise (enable_free_noise) and with prompt travel
(FreeNoise's dict prompts). Both sides run the same kernels in the same process: max abs difference 0."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import video_fixtures


WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
PROMPT = "a red cat on the mat"

pytestmark = pytest.mark.usefixtures("torch_threads")



@pytest.fixture(scope="module")
def folders() -> tuple[str, str]:
    return video_fixtures.tiny_model_folder("2d"), video_fixtures.tiny_motion_adapter_folder()


def ours(executor, folders, tmp_path, **inputs) -> torch.Tensor:
    model, adapter = folders
    values = {"model": model, "motion_adapter": adapter, "prompt": PROMPT, "height": 32, "width": 32,
              "output": str(tmp_path / "out.gif"), "contact_sheet": str(tmp_path / "sheet.png")}
    values.update(inputs)
    return executor.run(WORKFLOWS / "animatediff.json", values, output_dir=str(tmp_path))["frames"]


def reference(folders, frames, steps, guidance, seed, prompt=PROMPT, negative_prompt=None, eta=0.0, free_init=None,
              free_noise=None, split=None) -> torch.Tensor:
    pipe = video_fixtures.load_animatediff_pipeline(*folders)  # a fresh pipeline: FreeNoise swaps its modules
    if free_init:
        pipe.enable_free_init(**free_init)
    if free_noise:
        pipe.enable_free_noise(**free_noise)
    if split:
        pipe.enable_free_noise_split_inference(**split)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pipe(prompt=prompt, negative_prompt=negative_prompt, num_frames=frames, height=32, width=32,
                   num_inference_steps=steps, guidance_scale=guidance, eta=eta,
                   generator=torch.Generator().manual_seed(seed), output_type="np")
    return torch.from_numpy(out.frames[0])


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    return (a - b).abs().max().item()


@pytest.mark.parametrize("frames, steps, guidance, eta, seed", [
    (4, 4, 7.5, 0.0, 0),
    (6, 3, 1.0, 0.0, 1),  # guidance 1: no classifier-free guidance, as in the reference
    (3, 3, 3.0, 0.6, 2),  # eta > 0: the scheduler draws (B, C, F, H, W) noise, unfolded as the reference
    (16, 2, 7.5, 0.0, 3),
])
def test_animatediff_matches_the_reference_exactly(executor, folders, tmp_path, frames, steps, guidance, eta, seed):
    result = ours(executor, folders, tmp_path, frames=frames, steps=steps, guidance=guidance, eta=eta, seed=seed)
    assert result.shape == (frames, 32, 32, 3)
    assert max_difference(result, reference(folders, frames, steps, guidance, seed, eta=eta)) == 0.0


@pytest.mark.parametrize("method, order, spatial, temporal, fast", [
    ("butterworth", 4, 0.25, 0.25, False),
    ("gaussian", 4, 0.4, 0.3, False),
    ("ideal", 4, 0.5, 0.2, True),
    ("butterworth", 2, 0.3, 0.6, True),
])
def test_free_init_matches_enable_free_init_exactly(executor, folders, tmp_path, method, order, spatial, temporal,
                                                    fast):
    result = ours(executor, folders, tmp_path, frames=4, steps=3, seed=3, free_init_iterations=3,
                  free_init_method=method, free_init_order=order, free_init_spatial_stop=spatial,
                  free_init_temporal_stop=temporal, free_init_fast_sampling=fast)
    expected = reference(folders, 4, 3, 7.5, 3, free_init=dict(
        num_iters=3, method=method, order=order, spatial_stop_frequency=spatial, temporal_stop_frequency=temporal,
        use_fast_sampling=fast))
    assert max_difference(result, expected) == 0.0
    plain = ours(executor, folders, tmp_path, frames=4, steps=3, seed=3)
    assert max_difference(result, plain) > 1e-3, "FreeInit changed nothing"


@pytest.mark.parametrize("frames, length, stride, weighting, noise", [
    (10, 6, 2, "pyramid", "shuffle_context"),
    (9, 4, 3, "flat", "shuffle_context"),  # windows do not tile the clip: one more ends at the last frame
    (8, 4, 2, "delayed_reverse_sawtooth", "random"),
    (7, 7, 1, "pyramid", "shuffle_context"),  # one window
])
def test_free_noise_matches_enable_free_noise_exactly(executor, folders, tmp_path, frames, length, stride, weighting,
                                                      noise):
    # diffusers' FreeNoise turns a plain prompt into {0: prompt} and interpolates it: the schedule "0: ..." here
    result = ours(executor, folders, tmp_path, frames=frames, steps=2, seed=5, prompt=f"0: {PROMPT}",
                  context_length=length, context_stride=stride, context_weighting=weighting, context_noise=noise)
    expected = reference(folders, frames, 2, 7.5, 5, free_noise=dict(
        context_length=length, context_stride=stride, weighting_scheme=weighting, noise_type=noise))
    assert max_difference(result, expected) == 0.0


def test_prompt_travel_matches_free_noise_dict_prompts_exactly(executor, folders, tmp_path):
    result = ours(executor, folders, tmp_path, frames=8, steps=2, seed=6, context_length=8, context_stride=2,
                  prompt="0: a red cat | 5: the cat and a dog", negative_prompt="0: blue\n3: green")
    expected = reference(folders, 8, 2, 7.5, 6, prompt={0: "a red cat", 5: "the cat and a dog"},
                         negative_prompt={0: "blue", 3: "green"}, free_noise=dict(context_length=8, context_stride=2))
    assert max_difference(result, expected) == 0.0


def test_free_init_and_free_noise_together_match_the_reference(executor, folders, tmp_path):
    result = ours(executor, folders, tmp_path, frames=6, steps=2, seed=7, prompt=f"0: {PROMPT}", context_length=4,
                  context_stride=2, free_init_iterations=2)
    expected = reference(folders, 6, 2, 7.5, 7, free_init=dict(num_iters=2),
                         free_noise=dict(context_length=4, context_stride=2))
    assert max_difference(result, expected) == 0.0


def test_free_noise_split_inference_matches_the_reference_exactly(executor, folders, tmp_path):
    """enable_free_noise_split_inference: spatial layers in chunks of 4 frames (of 2 x 10), motion modules in chunks
    of 256 pixel sequences (the top level holds 2 x 16 x 16 = 512)."""
    result = ours(executor, folders, tmp_path, frames=10, steps=2, seed=8, prompt=f"0: {PROMPT}", context_length=6,
                  context_stride=2, context_split_frames=4)
    expected = reference(folders, 10, 2, 7.5, 8, free_noise=dict(context_length=6, context_stride=2),
                         split=dict(spatial_split_size=256, temporal_split_size=4))
    assert max_difference(result, expected) == 0.0
