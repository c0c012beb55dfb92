"""AnimateDiff's nodes beyond parity: the inflation leaves its input alone, bad input is a validation problem
naming node and port before anything runs, and prompt travel works in every model family."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import video_fixtures

import vdgraph
from vdgraph_video.loading import load_components
from vdgraph_video.motion_adapter import inflate, load_motion_adapter
from vdgraph_video.ops.denoise import denoise
from vdgraph_video.ops.prompt_travel import key_frames, parse_schedule, schedule_problems
from vdgraph_video.ops.schedulers import build_scheduler
from vdgraph_video.values import Conditioning

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("torch_threads")


@pytest.fixture(scope="module")
def model() -> str:
    return video_fixtures.tiny_model_folder("2d")


@pytest.fixture(scope="module")
def short_adapter(tmp_path_factory) -> str:
    """A motion adapter whose window is 8 frames."""
    return video_fixtures.save_motion_adapter_for(str(tmp_path_factory.mktemp("adapter") / "short"), max_frames=8)


def problems(model, adapter, **inputs):
    values = {"model": model, "motion_adapter": adapter, "frames": 8, "height": 32, "width": 32}
    values.update(inputs)
    return [(p.node, p.port, p.message) for p in vdgraph.validate(WORKFLOWS / "animatediff.json", values)
            if p.severity == "error"]


def test_apply_motion_adapter_returns_a_new_model_and_leaves_the_input_unchanged(model):
    unet = load_components(model, CPU, torch.float32)[0]
    adapter = load_motion_adapter(video_fixtures.tiny_motion_adapter_folder(), CPU, torch.float32)
    before = {k: v.clone() for k, v in unet.module.state_dict().items()}
    adapter_before = {k: v.clone() for k, v in adapter.module.state_dict().items()}
    processors = dict(unet.module.attn_processors)
    inflated = inflate(unet, adapter)
    assert type(inflated.module).__name__ == "UNetMotionModel" and inflated.module is not unet.module
    assert type(unet.module).__name__ == "UNet2DConditionModel"
    after = unet.module.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(adapter_before[k], v) for k, v in adapter.module.state_dict().items())
    assert dict(unet.module.attn_processors) == processors
    assert inflated.max_frames == 32 and inflated.windows is None


@pytest.mark.parametrize("blocks, layers, why", [((16, 32, 32), 1, "3 blocks vs 2"),
                                                 ((16, 32), 2, "layers per block [2, 2] vs [1, 1]"),
                                                 ((16, 16), 1, "block_out_channels [16, 16] vs [16, 32]")])
def test_a_motion_adapter_of_another_layout_is_a_problem_before_anything_runs(model, tmp_path, blocks, layers, why):
    adapter = video_fixtures.save_motion_adapter_for(str(tmp_path / "other"), blocks=blocks, layers=layers)
    found = problems(model, adapter)
    assert [(node, port) for node, port, _ in found] == [("inflate", "motion_adapter")]
    assert why in found[0][2]
    with pytest.raises(ValueError, match="port 'motion_adapter': the motion adapter's block layout does not match"):
        inflate(load_components(model, CPU, torch.float32)[0], load_motion_adapter(adapter, CPU, torch.float32))


def test_frames_beyond_the_motion_window_need_context_windows(model, short_adapter):
    found = problems(model, short_adapter, frames=12)
    assert [(node, port) for node, port, _ in found] == [("noise", "frames")]
    assert "12 frames are more than the motion module's window of 8 frames" in found[0][2]
    assert problems(model, short_adapter, frames=12, context_length=8) == []
    assert problems(model, short_adapter, frames=8) == []


def test_context_window_settings_that_cannot_work_are_problems(model, short_adapter):
    too_long = problems(model, short_adapter, frames=12, context_length=10)
    assert ("windows", "context_length") in [(n, p) for n, p, _ in too_long]
    stride = problems(model, short_adapter, frames=12, context_length=4, context_stride=5)
    assert {(n, p) for n, p, _ in stride} == {("windows", "context_stride"), ("free_noise", "context_stride")}
    odd = problems(model, short_adapter, frames=12, context_length=5, context_weighting="delayed_reverse_sawtooth")
    assert [(n, p) for n, p, _ in odd] == [("windows", "context_length")]
    fewer = problems(model, short_adapter, frames=6, context_length=8)
    assert [(n, p) for n, p, _ in fewer] == [("noise", "frames")]


@pytest.mark.parametrize("prompt, port, why", [
    ("0: a red cat | 8: a dog", "prompt", "key frame 8 is outside the video's frames 0 .. 7"),
    ("0: a red cat | 5: a dog | 3: a cat", "prompt", "strictly increasing, but the schedule has 5 then 3"),
    ("2: a red cat | 5: a dog", "prompt", "the first key frame is 2, not 0"),
    ("0: a red cat | a dog", "prompt", "'a dog' is not a 'frame: prompt' entry"),
])
def test_a_bad_prompt_schedule_is_a_problem_before_anything_runs(model, prompt, port, why):
    found = problems(model, video_fixtures.tiny_motion_adapter_folder(), prompt=prompt)
    assert [(node, p) for node, p, _ in found] == [("text", port)]
    assert why in found[0][2]
    negative = problems(model, video_fixtures.tiny_motion_adapter_folder(), negative_prompt=prompt)
    assert [(node, p) for node, p, _ in negative] == [("text", "negative_prompt")]


def test_schedules_parse_and_hold_the_last_prompt_to_the_last_frame():
    assert parse_schedule("0: a red circle | 8: a blue circle") == [(0, "a red circle"), (8, "a blue circle")]
    assert key_frames("0: a | 4: b", 10) == {0: "a", 4: "b", 9: "b"}
    assert key_frames("a plain prompt", 4) == {0: "a plain prompt", 3: "a plain prompt"}
    assert schedule_problems([(0, "a"), (3, "b")], 4) == []


def _denoise_frames(unet, scheduler_config, conditioning, frames, seed=0):
    scheduler = build_scheduler(scheduler_config.class_name, scheduler_config.config, "ddim", 3, CPU)
    latents = torch.randn((1, 4, frames, 16, 16), generator=torch.Generator().manual_seed(seed))
    return denoise(unet, scheduler, conditioning, latents, 7.5, 0, 3).latents


@pytest.mark.parametrize("kind", ["2d", "3d", "motion"])
def test_every_family_takes_per_frame_conditioning(kind):
    """Per-frame embeddings that repeat one prompt give exactly the plain result; different ones change frames."""
    folder = video_fixtures.tiny_model_folder("3d" if kind == "3d" else "2d")
    unet, _, text_encoder, scheduler_config = load_components(folder, CPU, torch.float32)
    if kind == "motion":
        unet = inflate(unet, load_motion_adapter(video_fixtures.tiny_motion_adapter_folder(), CPU, torch.float32))
    cond = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(1))
    uncond = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(2))
    frames = 3
    plain = _denoise_frames(unet, scheduler_config, Conditioning(cond, uncond), frames)
    repeated = Conditioning(cond[:, None].repeat(1, frames, 1, 1), uncond[:, None].repeat(1, frames, 1, 1))
    assert torch.equal(_denoise_frames(unet, scheduler_config, repeated, frames), plain)
    travelling = repeated.cond.clone()
    travelling[:, 2] = torch.randn(77, 32, generator=torch.Generator().manual_seed(3))
    moved = _denoise_frames(unet, scheduler_config, Conditioning(travelling, repeated.uncond), frames)
    changed = (moved - plain).abs().amax(dim=(0, 1, 3, 4))  # per frame
    assert changed[2] > 1e-3
    if kind == "2d":  # frames meet only through attention patches: the others are untouched
        assert changed[0] == 0 and changed[1] == 0


def test_text2video_3d_unet_workflow_travels(tmp_path):
    executor = vdgraph.Executor(device="cpu")
    inputs = {"model": video_fixtures.tiny_model_folder("3d"), "frames": 4, "height": 32, "width": 32, "steps": 3,
              "output": str(tmp_path / "o.gif"), "contact_sheet": str(tmp_path / "s.png")}
    plain = executor.run(WORKFLOWS / "text2video_3d_unet.json", {**inputs, "prompt": "a red cat"},
                         output_dir=str(tmp_path))["frames"]
    travel = executor.run(WORKFLOWS / "text2video_3d_unet.json", {**inputs, "prompt": "0: a red cat | 3: the mat"},
                          output_dir=str(tmp_path))["frames"]
    assert travel.shape == plain.shape and (travel - plain).abs().max() > 1e-3
    bad = vdgraph.validate(WORKFLOWS / "text2video_3d_unet.json", {**inputs, "prompt": "0: a | 4: b"})
    assert [(p.node, p.port) for p in bad if p.severity == "error"] == [("text", "prompt")]
    assert os.path.isfile(tmp_path / "o.gif")


def test_cross_frame_attention_on_a_motion_unet_patches_the_spatial_layers_only(model):
    from vdgraph_video.ops.attention import CrossFrameAttention

    unet = load_components(model, CPU, torch.float32)[0]
    inflated = inflate(unet, load_motion_adapter(video_fixtures.tiny_motion_adapter_folder(), CPU, torch.float32))
    current = dict(inflated.module.attn_processors)
    patched = CrossFrameAttention("first_frame").processors(inflated.module, current, 2)
    changed = {name for name in current if patched[name] is not current[name]}
    assert changed and not any("motion_modules" in name for name in changed)
    assert any(name.startswith("down_blocks.0.attentions") for name in changed)


def test_motion_adapters_load_from_an_fsspec_url_and_a_builtin_name(monkeypatch):
    import fsspec

    from vdgraph_video import loading
    from vdgraph_video.loading import resolve_model

    folder = video_fixtures.tiny_motion_adapter_folder()
    fs = fsspec.filesystem("memory")
    for name in os.listdir(folder):
        fs.pipe(f"/adapters/tiny/{name}", Path(folder, name).read_bytes())
    with resolve_model("memory://adapters/tiny") as local:
        remote = load_motion_adapter(local, CPU, torch.float32)
    monkeypatch.setattr(loading, "_builtin_path", lambda name: folder if name == "tiny-motion" else None)
    with resolve_model("tiny-motion") as local:
        builtin = load_motion_adapter(local, CPU, torch.float32)
    expected = load_motion_adapter(folder, CPU, torch.float32).module.state_dict()
    for adapter in (remote, builtin):
        assert all(torch.equal(v, expected[k]) for k, v in adapter.module.state_dict().items())


def test_a_folder_that_is_not_a_motion_adapter_is_refused(model):
    from vdgraph_video.loading import ModelFolderError

    with pytest.raises(ModelFolderError, match="_class_name 'UNet2DConditionModel' is not supported: expected "
                                               "MotionAdapter"):
        load_motion_adapter(os.path.join(model, "unet"), CPU, torch.float32)


def test_a_text_route_for_other_text_states_is_a_problem_before_anything_runs(model, tmp_path):
    """A route whose text_dim is not the UNet's cross_attention_dim used to load and inflate, then fail in the
    first denoising step inside torch's LayerNorm; now it is a validation problem on the inflating node's port,
    and inflate refuses it naming the port."""
    from diffusers import MotionAdapter

    from vdgraph_video.ops.motion_text import MotionTextRoute

    adapter = video_fixtures.save_motion_adapter_for(str(tmp_path / "routed"))
    width = video_fixtures.TEXT_WIDTH
    MotionTextRoute.for_motion_modules(MotionAdapter.from_pretrained(adapter), width + 8, width=4).save(adapter)
    found = problems(model, adapter)
    assert [(node, port) for node, port, _ in found] == [("inflate", "motion_adapter")]
    assert f"reads text states {width + 8} wide" in found[0][2] and f"are {width} wide" in found[0][2]
    with pytest.raises(ValueError, match="port 'motion_adapter': the motion adapter's text route reads text states"):
        inflate(load_components(model, CPU, torch.float32)[0], load_motion_adapter(adapter, CPU, torch.float32))
    MotionTextRoute.for_motion_modules(MotionAdapter.from_pretrained(adapter), width, width=4).save(adapter)
    assert problems(model, adapter) == []


def test_a_broken_text_route_is_a_problem_on_the_loaders_model_port(model, tmp_path):
    """The route's files were read only when the node ran; validation now asks the loader's own check."""
    import json

    from diffusers import MotionAdapter

    from vdgraph_video.ops.motion_text import TEXT_ROUTE_CONFIG, MotionTextRoute

    adapter = video_fixtures.save_motion_adapter_for(str(tmp_path / "routed"))
    route = MotionTextRoute.for_motion_modules(MotionAdapter.from_pretrained(adapter), video_fixtures.TEXT_WIDTH,
                                               width=4)
    route.save(adapter)
    (Path(adapter) / TEXT_ROUTE_CONFIG).write_text(json.dumps({**route.config(), "width": 10**9}))
    found = problems(model, adapter)
    assert [(node, port) for node, port, _ in found] == [("adapter", "model")]
    assert "text route is broken" in found[0][2] and "the config asks for [1000000000" in found[0][2]


def test_a_text_route_made_for_other_motion_modules_is_a_problem_on_the_loaders_model_port(model, tmp_path):
    """The loader refused it only when it ran; validation now builds both on the meta device and asks the same
    route_mismatch."""
    from vdgraph_video.ops.motion_text import MotionTextRoute

    adapter = video_fixtures.save_motion_adapter_for(str(tmp_path / "routed"))
    MotionTextRoute(video_fixtures.TEXT_WIDTH, 4, {"down_blocks.0.motion_modules.0": 16}).save(adapter)
    found = problems(model, adapter)
    assert [(node, port) for node, port, _ in found] == [("adapter", "model")]
    assert "belongs to another motion adapter" in found[0][2] and "no route for" in found[0][2]


def test_a_text_route_naming_no_motion_module_is_a_problem_not_a_crash_of_validation(model, tmp_path):
    """channels {"forward": 16} made torch's ModuleDict raise KeyError inside video.load_motion_adapter.check."""
    import json

    from vdgraph_video.ops.motion_text import TEXT_ROUTE_CONFIG, MotionTextRoute

    adapter = video_fixtures.save_motion_adapter_for(str(tmp_path / "routed"))
    route = MotionTextRoute(video_fixtures.TEXT_WIDTH, 4, {"down_blocks.0.motion_modules.0": 16})
    route.save(adapter)
    (Path(adapter) / TEXT_ROUTE_CONFIG).write_text(json.dumps({**route.config(), "channels": {"forward": 16}}))
    found = problems(model, adapter)
    assert [(node, port) for node, port, _ in found] == [("adapter", "model")]
    assert "channels names 'forward', not a motion module's path" in found[0][2]
