"""ControlVideo's attention: fully cross-frame and reference-frame attention against the naive computation, and
the hierarchical sampler (key frames with full attention, clips attending to both of their key frames)."""

from __future__ import annotations

import functools

import pytest
import torch
import video_fixtures

one_thread = pytest.fixture(autouse=True)(video_fixtures.single_thread)


def _attention_layer():
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(0)
    return Attention(query_dim=32, heads=4, dim_head=8).eval()


def _naive(attn, hidden: torch.Tensor, chunks: int, frames: int, keys_of) -> torch.Tensor:
    """Attention written out: per clip and frame, softmax(q k^T / sqrt(d)) v with the score matrix materialised, keys
    and values of the frames `keys_of(frame)` side by side along the tokens."""
    tokens = hidden.shape[1]
    q, k, v = (m(hidden).reshape(chunks, frames, tokens, 4, 8).transpose(2, 3) for m in
               (attn.to_q, attn.to_k, attn.to_v))  # (chunks, F, heads, T, d)
    out = torch.empty_like(q)
    for f in range(frames):
        kf = torch.cat([k[:, g] for g in keys_of(f)], dim=2)  # (chunks, heads, R*T, d)
        vf = torch.cat([v[:, g] for g in keys_of(f)], dim=2)
        scores = q[:, f] @ kf.transpose(-1, -2) / 8 ** 0.5  # (chunks, heads, T, R*T)
        out[:, f] = torch.softmax(scores, dim=-1) @ vf
    return attn.to_out[0](out.transpose(2, 3).reshape(chunks * frames, tokens, 32))


@pytest.mark.parametrize("mode, references", [("full", ()), ("references", (0, 1)), ("references", (0, -1))])
def test_cross_frame_attention_equals_the_naive_computation(mode, references):
    """Within 1e-6, not 0: SDPA's fused CPU kernel (flash attention) sums the softmax blockwise with a running
    maximum, the naive form in one reduction over the whole row; the orders cannot be matched (6.7e-8 here)."""
    from vdgraph_video.ops.attention import CrossFrameAttnProcessor

    attn = _attention_layer()
    chunks, frames, tokens = 2, 6, 64
    hidden = torch.randn(chunks * frames, tokens, 32)
    keys_of = (lambda f: range(frames)) if mode == "full" else (lambda f: [r % frames for r in references])
    with torch.no_grad():
        ours = CrossFrameAttnProcessor(mode, chunks, references)(attn, hidden)
        expected = _naive(attn, hidden, chunks, frames, keys_of)
    assert ours.shape == hidden.shape
    assert (ours - expected).abs().max().item() <= 1e-6


# -- the hierarchical sampler -----------------------------------------------------------------------------------

def test_key_frames_and_clips_follow_the_paper():
    from vdgraph_video.ops.hierarchical import clip_calls, default_window, key_frames

    assert key_frames(15, 3) == [0, 2, 4, 6, 8, 10, 12, 14]
    assert key_frames(16, 4) == [0, 3, 6, 9, 12, 15]
    assert key_frames(10, 4) == [0, 3, 6, 9]
    assert key_frames(11, 4) == [0, 3, 6, 9, 10]
    assert clip_calls(11, 4) == [[0, 3, 1, 2], [3, 6, 4, 5], [6, 9, 7, 8]]
    assert (default_window(15), default_window(64), default_window(4)) == (3, 8, 3)
    calls = clip_calls(64, 8)
    covered = sorted(f for clip in calls for f in clip[2:]) + key_frames(64, 8)
    assert sorted(covered) == list(range(64)), "every frame is a key frame or an inner frame of one clip"


@functools.cache
def _parts():
    from vdgraph_video.loading import load_components
    from vdgraph_video.ops.text import encode_text
    from vdgraph_video.values import Conditioning

    unet, _, text_encoder, _ = load_components(video_fixtures.tiny_model_folder("2d"), torch.device("cpu"),
                                               torch.float32)
    embed = functools.partial(encode_text, text_encoder.module, text_encoder.tokenizer, device=torch.device("cpu"))
    return unet, Conditioning(cond=embed("a red cat"), uncond=embed(""))


def _one_step(latents: torch.Tensor, window: int = 3) -> torch.Tensor:
    from diffusers import DDIMScheduler

    from vdgraph_video.families.hierarchical import HierarchicalPlan
    from vdgraph_video.ops.denoise import denoise

    unet, conditioning = _parts()
    scheduler = DDIMScheduler()
    scheduler.set_timesteps(4)
    return denoise(unet, scheduler, conditioning, latents, 7.5, 0, 1, plan=HierarchicalPlan(window)).latents


