"""The video pack's nodes called directly through a RunContext, on the tiny saved models."""

from __future__ import annotations

import json
import os

import fsspec
import pytest
import torch
import video_fixtures

import vdgraph_video
from vdgraph.context import CancelToken, RunContext
from vdgraph.errors import Cancelled, VdgraphError
from vdgraph.events import Progress
from vdgraph_video import loading
from vdgraph_video.ops.attention import CrossFrameAttnProcessor
from vdgraph_video.values import Conditioning

one_thread = pytest.fixture(autouse=True)(video_fixtures.single_thread)


def call(cls, ctx=None, **inputs):
    """Run a node the way the executor would: defaults filled in, outputs normalised to a dict."""
    ctx = ctx or RunContext(node_id=cls.id, node_type=cls.id, device=torch.device("cpu"), dtype=torch.float32)
    values = {p.name: (p.default if p.has_default else None) for p in cls.inputs}
    values.update(inputs)
    return cls.normalise_outputs(cls().run(ctx, **values))


@pytest.fixture(scope="module")
def model() -> dict:
    return call(vdgraph_video.LoadModel, model=video_fixtures.tiny_model_folder("2d"))


@pytest.fixture(scope="module")
def conditioning(model):
    return call(vdgraph_video.EncodeText, text_encoder=model["text_encoder"], prompt="a red cat")["conditioning"]


def scheduler(model, kind="ddim", steps=6):
    return call(vdgraph_video.MakeScheduler, scheduler_config=model["scheduler_config"], kind=kind,
                steps=steps)["scheduler"]


def noise(model, frames=3, mode="independent", seed=0, sched=None):
    return call(vdgraph_video.SampleNoise, unet=model["unet"], vae=model["vae"], seed=seed, frames=frames, height=32,
                width=32, mode=mode, scheduler=sched)


def test_every_node_declares_documented_ports():
    ids = [cls.id for cls in vdgraph_video.NODES]
    assert len(ids) == len(set(ids)) and all(i.startswith("video.") for i in ids)
    for cls in vdgraph_video.NODES:
        assert cls.description, cls.id
        assert all(p.doc for p in cls.inputs), f"{cls.id} has an undocumented input"
        assert all(p.doc for p in cls.outputs), f"{cls.id} has an undocumented output"


# -- model loading -----------------------------------------------------------------------------------------------

def test_loader_gives_eval_modules_in_the_run_dtype_flagged_as_diffusers_loads_them(model):
    unet = model["unet"]
    assert not unet.is_3d and unet.in_channels == 4 and unet.patches == ()
    for module in (unet.module, model["vae"].module, model["text_encoder"].module):
        assert not module.training
        assert all(p.dtype == torch.float32 for p in module.parameters())
        # requires_grad as diffusers' from_pretrained leaves it: PyTorch picks matmul kernels by the flag, so
        # clearing it changed the rounding against the reference (tests/test_video_parity.py); no autograd graph
        # is built because the ops run the modules under torch.no_grad (the test below).
        assert all(p.requires_grad for p in module.parameters())
    assert model["scheduler_config"].class_name == "DDIMScheduler"
    assert model["text_encoder"].max_length == 77
    assert model["vae"].scale_factor == 2
    assert model["unet"].__vdgraph_nbytes__() > 0


def test_loader_picks_the_3d_unet_from_its_config():
    out = call(vdgraph_video.LoadModel, model=video_fixtures.tiny_model_folder("3d"))
    assert out["unet"].is_3d


def test_loader_reads_an_fsspec_url_through_a_temporary_copy():
    fs = fsspec.filesystem("memory")
    fs.put(video_fixtures.tiny_model_folder("2d") + "/", "/tiny-model/", recursive=True)
    try:
        out = call(vdgraph_video.LoadModel, model="memory://tiny-model")
        assert out["unet"].in_channels == 4
    finally:
        fs.rm("/tiny-model", recursive=True)


