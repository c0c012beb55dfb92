"""Condition frames whose count or size cannot fit the video are validation problems where the workflow shows it
(frame counts and sizes set by workflow inputs or params), and clear run-time errors otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import video_fixtures

import vdgraph

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"

pytestmark = pytest.mark.usefixtures("torch_threads")


def controlnet_workflow(tmp_path, **control_video_params) -> Path:
    """text2video_zero_controlnet.json with literal params on its control_video reader (a user's edit)."""
    return video_fixtures.with_literal_params(WORKFLOWS / "text2video_zero_controlnet.json", tmp_path, "control_video",
                                              **control_video_params)


def errors(path, inputs):
    return [p for p in vdgraph.validate(path, inputs=inputs) if p.severity == "error"]


INPUTS = {"controlnet": "net", "control_video": "in.mp4", "frames": 4, "height": 32, "width": 32}


def test_the_shipped_workflow_reads_as_many_frames_as_it_denoises():
    assert errors(WORKFLOWS / "text2video_zero_controlnet.json", INPUTS) == []


def test_fewer_condition_frames_than_frames_is_a_validation_problem(tmp_path):
    found = errors(controlnet_workflow(tmp_path, max_frames=2), INPUTS)
    assert [(p.code, p.node, p.port) for p in found] == [("node.check", "denoise", "unet")]
    assert "ControlNet 1's condition has at most 2 frames but the latents have 4" in found[0].message
    assert "one condition image per frame" in found[0].hint


def test_condition_frames_of_another_size_are_a_validation_problem(tmp_path):
    found = errors(controlnet_workflow(tmp_path, height=64, width=48), INPUTS)
    assert [(p.code, p.node, p.port) for p in found] == [("node.check", "denoise", "unet")]
    assert "condition frames are 64x48 pixels but the latents are for 32x32" in found[0].message
    # a video condition resized to the video's size fits again
    path = controlnet_workflow(tmp_path, height=64, width=48)
    data = json.loads(path.read_text())
    data["nodes"]["condition"]["in"].update({"height": "inputs.height", "width": "inputs.width"})
    path.write_text(json.dumps(data))
    assert errors(path, {**INPUTS, "condition": "video"}) == []


def test_a_short_control_video_is_a_run_time_error_naming_the_controlnet(tmp_path):
    from test_video_controlnet import control_video_folder, tiny_controlnet_folder

    inputs = {"model": video_fixtures.tiny_model_folder("2d"), "controlnet": tiny_controlnet_folder(),
              "control_video": control_video_folder(2), "condition": "video", "frames": 3, "height": 32, "width": 32,
              "steps": 2, "output": str(tmp_path / "out.mp4")}
    message = r"denoise.*port 'unet': ControlNet 1 has 2 condition frames but the latents have 3"
    with pytest.raises(Exception, match=message):
        vdgraph.Executor(device="cpu").run(WORKFLOWS / "text2video_zero_controlnet.json", inputs, outputs=["frames"])
