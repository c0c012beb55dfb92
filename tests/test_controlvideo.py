"""ControlVideo: the interleaved smoother as a step hook, the workflows, and their validation problems.

The smoother hook must be bit for bit the node chain it replaces (video.denoise to the step, video.decode of its
x0, video.interleave_frames, video.encode sampling with the denoise rng, video.replace_x0, video.denoise from the
next step), at every smoother step, with both interpolators and both re-encodings.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import video_fixtures

import vdgraph

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"
SHAPES = str(ROOT / "nodes" / "vdgraph_shapes" / "model")

one_thread = pytest.fixture(autouse=True)(video_fixtures.single_thread)



# -- the smoother hook against the node chain --------------------------------------------------------------------

def _graph(smooth_steps: list[int] | None, steps: int, interpolator: str, sample: bool) -> dict:
    """A text-to-video graph on the tiny model with full cross-frame attention and same-frame noise: with
    `smooth_steps` the smoother hook at those steps, without it the equivalent node chain at steps 2 and 3."""
    nodes = {
        "model": {"type": "video.load_model", "in": {"model": "inputs.model"}},
        "text": {"type": "video.encode_text", "in": {"text_encoder": "model.text_encoder"},
                 "params": {"prompt": "a red cat", "negative_prompt": ""}},
        "scheduler": {"type": "video.scheduler", "in": {"scheduler_config": "model.scheduler_config"},
                      "params": {"kind": "ddim", "steps": steps}},
        "attention": {"type": "video.cross_frame_attention", "in": {"unet": "model.unet"}, "params": {"mode": "full"}},
        "noise": {"type": "video.noise", "in": {"unet": "model.unet", "vae": "model.vae",
                                                 "scheduler": "scheduler.scheduler"},
                  "params": {"seed": 3, "frames": 5, "height": 32, "width": 32, "mode": "same"}},
    }
    common = {"unet": "attention.unet", "conditioning": "text.conditioning"}
    if smooth_steps is not None:
        nodes["smoother"] = {"type": "video.interleaved_smoother",
                             "in": {"vae": "model.vae", "scheduler": "scheduler.scheduler"},
                             "params": {"steps": smooth_steps, "interpolator": interpolator, "sample": sample}}
        nodes["denoise"] = {"type": "video.denoise", "in": {**common, "scheduler": "scheduler.scheduler",
                                                            "latents": "noise.latents", "rng": "noise.rng",
                                                            "smoother": "smoother.smoother"},
                            "params": {"guidance": 7.5}}
        return {"vdgraph": 1, "inputs": {"model": {"type": "str"}}, "nodes": nodes,
                "outputs": {"latents": "denoise.latents"}}
    # the chain: denoise [0, 3) -> smooth step 2 (odd frames) -> denoise [3, 4) -> smooth step 3 (even) -> [4, end)
    previous = {"scheduler": "scheduler.scheduler", "latents": "noise.latents", "rng": "noise.rng"}
    for k, (start, end) in enumerate(((0, 3), (3, 4))):
        nodes[f"denoise{k}"] = {"type": "video.denoise", "in": {**common, **previous},
                                "params": {"start": start, "end": end, "guidance": 7.5}}
        nodes[f"decode{k}"] = {"type": "video.decode", "in": {"vae": "model.vae", "latents": f"denoise{k}.x0"},
                               "params": {"unscale": "reciprocal"}}
        nodes[f"interleave{k}"] = {"type": "video.interleave_frames", "in": {"frames": f"decode{k}.frames"},
                                   "params": {"parity": "odd" if (end - 1) % 2 == 0 else "even",
                                              "interpolator": interpolator}}
        encode_in = {"vae": "model.vae", "frames": f"interleave{k}.frames"}
        if sample:
            encode_in["rng"] = f"denoise{k}.rng"
        nodes[f"encode{k}"] = {"type": "video.encode", "in": encode_in, "params": {"sample": sample}}
        nodes[f"replace{k}"] = {"type": "video.replace_x0",
                                "in": {"latents": f"denoise{k}.latents", "x0": f"denoise{k}.x0",
                                       "new_x0": f"encode{k}.latents", "scheduler": f"denoise{k}.scheduler"},
                                "params": {"step": end - 1}}
        previous = {"scheduler": f"denoise{k}.scheduler", "latents": f"replace{k}.latents",
                    "rng": f"encode{k}.rng" if sample else f"denoise{k}.rng"}
    nodes["denoise"] = {"type": "video.denoise", "in": {**common, **previous}, "params": {"start": 4, "guidance": 7.5}}
    return {"vdgraph": 1, "inputs": {"model": {"type": "str"}}, "nodes": nodes,
            "outputs": {"latents": "denoise.latents"}}


@pytest.mark.parametrize("interpolator, sample", [("mean", True), ("flow", False)])
def test_the_smoother_hook_is_the_node_chain_bit_for_bit(executor, interpolator, sample):
    model = {"model": video_fixtures.tiny_model_folder("2d")}
    hooked = executor.run(_graph([2, 3], 6, interpolator, sample), model)["latents"]
    chained = executor.run(_graph(None, 6, interpolator, sample), model)["latents"]
    assert hooked.shape == (1, 4, 5, 16, 16)
    assert (hooked - chained).abs().max().item() == 0.0
    if (interpolator, sample) == ("mean", True):
        other = executor.run(_graph([], 6, interpolator, sample), model)["latents"]  # default steps: (3, 4) of 6
        assert (hooked - other).abs().max().item() > 0, "the smoother at other steps gives another result"


def test_default_smoother_steps_scale_the_papers_30_and_31_of_50():
    from vdgraph_video.ops.interleaved_smoother import default_smooth_steps, resolve_smooth_steps, smoothing_parity

    assert default_smooth_steps(50) == (30, 31)
    assert default_smooth_steps(20) == (12, 13)
    assert default_smooth_steps(8) == (4, 5)
    assert default_smooth_steps(1) == (0,)
    assert resolve_smooth_steps([], 20) == (12, 13)
    assert resolve_smooth_steps([-1, 3], 20) == (3, 19)
    assert (smoothing_parity(30), smoothing_parity(31)) == ("odd", "even")
    with pytest.raises(IndexError, match="smoother step 20 is outside a schedule of 20 steps"):
        resolve_smooth_steps([20], 20)


# -- the workflows on the built-in model ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def shapes_controlnet(tmp_path_factory) -> str:
    """No built-in ControlNet ships yet: one made from shapes-64's UNet (ControlNetModel.from_unet) stands in."""
    return video_fixtures.save_controlnet_for(SHAPES, str(tmp_path_factory.mktemp("cv") / "controlnet"))