def test_loader_resolves_relative_paths_against_the_workflow_folder():
    folder = video_fixtures.tiny_model_folder("2d")
    ctx = RunContext(node_id="m", node_type="video.load_model", device=torch.device("cpu"), dtype=torch.float32,
                     workflow_dir=os.path.dirname(folder))
    assert call(vdgraph_video.LoadModel, ctx, model=os.path.basename(folder))["unet"].in_channels == 4


def test_loader_finds_builtin_models_through_entry_points(monkeypatch):
    folder = video_fixtures.tiny_model_folder("2d")

    class Entry:
        def load(self):
            return lambda: folder

    monkeypatch.setattr(loading, "builtin_models", lambda: {"tiny-test": Entry()})
    with loading.resolve_model("tiny-test") as found:
        assert found == folder


def test_loader_explains_an_uncached_hub_model_when_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(loading.ModelNotFound, match=r"not in the local Hugging Face cache.*hf download"):
        call(vdgraph_video.LoadModel, model="nobody/no-such-model")


def test_loader_rejects_unknown_names_and_incomplete_folders(tmp_path):
    with pytest.raises(loading.ModelNotFound, match="not a local folder, not a URL, not a built-in name"):
        call(vdgraph_video.LoadModel, model="no such model")
    (tmp_path / "unet").mkdir()
    with pytest.raises(loading.ModelNotFound, match="missing vae/, text_encoder/, tokenizer/, scheduler/"):
        call(vdgraph_video.LoadModel, model=str(tmp_path))


def test_loader_reads_a_weights_variant(tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(video_fixtures.tiny_model_folder("2d"), folder)
    for f in list(folder.glob("*/*.safetensors")):
        f.rename(f.with_name(f.name.replace(".safetensors", ".fp16.safetensors")))
    out = call(vdgraph_video.LoadModel, model=str(folder), variant="fp16")
    assert out["unet"].in_channels == 4


def test_loader_only_reads_safetensors(tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(video_fixtures.tiny_model_folder("2d"), folder)
    for f in (folder / "vae").glob("*.safetensors"):
        f.unlink()
    torch.save({}, folder / "vae" / "diffusion_pytorch_model.bin")
    with pytest.raises(Exception, match="safetensors"):
        call(vdgraph_video.LoadModel, model=str(folder))


# -- text --------------------------------------------------------------------------------------------------------

def test_text_encoder_matches_diffusers_encode_prompt(model, conditioning):
    pipe = video_fixtures.reference_pipeline("2d")
    cond, uncond = pipe.encode_prompt(["a red cat"], torch.device("cpu"), 1, True, None)
    assert torch.equal(conditioning.cond, cond) and torch.equal(conditioning.uncond, uncond)
    assert conditioning.cond.shape == (1, 77, video_fixtures.TEXT_WIDTH)


def test_text_encoder_rejects_long_prompts_unless_asked_to_truncate(model):
    long_prompt = " ".join(["cat"] * 100)
    with pytest.raises(ValueError, match=r"prompt is \d+ tokens long but the text encoder takes 77"):
        call(vdgraph_video.EncodeText, text_encoder=model["text_encoder"], prompt=long_prompt)
    out = call(vdgraph_video.EncodeText, text_encoder=model["text_encoder"], prompt=long_prompt, truncate=True)
    assert out["conditioning"].cond.shape[1] == 77


# -- schedulers and noise ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, cls", [("model", "DDIMScheduler"), ("ddim", "DDIMScheduler"),
                                       ("ddpm", "DDPMScheduler"), ("euler", "EulerDiscreteScheduler"),
                                       ("euler_ancestral", "EulerAncestralDiscreteScheduler"),
                                       ("dpmsolver++", "DPMSolverMultistepScheduler")])
