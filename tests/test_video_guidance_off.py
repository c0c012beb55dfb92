"""guidance <= 1 (documented as "off") runs every shipped workflow that has a guidance input, on the built-in model.

It used to fail in the first denoise with "attention batch 1 is not a multiple of cfg_chunks 2": the cross-frame
patch carried a hand-set chunk count; now video.denoise tells the patches the batch layout of each UNet call.
Parity of the unguided results with the reference is in tests/test_video_parity.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import video_fixtures

import vdgraph

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
SHORT = {"frames": 3, "steps": 4, "t0": 1, "t1": 2, "guidance": 1.0}
WITH_GUIDANCE = ["text2video_zero", "text2video_zero_long", "text2video_3d_unet", "video2video",
                 "text2video_zero_controlnet", "controlvideo", "controlvideo_long", "animatediff",
                 "animatediff_video2video", "animatediff_controlnet"]

one_thread = pytest.fixture(autouse=True)(video_fixtures.single_thread)



def test_these_are_the_shipped_workflows_with_a_guidance_input():
    named = {p.stem for p in WORKFLOWS.glob("*.json") if "guidance" in vdgraph.load_workflow(p).inputs}
    # video_instruct_pix2pix needs an InstructPix2Pix model, not the built-in one: its guidance-off runs (guidance 1,
    # image_guidance < 1) are compared with diffusers in tests/test_video_pix2pix.py
    assert named == set(WITH_GUIDANCE) | {"video_instruct_pix2pix"}


@pytest.mark.parametrize("name", WITH_GUIDANCE)
def test_guidance_1_runs_on_the_builtin_model(executor, name, tmp_path, monkeypatch):
    monkeypatch.setenv("VDGRAPH_CACHE_DIR", str(tmp_path / "cache"))  # where shapes-64-3d is built, not ~/.cache
    inputs = {k: v for k, v in SHORT.items() if k in vdgraph.load_workflow(WORKFLOWS / f"{name}.json").inputs}
    if name == "text2video_zero_long":
        inputs["chunk_size"] = 2  # two UNet calls per step in the final pass, each one clip of anchor + 1 frame
    if name in ("video2video", "animatediff_video2video"):  # an input video: 3 grey frames
        from vdgraph_video.ops.video_io import write_png_frames

        inputs["video"] = write_png_frames(torch.full((3, 64, 64, 3), 128, dtype=torch.uint8).numpy(),
                                           str(tmp_path / "input"))
    if name in ("text2video_zero_controlnet", "controlvideo", "controlvideo_long", "animatediff_controlnet"):  # on
        # their default, the built-in shapes-64-canny (animatediff*: the built-in shapes-64-motion)
        inputs["control_video"] = video_fixtures.write_png_frames(str(tmp_path / "control"), 3, 64)
    inputs.update(output=str(tmp_path / "clip.gif"), contact_sheet=str(tmp_path / "sheet.png"))
    result = executor.run(WORKFLOWS / f"{name}.json", inputs, output_dir=str(tmp_path))
    frames = result["frames"]
    assert frames.shape == (3, 64, 64, 3) and bool(torch.isfinite(frames).all())
    assert Path(result["video"]).stat().st_size > 0