@pytest.fixture(scope="module")
def control_video(tmp_path_factory) -> str:
    return video_fixtures.write_png_frames(str(tmp_path_factory.mktemp("cv") / "control"), 5, 64)


@pytest.mark.parametrize("name", ["controlvideo", "controlvideo_long"])
def test_workflow_validates_cleanly(name):
    assert vdgraph.validate(WORKFLOWS / f"{name}.json") == []
    workflow = vdgraph.load_workflow(WORKFLOWS / f"{name}.json")
    assert workflow.inputs["model"].default == "shapes-64"
    assert workflow.inputs["interpolator"].default == "mean"


@pytest.mark.parametrize("name, extra", [("controlvideo", {"interpolator": "flow"}),
                                         ("controlvideo_long", {"window": 3})])
def test_workflow_runs_on_shapes_64(executor, tmp_path, shapes_controlnet, control_video, name, extra):
    inputs = {"controlnet": shapes_controlnet, "control_video": control_video, "condition": "canny", "frames": 5,
              "steps": 3, "output": f"{name}.gif", **extra}
    result = executor.run(WORKFLOWS / f"{name}.json", inputs, output_dir=str(tmp_path))
    frames = result["frames"]
    assert frames.shape == (5, 64, 64, 3) and frames.dtype == torch.float32
    assert 0.0 <= float(frames.min()) and float(frames.max()) <= 1.0
    assert Path(result["video"]).name == f"{name}.gif" and Path(result["video"]).stat().st_size > 0
    assert Path(result["contact_sheet"]).stat().st_size > 0


# -- bad inputs, found before anything runs -------------------------------------------------------------------