def test_scheduler_kinds_build_from_the_model_config(model, kind, cls):
    s = scheduler(model, kind, steps=7)
    assert type(s).__name__ == cls and len(s.timesteps) == 7
    assert s.config.beta_schedule == "scaled_linear"


def test_text2video_zero_steps_are_negative_indices():
    assert call(vdgraph_video.Text2VideoZeroSteps, t0=44, t1=47) == {"t1_index": -48, "t0_index": -45}
    with pytest.raises(ValueError, match="t0 .* must be smaller than t1"):
        call(vdgraph_video.Text2VideoZeroSteps, t0=5, t1=5)


def test_noise_node_seeds_a_cpu_generator_and_continues_from_rng(model):
    first = noise(model, frames=2, seed=7)
    assert first["latents"].shape == (1, 4, 2, 16, 16)
    g = torch.Generator().manual_seed(7)
    assert torch.equal(first["latents"], torch.randn((1, 4, 2, 16, 16), generator=g))
    second = call(vdgraph_video.SampleNoise, unet=model["unet"], vae=model["vae"], rng=first["rng"], frames=2,
                  height=32, width=32)
    assert torch.equal(second["latents"], torch.randn((1, 4, 2, 16, 16), generator=g))


def test_noise_node_scales_by_init_noise_sigma_and_checks_sizes(model):
    euler = scheduler(model, "euler")
    scaled = noise(model, sched=euler)["latents"]
    torch.testing.assert_close(scaled, noise(model)["latents"] * euler.init_noise_sigma)
    with pytest.raises(ValueError, match="height 33 is not a multiple of the VAE factor 2"):
        call(vdgraph_video.SampleNoise, unet=model["unet"], vae=model["vae"], height=33, width=32)


# -- denoise -----------------------------------------------------------------------------------------------------

def denoise(model, conditioning, sched, latents, **kw):
    return call(vdgraph_video.Denoise, unet=kw.pop("unet", model["unet"]), scheduler=sched,
                conditioning=conditioning, latents=latents, **kw)


def test_denoise_step_ranges_compose_and_leave_the_scheduler_input_alone(model, conditioning):
    s = scheduler(model, "dpmsolver++", steps=6)
    n = noise(model, frames=2)
    whole = denoise(model, conditioning, s, n["latents"])
    first = denoise(model, conditioning, s, n["latents"], end=-3)
    rest = denoise(model, conditioning, first["scheduler"], first["latents"], start=-3)
    torch.testing.assert_close(rest["latents"], whole["latents"], atol=1e-6, rtol=0)
    assert s.step_index is None, "the input scheduler must not be advanced"
    assert whole["x0"] is not None and whole["x0"].shape == whole["latents"].shape
    assert whole["rng"] is None


@pytest.mark.parametrize("kind", ["ddpm", "euler_ancestral"])
def test_stochastic_samplers_need_an_rng(model, conditioning, kind):
    s = scheduler(model, kind, steps=3)
    n = noise(model, frames=2, sched=s)
    with pytest.raises(VdgraphError, match="link an rng"):
        denoise(model, conditioning, s, n["latents"])
    a = denoise(model, conditioning, s, n["latents"], rng=n["rng"])
    b = denoise(model, conditioning, s, n["latents"], rng=n["rng"])
    assert torch.equal(a["latents"], b["latents"]) and not torch.equal(a["rng"], n["rng"])


def test_eta_without_rng_is_rejected_before_any_work(model, conditioning):
    with pytest.raises(ValueError, match="eta 0.5 > 0 draws random numbers"):
        denoise(model, conditioning, scheduler(model), noise(model)["latents"], eta=0.5)


def test_denoise_rejects_bad_ranges(model, conditioning):
    s = scheduler(model, steps=6)
    with pytest.raises(IndexError, match="start -8 is out of range for 6 steps"):
        denoise(model, conditioning, s, noise(model)["latents"], start=-8)
    with pytest.raises(ValueError, match="comes before start"):
        denoise(model, conditioning, s, noise(model)["latents"], start=4, end=2)