def test_key_frames_use_full_attention_and_clips_their_two_key_frames():
    """Every UNet call, with the self-attention installed while it runs: one call on the key frames with full
    attention, then one per clip with references (0, 1); no call sees more than the clip or the key frames."""
    unet, _ = _parts()
    layer = unet.module.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    seen = []

    def record(module, args):
        processor = layer.processor
        seen.append((args[0].shape[0], getattr(processor, "mode", None), getattr(processor, "references", None)))

    hook = unet.module.register_forward_pre_hook(record)
    try:
        _one_step(torch.randn(1, 4, 7, 16, 16, generator=torch.Generator().manual_seed(0)))
    finally:
        hook.remove()
    # 7 frames, window 3: key frames [0, 2, 4, 6]; clips [0, 2, 1], [2, 4, 3], [4, 6, 5]; 2 guidance chunks each
    assert seen == [(8, "full", ())] + [(6, "references", (0, 1))] * 3
    assert type(layer.processor).__name__ != "CrossFrameAttnProcessor", "restored after the loop"


def test_clip_frames_see_both_key_frames_and_nothing_else(monkeypatch):
    """Frame 1 sits in the clip [0, 2, 1]: its prediction changes with key frame 2 (the clip's second key frame) and
    not at all with frame 3 (another clip's inner frame). With the reference code's positions [0, -1] (key frame 0
    and the clip's last inner frame) frame 1 would not see key frame 2: the same check fails there."""
    import vdgraph_video.families.hierarchical as hierarchical
    from vdgraph_video.ops.attention import CrossFrameAttention

    base = torch.randn(1, 4, 7, 16, 16, generator=torch.Generator().manual_seed(1))
    nudged_key, nudged_other = base.clone(), base.clone()
    nudged_key[:, :, 2] += 0.5
    nudged_other[:, :, 3] += 0.5
    out, with_key, with_other = (_one_step(x) for x in (base, nudged_key, nudged_other))
    assert (out[:, :, 1] - with_key[:, :, 1]).abs().max().item() > 1e-4
    assert torch.equal(out[:, :, 1], with_other[:, :, 1])
    assert not torch.equal(out[:, :, 3], with_other[:, :, 3])

    monkeypatch.setattr(hierarchical, "CLIP_ATTENTION", CrossFrameAttention("references", references=(0, -1)))
    assert torch.equal(_one_step(base)[:, :, 1], _one_step(nudged_key)[:, :, 1])


def test_each_call_gives_the_controlnet_the_condition_images_of_its_frames(tmp_path):
    """Per call, the ControlNet sees the condition images of exactly the call's frames, in the call's order."""
    from vdgraph_video.controlnet import load_controlnet
    from vdgraph_video.values import ControlAttachment

    folder = video_fixtures.save_controlnet_for(video_fixtures.tiny_model_folder("2d"), str(tmp_path / "net"))
    net = load_controlnet(folder, torch.device("cpu"), torch.float32)
    frames = 7
    condition = torch.arange(frames, dtype=torch.float32).view(frames, 1, 1, 1).expand(frames, 3, 32, 32) / 10
    unet, conditioning = _parts()
    controlled = unet.with_control(ControlAttachment(net, condition.contiguous(), share_attention=False))
    seen = []
    hook = net.module.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append([round(v * 10) for v in
                                                  kwargs["controlnet_cond"].mean(dim=(1, 2, 3)).tolist()]),
        with_kwargs=True)
    try:
        from diffusers import DDIMScheduler

        from vdgraph_video.families.hierarchical import HierarchicalPlan
        from vdgraph_video.ops.denoise import denoise

        scheduler = DDIMScheduler()
        scheduler.set_timesteps(4)
        latents = torch.randn(1, 4, frames, 16, 16, generator=torch.Generator().manual_seed(2))
        denoise(controlled, scheduler, conditioning, latents, 7.5, 0, 1, plan=HierarchicalPlan(3))
    finally:
        hook.remove()
    # [uncond, cond] chunks, each with the call's frames
    assert seen == [[0, 2, 4, 6] * 2, [0, 2, 1] * 2, [2, 4, 3] * 2, [4, 6, 5] * 2]
