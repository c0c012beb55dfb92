"""The denoise loop's swappable parts: guiders, model-family adapters, step hooks."""

from __future__ import annotations

import copy

import pytest
import torch
import video_fixtures

from vdgraph_video.families import family_for
from vdgraph_video.ops import attention
from vdgraph_video.ops.denoise import StepState, denoise, denoise_loop
from vdgraph_video.ops.guiders import ClassifierFreeGuidance, InstructPix2PixGuidance, NoGuidance, text_guider
from vdgraph_video.values import Conditioning, UNetHandle

one_thread = pytest.fixture(autouse=True)(video_fixtures.single_thread)


@pytest.fixture(scope="module")
def parts():
    components = video_fixtures.build_components("2d")
    scheduler = components["scheduler"]
    scheduler.set_timesteps(4)
    g = torch.Generator().manual_seed(0)
    conditioning = Conditioning(cond=torch.randn(1, 77, 32, generator=g), uncond=torch.randn(1, 77, 32, generator=g))
    latents = torch.randn(1, 4, 3, 16, 16, generator=g)
    return components["unet"], scheduler, conditioning, latents


def test_text_guider_picks_chunks_from_the_scale():
    assert text_guider(1.0).chunks == 1 and text_guider(0.0).chunks == 1
    assert text_guider(7.5).chunks == 2


def test_guiders_combine_as_the_reference_pipelines():
    p = torch.randn(6, 2)
    text, image, uncond = p.chunk(3)
    expected = uncond + 7.5 * (text - image) + 1.5 * (image - uncond)  # StableDiffusionInstructPix2PixPipeline
    assert torch.equal(InstructPix2PixGuidance(7.5, 1.5).combine(p), expected)
    u, c = p[:4].chunk(2)
    assert torch.equal(ClassifierFreeGuidance(3.0).combine(p[:4]), u + 3.0 * (c - u))
    assert NoGuidance().combine(p) is p
    cond = Conditioning(cond=torch.ones(1, 2, 3), uncond=torch.zeros(1, 2, 3))
    e = InstructPix2PixGuidance(7.5, 1.5).embeddings(cond, batch=2)
    assert e.shape == (6, 2, 3) and (e[:2] == 1).all() and (e[2:] == 0).all()  # [text, image, none]


@pytest.mark.parametrize("guider, chunks", [(NoGuidance(), 1), (ClassifierFreeGuidance(5.0), 2),
                                            (InstructPix2PixGuidance(5.0, 1.5), 3)])
def test_the_guider_tells_the_attention_patches_its_chunks(parts, guider, chunks, monkeypatch):
    unet, scheduler, conditioning, latents = parts
    seen = []
    original = attention.CrossFrameAttnProcessor.__call__

    def spy(self, attn, hidden_states, *args, **kwargs):
        seen.append((self.batch_chunks, hidden_states.shape[0]))
        return original(self, attn, hidden_states, *args, **kwargs)

    monkeypatch.setattr(attention.CrossFrameAttnProcessor, "__call__", spy)
    handle = UNetHandle(unet).with_patch(attention.CrossFrameAttention("first_frame"))
    family = family_for(handle, batch=1, frames=3)
    denoise_loop(family, guider, copy.deepcopy(scheduler), conditioning, latents, 0, 1)
    assert seen and set(seen) == {(chunks, chunks * 3)}


class Recorder:
    def __init__(self, replace_with=None):
        self.before_steps, self.after_steps, self.replace_with = [], [], replace_with

    def before(self, state: StepState) -> None:
        self.before_steps.append((state.index, state.latents.clone()))

    def after(self, state: StepState) -> None:
        self.after_steps.append(state.index)
        assert state.noise_pred is not None and state.x0 is not None
        if self.replace_with is not None:
            state.latents = torch.full_like(state.latents, self.replace_with)


def test_step_hooks_see_every_step_and_a_neutral_hook_changes_nothing(parts):
    unet, scheduler, conditioning, latents = parts
    plain = denoise(UNetHandle(unet), copy.deepcopy(scheduler), conditioning, latents, 5.0, 1, 4)
    hook = Recorder()
    hooked = denoise(UNetHandle(unet), copy.deepcopy(scheduler), conditioning, latents, 5.0, 1, 4, hooks=[hook])
    assert torch.equal(plain.latents, hooked.latents) and torch.equal(plain.x0, hooked.x0)
    assert [i for i, _ in hook.before_steps] == [1, 2, 3] and hook.after_steps == [1, 2, 3]


def test_an_after_hook_replaces_the_latents_the_next_step_starts_from(parts):
    unet, scheduler, conditioning, latents = parts
    hook = Recorder(replace_with=0.25)
    result = denoise(UNetHandle(unet), copy.deepcopy(scheduler), conditioning, latents, 5.0, 0, 3, hooks=[hook])
    assert all((x == 0.25).all() for _, x in hook.before_steps[1:])
    assert (result.latents == 0.25).all()


def test_a_3d_unet_refuses_controlnets_with_a_clear_message():
    from vdgraph_video.values import ControlAttachment, ControlNetHandle

    unet = video_fixtures.build_components("3d")["unet"]
    handle = UNetHandle(unet).with_control(ControlAttachment(ControlNetHandle(torch.nn.Identity()),
                                                             torch.zeros(2, 3, 32, 32)))
    with pytest.raises(ValueError, match="3-D video UNet takes no ControlNet"):
        family_for(handle, batch=1, frames=2)