def test_chunked_denoise_equals_unchunked(model, conditioning):
    unet = call(vdgraph_video.CrossFrameAttentionNode, unet=model["unet"])["unet"]
    s = scheduler(model, steps=4)
    n = noise(model, frames=6)
    whole = denoise(model, conditioning, s, n["latents"], unet=unet, eta=0.3, rng=n["rng"])
    for chunk in (2, 3, 4):
        part = denoise(model, conditioning, s, n["latents"], unet=unet, eta=0.3, rng=n["rng"], chunk_size=chunk)
        torch.testing.assert_close(part["latents"], whole["latents"], atol=1e-6, rtol=0)
        assert torch.equal(part["rng"], whole["rng"])


def test_chunked_denoise_needs_a_2d_unet():
    model3 = call(vdgraph_video.LoadModel, model=video_fixtures.tiny_model_folder("3d"))
    cond = call(vdgraph_video.EncodeText, text_encoder=model3["text_encoder"], prompt="x")["conditioning"]
    with pytest.raises(ValueError, match="chunked denoising needs a 2-D UNet"):
        denoise(model3, cond, scheduler(model3, steps=2), noise(model3, frames=3)["latents"], chunk_size=2)


def test_denoise_reports_progress_and_honours_cancellation(model, conditioning):
    events, token = [], CancelToken()

    def emit(event):
        events.append(event)
        if isinstance(event, Progress) and event.step == 2:
            token.cancel()

    ctx = RunContext(node_id="d", node_type="video.denoise", device=torch.device("cpu"), dtype=torch.float32,
                     emit=emit, cancel_token=token)
    unet = call(vdgraph_video.CrossFrameAttentionNode, unet=model["unet"])["unet"]
    with pytest.raises(Cancelled):
        call(vdgraph_video.Denoise, ctx, unet=unet, scheduler=scheduler(model, steps=6), conditioning=conditioning,
             latents=noise(model)["latents"])
    assert [(e.step, e.total) for e in events] == [(0, 6), (1, 6), (2, 6)]
    assert {type(p) for p in model["unet"].module.attn_processors.values()} != {CrossFrameAttnProcessor}
    assert not any(isinstance(p, CrossFrameAttnProcessor) for p in model["unet"].module.attn_processors.values())


def test_denoise_restores_attention_when_the_unet_raises(model):
    unet = call(vdgraph_video.CrossFrameAttentionNode, unet=model["unet"], mode="full")["unet"]
    bad = Conditioning(cond=torch.zeros(1, 77, 5), uncond=torch.zeros(1, 77, 5))
    with pytest.raises(RuntimeError):
        denoise(model, bad, scheduler(model), noise(model)["latents"], unet=unet)
    assert not any(isinstance(p, CrossFrameAttnProcessor) for p in model["unet"].module.attn_processors.values())


def test_cross_frame_patch_returns_a_new_handle(model):
    patched = call(vdgraph_video.CrossFrameAttentionNode, unet=model["unet"], mode="sparse_causal")
    unet = patched["unet"]
    assert unet is not model["unet"] and unet.module is model["unet"].module
    assert model["unet"].patches == () and len(unet.patches) == 1
    assert unet.patches[0].mode == "sparse_causal"


def test_nodes_that_run_models_build_no_autograd_graph(model, conditioning):
    """The loaded parameters require grad (as diffusers leaves them); every model call runs under no_grad."""
    assert conditioning.cond.grad_fn is None and not conditioning.cond.requires_grad
    out = denoise(model, conditioning, scheduler(model, steps=2), noise(model, frames=2)["latents"])
    assert not out["latents"].requires_grad and not out["x0"].requires_grad
    frames = call(vdgraph_video.DecodeLatents, vae=model["vae"], latents=out["latents"])["frames"]
    assert not frames.requires_grad
    back = call(vdgraph_video.EncodeFrames, vae=model["vae"], frames=frames)["latents"]
    assert not back.requires_grad


