"""The video pack's tensor ops on tiny CPU tensors, against diffusers or naive re-implementations."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import video_fixtures

from vdgraph_video.ops import attention, latents, motion, noise, renoise, smooth
from vdgraph_video.families.sd import anchor_chunks, per_frame_embeddings
from vdgraph_video.ops.guiders import ClassifierFreeGuidance, NoGuidance
from vdgraph_video.values import Conditioning, generator_from_state, seeded_state

one_thread = pytest.fixture(autouse=True)(video_fixtures.single_thread)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- folding and indices -------------------------------------------------------------------------------------

def test_fold_unfold_round_trip_and_layout():
    x = torch.arange(2 * 3 * 4 * 2 * 2, dtype=torch.float32).reshape(2, 3, 4, 2, 2)  # (B, C, F, H, W)
    folded = latents.fold_frames(x)
    assert folded.shape == (8, 3, 2, 2)
    assert torch.equal(folded[1 * 4 + 2], x[1, :, 2])  # batch item 1, frame 2
    assert torch.equal(latents.unfold_frames(folded, 2), x)


def test_resolve_index_counts_from_the_end_and_rejects_out_of_range():
    assert latents.resolve_index(-3, 10, "start") == 7
    assert latents.resolve_index(10, 10, "end") == 10
    with pytest.raises(IndexError, match="start -11 is out of range for 10 steps"):
        latents.resolve_index(-11, 10, "start")


def test_anchor_chunks_start_with_frame_zero_and_cover_every_frame_once():
    assert anchor_chunks(7, 0) == [list(range(7))]
    assert anchor_chunks(7, 3) == [[0, 1, 2], [0, 3, 4], [0, 5, 6]]
    assert anchor_chunks(6, 3) == [[0, 1, 2], [0, 3, 4], [0, 5]]
    assert anchor_chunks(4, 8) == [[0, 1, 2, 3]]


def test_guidance_embeddings_order_uncond_then_cond_frames_contiguous():
    cond = Conditioning(cond=torch.full((1, 2, 3), 1.0), uncond=torch.full((1, 2, 3), -1.0))
    e = per_frame_embeddings(ClassifierFreeGuidance(7.5).embeddings(cond, batch=1), frames=4)
    assert e.shape == (8, 2, 3)
    assert (e[:4] == -1).all() and (e[4:] == 1).all()
    assert NoGuidance().embeddings(cond, 1).shape == (1, 2, 3)


# -- noise -----------------------------------------------------------------------------------------------------

def test_noise_independent_is_one_draw_in_video_layout():
    x = noise.sample_noise((1, 4, 3, 5, 6), "independent", gen(1), torch.device("cpu"), torch.float32)
    assert torch.equal(x, torch.randn((1, 4, 3, 5, 6), generator=gen(1)))


def test_noise_same_repeats_one_frame_and_first_frame_has_one_frame():
    same = noise.sample_noise((1, 4, 3, 5, 6), "same", gen(2), torch.device("cpu"), torch.float32)
    assert same.shape == (1, 4, 3, 5, 6)
    assert torch.equal(same[:, :, 0], same[:, :, 2])
    first = noise.sample_noise((1, 4, 3, 5, 6), "first_frame", gen(2), torch.device("cpu"), torch.float32, scale=2.0)
    assert first.shape == (1, 4, 1, 5, 6)
    assert torch.equal(first[:, :, 0], 2.0 * same[:, :, 0])


def test_noise_independent_may_share_a_part_of_the_variance_over_frames():
    shape, cpu = (2, 4, 6, 5, 6), torch.device("cpu")
    mixed = noise.sample_noise(shape, "independent", gen(3), cpu, torch.float32, shared=0.81)
    g = gen(3)
    independent = torch.randn(shape, generator=g)  # drawn first, then the common frame
    common = torch.randn((2, 4, 1, 5, 6), generator=g)
    torch.testing.assert_close(mixed, 0.9 * common + math.sqrt(0.19) * independent, rtol=0, atol=1e-6)
    assert torch.equal(noise.sample_noise(shape, "independent", gen(3), cpu, torch.float32, shared=0.0), independent)
    every_frame = noise.sample_noise(shape, "independent", gen(3), cpu, torch.float32, shared=1.0)
    assert torch.equal(every_frame, common.expand(shape))
    big = noise.sample_noise((1, 1, 2, 256, 256), "independent", gen(4), cpu, torch.float32, shared=0.5)
    assert abs(float(big.var()) - 1.0) < 0.02  # unit variance per element
    assert abs(float(torch.corrcoef(big[0, 0].reshape(2, -1))[0, 1]) - 0.5) < 0.02  # frames correlate by shared
    with pytest.raises(ValueError, match="shared 1.5 is not a share"):
        noise.sample_noise(shape, "independent", gen(3), cpu, torch.float32, shared=1.5)
    with pytest.raises(ValueError, match="mode 'independent' only"):
        noise.sample_noise(shape, "same", gen(3), cpu, torch.float32, shared=0.5)


def test_rng_state_round_trip_continues_the_stream():
    g = gen(5)
    a = torch.randn(3, generator=g)
    b = torch.randn(3, generator=g)
    state = seeded_state(5)
    g2 = generator_from_state(state)
    assert torch.equal(torch.randn(3, generator=g2), a)
    assert torch.equal(torch.randn(3, generator=generator_from_state(g2.get_state())), b)
    assert torch.equal(state, seeded_state(5)), "using a state must not change the RNG value"


# -- re-noise --------------------------------------------------------------------------------------------------

def test_forward_alpha_reference_product_is_one_index_off_the_exact_ratio():
    from diffusers import DDIMScheduler

    s = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    ref = renoise.forward_alpha(s, 881, 941, "reference")
    exact = renoise.forward_alpha(s, 881, 941, "exact")
    assert ref == torch.prod(s.alphas[881:941])
    assert abs(float(exact) - float(s.alphas_cumprod[941] / s.alphas_cumprod[881])) < 1e-7
    assert abs(float(ref) - float(s.alphas_cumprod[940] / s.alphas_cumprod[880])) < 1e-5
    assert abs(float(ref) - 0.531064) < 1e-5 and abs(float(exact) - 0.530534) < 1e-5  # the notes' figures


def test_renoise_draws_in_folded_layout_like_the_reference():
    x = torch.randn(1, 4, 3, 5, 5, generator=gen(0))
    alpha = torch.tensor(0.6)
    out = renoise.renoise(x, alpha, gen(9))
    folded = latents.fold_frames(x)
    eps = torch.randn(folded.shape, generator=gen(9))
    expected = torch.sqrt(alpha) * folded + torch.sqrt(1 - alpha) * eps
    assert torch.equal(out, latents.unfold_frames(expected, 1))


# -- motion ----------------------------------------------------------------------------------------------------

def test_reference_warp_matches_diffusers_exactly():
    from diffusers.pipelines.deprecated.text_to_video_synthesis.pipeline_text_to_video_zero import (
        create_motion_field_and_warp_latents,
    )

    x = torch.randn(4, 4, 8, 12, generator=gen(3))  # (N, C, h, w), non-square
    for sx, sy in ((12, 12), (40, -24), (0, 0), (7.5, 100)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = create_motion_field_and_warp_latents(sx, sy, [1, 2, 3, 4], x)
        assert torch.equal(motion.warp_translation(x, [1, 2, 3, 4], sx, sy, "reference"), expected)


def _blob(h: int = 16, w: int = 16) -> torch.Tensor:
    x = torch.zeros(1, 1, h, w)
    x[0, 0, 6:9, 6:9] = 1.0
    return x


def _centre(x: torch.Tensor) -> tuple[float, float]:
    m = x[0, 0]
    ys, xs = torch.meshgrid(torch.arange(m.shape[0]), torch.arange(m.shape[1]), indexing="ij")
    return float((m * xs).sum() / m.sum()), float((m * ys).sum() / m.sum())


@pytest.mark.parametrize("mode, strength", [("reference", 64.0), ("resolution_aware", 2.0)])
def test_positive_strength_moves_content_left_and_up(mode, strength):
    x = _blob()
    cx, cy = _centre(x)
    moved = motion.warp_translation(x, [1], strength, 0.0, mode)
    assert _centre(moved)[0] == pytest.approx(cx - 2.0) and _centre(moved)[1] == pytest.approx(cy)
    moved = motion.warp_translation(x, [1], 0.0, strength, mode)
    assert _centre(moved)[1] == pytest.approx(cy - 2.0) and _centre(moved)[0] == pytest.approx(cx)


def test_resolution_aware_is_sub_pixel_and_scales_with_frame_id():
    x = _blob()
    cx, _ = _centre(x)
    half = motion.warp_translation(x, [1], 0.5, 0.0, "resolution_aware")
    assert _centre(half)[0] == pytest.approx(cx - 0.5, abs=1e-5)
    three = motion.warp_translation(torch.cat([x, x]), [1, 3], 1.0, 0.0, "resolution_aware")
    assert _centre(three[1:])[0] == pytest.approx(cx - 3.0, abs=1e-5)
    assert torch.allclose(motion.warp_translation(x, [0], 5.0, 5.0, "resolution_aware"), x, atol=1e-6)


def test_reference_mode_moves_whole_latent_pixels_only():
    x = torch.randn(1, 4, 8, 8, generator=gen(0))
    out = motion.warp_translation(x, [1], 30.0, 0.0, "reference")  # 30/512 of 8 px: under half a latent pixel
    assert torch.equal(out, x)


# -- attention -------------------------------------------------------------------------------------------------

def _attention_module(dim: int = 16, heads: int = 2):
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(0)
    return Attention(query_dim=dim, heads=heads, dim_head=dim // heads).eval()


def _naive_attention(attn, q_in, kv_in):
    """Softmax attention written out: q from q_in (T, C), keys/values from kv_in (S, C)."""
    heads = attn.heads
    q, k, v = attn.to_q(q_in), attn.to_k(kv_in), attn.to_v(kv_in)
    d = q.shape[-1] // heads
    q = q.view(-1, heads, d).transpose(0, 1)
    k = k.view(-1, heads, d).transpose(0, 1)
    v = v.view(-1, heads, d).transpose(0, 1)
    w = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d), dim=-1)
    out = (w @ v).transpose(0, 1).reshape(q_in.shape[0], -1)
    return attn.to_out[0](out)


def test_first_frame_mode_equals_diffusers_cross_frame_processor_bit_for_bit():
    from diffusers.pipelines.deprecated.text_to_video_synthesis.pipeline_text_to_video_zero import (
        CrossFrameAttnProcessor2_0,
    )

    attn = _attention_module()
    h = torch.randn(2 * 3, 10, 16, generator=gen(1))  # (cfg 2 x F 3, tokens, C)
    with torch.no_grad():
        ours = attention.CrossFrameAttnProcessor("first_frame", 2)(attn, h)
        theirs = CrossFrameAttnProcessor2_0(batch_size=2)(attn, h)
        text = torch.randn(6, 5, 16, generator=gen(2))
        assert torch.equal(attention.CrossFrameAttnProcessor("first_frame", 2)(attn, h, text),
                           CrossFrameAttnProcessor2_0(batch_size=2)(attn, h, text))
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("mode", ["first_frame", "sparse_causal", "full"])
@pytest.mark.parametrize("chunks", [1, 2, 3])
def test_cross_frame_modes_match_a_naive_implementation(mode, chunks):
    attn = _attention_module()
    frames, tokens = 4, 6
    h = torch.randn(chunks * frames, tokens, 16, generator=gen(3))
    with torch.no_grad():
        ours = attention.CrossFrameAttnProcessor(mode, chunks)(attn, h)
        for c in range(chunks):
            clip = h[c * frames:(c + 1) * frames]
            for i in range(frames):
                if mode == "first_frame":
                    kv = clip[0]
                elif mode == "sparse_causal":
                    kv = torch.cat([clip[0], clip[max(i - 1, 0)]])
                else:
                    kv = clip.reshape(-1, 16)
                expected = _naive_attention(attn, clip[i], kv)
                torch.testing.assert_close(ours[c * frames + i], expected, atol=1e-5, rtol=1e-5)


def test_patch_leaves_temporal_attention_of_a_3d_unet_alone():
    from diffusers.models.attention_processor import AttnProcessor2_0

    unet = video_fixtures.build_components("3d")["unet"]
    current = unet.attn_processors
    wanted = attention.CrossFrameAttention("first_frame").processors(unet, current, 2)
    patched = {n for n, p in wanted.items() if isinstance(p, attention.CrossFrameAttnProcessor)}
    assert patched and all(".attentions." in n for n in patched)
    assert all(isinstance(wanted[n], AttnProcessor2_0) for n in wanted if "temp_attentions" in n or
               n.startswith("transformer_in"))
    assert all(isinstance(p, AttnProcessor2_0) for p in unet.attn_processors.values()), "module must be untouched"


@pytest.mark.parametrize("batch_chunks", [1, 2, 4])
def test_patched_tells_the_patch_each_calls_batch_chunks_and_restores(batch_chunks):
    from diffusers.models.attention_processor import AttnProcessor2_0

    from vdgraph_video.values import UNetHandle

    unet = video_fixtures.build_components("2d")["unet"]
    handle = UNetHandle(unet).with_patch(attention.CrossFrameAttention("first_frame"))
    with handle.patched(batch_chunks=batch_chunks) as module:
        installed = {p for p in module.attn_processors.values() if isinstance(p, attention.CrossFrameAttnProcessor)}
        assert installed and {p.batch_chunks for p in installed} == {batch_chunks}
    assert all(isinstance(p, AttnProcessor2_0) for p in unet.attn_processors.values())


# -- smoothing -------------------------------------------------------------------------------------------------

def test_smoothing_keeps_constants_and_averages_windows():
    const = torch.full((5, 2, 2, 3), 0.3)
    for mode in ("window", "gaussian"):
        torch.testing.assert_close(smooth.smooth_over_time(const, 0, mode, 2, 1.0), const)
    ramp = torch.arange(5, dtype=torch.float32).view(5, 1, 1, 1).expand(5, 2, 2, 3)
    out = smooth.smooth_over_time(ramp, 0, "window", 1)
    assert out[2, 0, 0, 0] == pytest.approx(2.0) and out[0, 0, 0, 0] == pytest.approx(0.5)  # edge: mean of 0, 1
    g = smooth.smooth_over_time(ramp, 0, "gaussian", 1, 0.8)
    torch.testing.assert_close(g[1:4], ramp[1:4], atol=1e-5, rtol=0)  # symmetric weights keep a ramp's interior


def test_smoothing_latents_works_along_the_frame_axis():
    x = torch.randn(1, 4, 6, 3, 3, generator=gen(0))
    out = smooth.smooth_over_time(x, 2, "window", 1)
    torch.testing.assert_close(out[:, :, 3], x[:, :, 2:5].mean(dim=2))


def test_interleave_replaces_odd_or_even_frames_by_the_mean_of_neighbours():
    x = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1) ** 2
    odd = smooth.interleave_interpolate(x, 0, "odd")
    assert odd.flatten().tolist() == [0, 2, 4, 10, 16, 25]  # frame 5 has one neighbour: kept
    even = smooth.interleave_interpolate(x, 0, "even")
    assert even.flatten().tolist() == [0, 1, 5, 9, 17, 25]  # frame 0 kept


def test_replace_x0_equals_the_ddim_update_with_the_new_x0():
    from diffusers import DDIMScheduler

    s = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", set_alpha_to_one=False,
                      steps_offset=1, clip_sample=False)
    s.set_timesteps(10)
    x_t = torch.randn(2, 4, 4, 4, generator=gen(0))
    eps = torch.randn(2, 4, 4, 4, generator=gen(1))
    t = s.timesteps[3]
    out = s.step(eps, t, x_t)
    new_x0 = torch.randn(2, 4, 4, 4, generator=gen(2))
    from vdgraph_video.ops.schedulers import ddim_alpha_prev

    abar_t = s.alphas_cumprod[int(t)]
    eps_implied = (x_t - abar_t.sqrt() * out.pred_original_sample) / (1 - abar_t).sqrt()
    a_prev = ddim_alpha_prev(s, 3)
    expected = a_prev.sqrt() * new_x0 + (1 - a_prev).sqrt() * eps_implied
    got = smooth.replace_ddim_x0(out.prev_sample, out.pred_original_sample, new_x0, a_prev)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_free_init_fresh_noise_is_drawn_with_the_first_noises_share():
    """FreeInit's later passes start from fresh noise; with mixed starting noise (video.noise's shared) the fresh
    noise is mixed the same way, and shared 0 is diffusers' independent draw."""
    from diffusers import DDIMScheduler

    from vdgraph_video.ops import free_init

    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    clean, first = torch.randn(1, 4, 6, 8, 8, generator=gen(1)), torch.randn(1, 4, 6, 8, 8, generator=gen(2))
    args = ("butterworth", 4, 0.25, 0.25)
    shape, cpu = tuple(clean.shape), torch.device("cpu")
    low_pass = free_init.low_pass_filter(shape, *args, cpu)
    z_t = scheduler.add_noise(clean, first, torch.tensor([999]))
    for shared in (0.0, 0.7, 1.0):
        got = free_init.reinitialize(clean, first, scheduler, gen(3), *args, shared=shared)
        fresh = noise.sample_noise(shape, "independent", gen(3), cpu, torch.float32, shared=shared)
        assert torch.equal(got, free_init.mix_frequencies(z_t, fresh, low_pass))
    assert torch.equal(noise.sample_noise(shape, "independent", gen(3), cpu, torch.float32),
                       torch.randn(shape, generator=gen(3)))  # shared 0: diffusers' randn_tensor draw
