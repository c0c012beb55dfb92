"""The shipped video workflows: clean validation, cache behaviour, bounded UNet batches for long videos."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import video_fixtures

import vdgraph

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
SHIPPED = ["text2video_zero", "text2video_zero_long", "text2video_3d_unet", "animatediff"]

one_thread = pytest.fixture(autouse=True)(video_fixtures.single_thread)



def small_inputs(tmp_path, **extra):
    inputs = {"model": video_fixtures.tiny_model_folder("2d"), "prompt": "a red cat", "frames": 3, "height": 32,
              "width": 32, "steps": 6, "t0": 1, "t1": 3, "output": str(tmp_path / "clip.mp4"),
              "contact_sheet": str(tmp_path / "sheet.png")}
    inputs.update(extra)
    return inputs


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_workflow_validates_cleanly(name):
    assert vdgraph.validate(WORKFLOWS / f"{name}.json") == []


def test_zero_workflows_default_to_the_builtin_shapes_model():
    for name in ("text2video_zero", "text2video_zero_long"):
        workflow = vdgraph.load_workflow(WORKFLOWS / f"{name}.json")
        assert workflow.inputs["model"].default == "shapes-64"
        assert workflow.inputs["motion_mode"].default == "resolution_aware"
        assert (workflow.inputs["height"].default, workflow.inputs["steps"].default) == (64, 20)
        assert (workflow.inputs["t0"].default, workflow.inputs["t1"].default) == (8, 10)


def test_bad_inputs_are_reported_before_anything_runs(executor, tmp_path):
    with pytest.raises(vdgraph.WorkflowInvalid) as info:
        executor.run(WORKFLOWS / "text2video_zero.json", small_inputs(tmp_path, motion_mode="sideways", frames=1))
    ports = sorted(p.port for p in info.value.problems)
    assert ports == ["frames", "motion_mode"]


def test_changing_only_fps_reruns_only_the_writer(executor, tmp_path):
    first = executor.run(WORKFLOWS / "text2video_zero.json", small_inputs(tmp_path, fps=8.0), output_dir=str(tmp_path))
    again = executor.run(WORKFLOWS / "text2video_zero.json", small_inputs(tmp_path, fps=12.0),
                         output_dir=str(tmp_path))
    assert sorted(again.ran) == ["sheet", "write"], "only the file writers (side effects) run again"
    assert torch.equal(first["frames"], again["frames"])
    assert Path(again["video"]).is_file()


def test_long_workflow_bounds_the_unet_batch_by_the_chunk_size(executor, tmp_path):
    loader = {"vdgraph": 1, "inputs": {"model": {"type": "str"}},
              "nodes": {"model": {"type": "video.load_model", "in": {"model": "inputs.model"}}},
              "outputs": {"unet": "model.unet"}}
    inputs = small_inputs(tmp_path, frames=10, chunk_size=3, decode_chunk=4, output=str(tmp_path / "long.webm"))
    unet = executor.run(loader, {"model": inputs["model"]})["unet"].module  # the module the workflow will use
    batches: list[int] = []
    hook = unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        result = executor.run(WORKFLOWS / "text2video_zero_long.json", inputs, output_dir=str(tmp_path))
    finally:
        hook.remove()
    assert result["frames"].shape == (10, 32, 32, 3)
    assert max(batches) == 2 * 3, "CFG halves x (anchor + 2 frames)"
    assert Path(result["video"]).is_file()


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_runs_give_float32_frames_close_to_fp32(tmp_path, dtype):
    inputs = small_inputs(tmp_path, steps=4, t0=1, t1=2)
    full = vdgraph.Executor(device="cpu").run(WORKFLOWS / "text2video_zero.json", inputs, outputs=["frames"])
    half = vdgraph.Executor(device="cpu", dtype=dtype).run(WORKFLOWS / "text2video_zero.json", inputs,
                                                           outputs=["frames", "latents"])
    assert half["latents"].dtype == getattr(torch, dtype)
    assert half["frames"].dtype == torch.float32 and torch.isfinite(half["frames"]).all()
    assert (half["frames"] - full["frames"]).abs().mean().item() < 0.02


def test_docs_describe_every_node_and_workflow():
    import vdgraph_video

    doc = (WORKFLOWS.parent / "docs" / "video.md").read_text()
    missing = [cls.id for cls in vdgraph_video.NODES if f"`{cls.id}`" not in doc]
    missing += [name for name in SHIPPED if f"{name}.json" not in doc]
    assert not missing, f"docs/video.md does not cover {missing}"