def test_cross_frame_node_has_no_batch_layout_input():
    """The batch layout of a UNet call is the denoise loop's to know (guidance on or off), not a workflow's."""
    assert [p.name for p in vdgraph_video.CrossFrameAttentionNode.inputs] == ["unet", "mode"]


@pytest.mark.parametrize("guidance", [1.0, 0.5, 7.5])
def test_first_frame_attention_anchors_every_frame_to_frame_0_with_guidance_on_or_off(model, conditioning,
                                                                                      guidance):
    """With first-frame attention and a per-frame 2-D UNet, frame 3 of a clip depends on frames 0 and 3 only, so
    denoising frames [0, 1, 2, 3] or [0, 3] gives the same frame 3, whatever the guidance. (Before the loop told
    the patch the batch layout, an unguided 4-frame call was split as two 2-frame clips: frame 3 looked at 2.)"""
    unet = call(vdgraph_video.CrossFrameAttentionNode, unet=model["unet"])["unet"]
    s = scheduler(model, steps=3)
    latents = noise(model, frames=4)["latents"]
    whole = denoise(model, conditioning, s, latents, unet=unet, guidance=guidance)["latents"]
    pair = denoise(model, conditioning, s, latents[:, :, [0, 3]], unet=unet, guidance=guidance)["latents"]
    torch.testing.assert_close(pair, whole[:, :, [0, 3]], atol=1e-4, rtol=0)  # batch 2 vs 4 rounds differently


@pytest.mark.parametrize("guidance", [1.0, 7.5])
def test_cross_frame_attention_keeps_the_videos_of_a_batch_apart(model, conditioning, guidance):
    """Latents of batch 2: each video attends to its own frame 0, so it comes out as if denoised alone."""
    unet = call(vdgraph_video.CrossFrameAttentionNode, unet=model["unet"])["unet"]
    s = scheduler(model, steps=3)
    latents = call(vdgraph_video.SampleNoise, unet=model["unet"], vae=model["vae"], frames=3, height=32, width=32,
                   batch=2)["latents"]
    both = denoise(model, conditioning, s, latents, unet=unet, guidance=guidance)["latents"]
    for item in range(2):
        alone = denoise(model, conditioning, s, latents[item:item + 1], unet=unet, guidance=guidance)["latents"]
        torch.testing.assert_close(both[item:item + 1], alone, atol=1e-4, rtol=0)  # up to batch rounding


# -- re-noise, motion, frames --------------------------------------------------------------------------------

def test_renoise_modes_and_direction(model):
    s = scheduler(model, steps=10)
    n = noise(model, frames=2)
    ref = call(vdgraph_video.Renoise, latents=n["latents"], scheduler=s, from_step=-3, to_step=-6, rng=n["rng"])
    exact = call(vdgraph_video.Renoise, latents=n["latents"], scheduler=s, from_step=-3, to_step=-6, rng=n["rng"],
                 alpha_mode="exact")
    assert not torch.equal(ref["latents"], exact["latents"])
    assert torch.equal(ref["rng"], exact["rng"])
    with pytest.raises(ValueError, match="the target must be noisier"):
        call(vdgraph_video.Renoise, latents=n["latents"], scheduler=s, from_step=-6, to_step=-3, rng=n["rng"])


def test_warp_copies_one_frame_to_every_frame_id():
    flow = call(vdgraph_video.TranslationFlowNode, frames=4, motion_x=1.0, motion_y=0.0,
                mode="resolution_aware")["flow"]
    assert flow.frame_ids == (1, 2, 3)
    x = torch.randn(1, 4, 1, 8, 8)
    out = call(vdgraph_video.WarpLatents, latents=x, flow=flow)["latents"]
    assert out.shape == (1, 4, 3, 8, 8)
    torch.testing.assert_close(out[0, :, 1, :, 2:6], x[0, :, 0, :, 4:8])  # frame id 2: 2 latent px to the left
    with pytest.raises(ValueError, match="latents have 2 frames but the flow has 3"):
        call(vdgraph_video.WarpLatents, latents=torch.zeros(1, 4, 2, 8, 8), flow=flow)