def _problems(name: str, edit=None, **inputs) -> list[tuple[str, str]]:
    data = json.loads((WORKFLOWS / f"{name}.json").read_text())
    if edit is not None:
        edit(data)
    problems = vdgraph.validate(data, {"controlnet": "x", "control_video": "x", **inputs})
    return [(p.node, p.port) for p in problems]


def test_a_smoother_step_outside_the_schedule_is_a_validation_problem():
    assert _problems("controlvideo", steps=20, smooth_steps=[5, 20]) == [("smoother", "steps")]
    assert _problems("controlvideo", steps=20, smooth_steps=[-21]) == [("smoother", "steps")]
    assert _problems("controlvideo_long", steps=20, smooth_steps=[19, -20]) == []


def test_a_non_ddim_scheduler_is_a_validation_problem():
    def euler(data):
        data["nodes"]["scheduler"]["params"]["kind"] = "euler"

    assert _problems("controlvideo", euler) == [("smoother", "scheduler")]
    data = json.loads((WORKFLOWS / "controlvideo.json").read_text())
    euler(data)
    (problem,) = vdgraph.validate(data, {"controlnet": "x", "control_video": "x"})
    assert "the scheduler is EulerDiscreteScheduler" in problem.message and "kind ddim" in problem.hint


def test_smoother_steps_this_denoise_node_never_runs_are_a_validation_problem():
    def stop_early(data):
        data["nodes"]["denoise"]["params"] = {"end": 10}

    assert _problems("controlvideo", stop_early, steps=20) == [("denoise", "smoother")]


def test_a_sampling_smoother_without_an_rng_is_a_validation_problem():
    def unlink_rng(data):
        del data["nodes"]["denoise"]["in"]["rng"]

    assert _problems("controlvideo", unlink_rng) == [("denoise", "rng")]


def test_a_too_small_window_and_chunking_with_a_plan_are_validation_problems():
    assert _problems("controlvideo_long", window=2) == [("hierarchy", "window")]

    def chunked(data):
        data["nodes"]["denoise"]["params"] = {"chunk_size": 4}

    assert _problems("controlvideo_long", chunked) == [("denoise", "chunk_size")]


def test_a_non_ddim_scheduler_is_refused_at_run_time_too(executor):
    from vdgraph_video.ops.interleaved_smoother import InterleavedSmoother
    from vdgraph_video.ops.schedulers import build_scheduler

    scheduler = build_scheduler("DDIMScheduler", {}, "euler", 4, torch.device("cpu"))
    with pytest.raises(ValueError, match="the scheduler is EulerDiscreteScheduler: use kind ddim"):
        InterleavedSmoother(torch.nn.Linear(1, 1), (2,), 4).check_scheduler(scheduler)


def test_the_re_derivation_is_the_references_formula_for_epsilon_ddim():
    """ControlVideo re-derives x_{t-1} = sqrt(abar_prev) x0' + sqrt(1 - abar_prev) noise_pred (DDIM, eta 0, epsilon
    prediction); ours adds sqrt(abar_prev) (x0' - x0) to DDIM's own step, which is the same update where that
    formula holds. Within 1e-6, not 0: the two sum the same terms in a different order (float rounding)."""
    from diffusers import DDIMScheduler

    from vdgraph_video.ops.schedulers import ddim_alpha_prev
    from vdgraph_video.ops.smooth import replace_ddim_x0

    scheduler = DDIMScheduler(prediction_type="epsilon")
    scheduler.set_timesteps(20)
    g = torch.Generator().manual_seed(0)
    z, eps, new_x0 = (torch.randn(6, 4, 8, 8, generator=g) for _ in range(3))
    index = 12
    t = scheduler.timesteps[index]
    out = scheduler.step(eps, t, z)
    alpha_prev = ddim_alpha_prev(scheduler, index)
    ours = replace_ddim_x0(out.prev_sample, out.pred_original_sample, new_x0, alpha_prev)
    reference = alpha_prev ** 0.5 * new_x0 + (1 - alpha_prev) ** 0.5 * eps
    assert (ours - reference).abs().max().item() <= 1e-6
    assert (ours - out.prev_sample).abs().max().item() > 0.1