def test_concat_and_select_latent_frames():
    a, b = torch.zeros(1, 4, 1, 2, 2), torch.ones(1, 4, 3, 2, 2)
    joined = call(vdgraph_video.ConcatLatents, first=a, second=b)["latents"]
    assert joined.shape == (1, 4, 4, 2, 2) and joined[:, :, 0].sum() == 0
    picked = call(vdgraph_video.SelectLatentFrames, latents=joined, start=1, step=2)["latents"]
    assert picked.shape == (1, 4, 2, 2, 2)
    with pytest.raises(ValueError, match="select nothing"):
        call(vdgraph_video.SelectLatentFrames, latents=joined, start=5)


# -- VAE and smoothing -------------------------------------------------------------------------------------------

def test_decode_matches_the_reference_and_encode_inverts_shapes(model):
    pipe = video_fixtures.reference_pipeline("2d")
    latents = torch.randn(1, 4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    frames = call(vdgraph_video.DecodeLatents, vae=model["vae"], latents=latents, chunk_size=0)["frames"]
    with torch.no_grad():
        expected = torch.from_numpy(pipe.decode_latents(latents[0].permute(1, 0, 2, 3)))
    assert torch.equal(frames, expected)
    chunked = call(vdgraph_video.DecodeLatents, vae=model["vae"], latents=latents, chunk_size=1)["frames"]
    torch.testing.assert_close(chunked, frames, atol=1e-6, rtol=0)
    encoded = call(vdgraph_video.EncodeFrames, vae=model["vae"], frames=frames)
    assert encoded["latents"].shape == (1, 4, 3, 16, 16) and encoded["rng"] is None
    with pytest.raises(ValueError, match="link an rng"):
        call(vdgraph_video.EncodeFrames, vae=model["vae"], frames=frames, sample=True)


def test_controlvideo_smoother_chain_runs_on_a_denoise_step(model, conditioning):
    """denoise (x0) -> decode -> interleave -> encode -> replace_x0: the smoother as composable parts."""
    s = scheduler(model, steps=6)
    n = noise(model, frames=5)
    step = denoise(model, conditioning, s, n["latents"], end=3)
    frames = call(vdgraph_video.DecodeLatents, vae=model["vae"], latents=step["x0"])["frames"]
    smoothed = call(vdgraph_video.InterleaveFrames, frames=frames, parity="odd")["frames"]
    assert torch.equal(smoothed[0], frames[0]) and not torch.equal(smoothed[1], frames[1])
    new_x0 = call(vdgraph_video.EncodeFrames, vae=model["vae"], frames=smoothed)["latents"]
    out = call(vdgraph_video.ReplaceX0, latents=step["latents"], x0=step["x0"], new_x0=new_x0, scheduler=s, step=2)
    assert out["latents"].shape == step["latents"].shape
    with pytest.raises(ValueError, match="follows the DDIM update"):
        call(vdgraph_video.ReplaceX0, latents=step["latents"], x0=step["x0"], new_x0=new_x0,
             scheduler=scheduler(model, "euler"), step=2)
    assert call(vdgraph_video.SmoothFrames, frames=frames)["frames"].shape == frames.shape
    assert call(vdgraph_video.SmoothLatents, latents=step["latents"], mode="window")["latents"].shape == (
        1, 4, 5, 16, 16)


def test_tiny_folder_is_a_diffusers_pipeline_folder():
    with open(os.path.join(video_fixtures.tiny_model_folder("2d"), "model_index.json")) as f:
        assert json.load(f)["unet"] == ["diffusers", "UNet2DConditionModel"]
