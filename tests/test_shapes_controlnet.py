"""The built-in ControlNet shapes-64-canny: found by name through the `vdgraph.models` entry point, loaded by
video.load_controlnet, the default of text2video_zero_controlnet.json (which then runs offline with only
control_video and prompt), held to the gates on a small slice of vdgraph_shapes.controlnet_gates, and shown to
matter (controlnet_scale 0 loses the trajectory). Also the labelled contact sheet (input | condition | output)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import video_fixtures

import vdgraph
from vdgraph_shapes import BUILTIN_MODELS
from vdgraph_shapes.controlnet_gates import (CENTROID_GATE_PX, CLASS_GATE, COLOUR_GATE, input_videos, run_gates,
                                             write_png_folder)

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "workflows" / "text2video_zero_controlnet.json"
SHAPES_DIR = ROOT / "nodes" / "vdgraph_shapes"

one_thread = pytest.fixture(autouse=True)(video_fixtures.single_thread)



def folder_bytes(folder: Path, pattern: str = "*.safetensors") -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern))


def test_builtin_controlnet_is_small_and_registered():
    from importlib.metadata import entry_points

    folder = Path(BUILTIN_MODELS["shapes-64-canny"])
    assert folder == SHAPES_DIR / "controlnet_canny" and (folder / "config.json").is_file()
    (entry,) = entry_points(group="vdgraph.models", name="shapes-64-canny")
    assert Path(entry.load()) == folder, "the entry point resolves to the packaged folder"
    assert folder_bytes(folder) <= 5 * 2**20, "the ControlNet's weights stay under 5 MB"
    assert folder_bytes(SHAPES_DIR) < 25 * 2**20, "all built-in weights of the shapes pack stay under 25 MB"
    assert not list(folder.glob("*.bin")), "safetensors only"


def test_builtin_controlnet_loads_by_name_and_matches_the_unet(executor):
    loader = {"vdgraph": 1, "inputs": {"name": {"type": "str"}},
              "nodes": {"load": {"type": "video.load_controlnet", "in": {"model": "inputs.name"}}},
              "outputs": {"controlnet": "load.controlnet"}}
    out = executor.run(loader, {"name": "shapes-64-canny"})
    module = out["controlnet"].module
    assert type(module).__name__ == "ControlNetModel" and not module.training
    assert tuple(module.config.block_out_channels) == (32, 64, 64)
    # the condition embedding downsamples 4x, as the VAE: 64x64 edges -> 16x16 latents
    assert 2 ** (len(module.config.conditioning_embedding_out_channels) - 1) == 4
    assert vdgraph.load_workflow(WORKFLOW).inputs["controlnet"].default == "shapes-64-canny"


def test_workflow_runs_offline_with_only_control_video_and_prompt(executor, tmp_path):
    video = input_videos(1, 8)[0]
    folder = write_png_folder(video.frames(8), tmp_path / "control")
    result = executor.run(WORKFLOW, {"control_video": str(folder), "prompt": video.prompt}, output_dir=str(tmp_path))
    assert result["frames"].shape == (8, 64, 64, 3)
    from PIL import Image

    sheet = np.asarray(Image.open(result["contact_sheet"]))
    assert sheet.shape[0] == 3 * 64 + 2 * 2, "input, condition and output rows"
    # the condition row holds canny edges: black and white only
    from vdgraph_video.ops.video_io import LABEL_WIDTH

    condition_row = sheet[66:130, LABEL_WIDTH:LABEL_WIDTH + 64]
    assert set(np.unique(condition_row)) <= {0, 255} and (condition_row == 255).any()


def test_small_gate_run_meets_the_gates_and_needs_the_controlnet(executor):
    videos = input_videos(4, 8)  # a circle, a square and a square in view, a triangle leaving the frame
    settings = {"steps": 10}
    report = run_gates(videos, ["t2vz_first_frame"], 8, settings, executor=executor)
    s = report["summary"]["t2vz_first_frame"]
    assert s["centroid_error_px"] <= CENTROID_GATE_PX, s
    assert s["class"] >= CLASS_GATE and s["colour"] >= COLOUR_GATE and s["background"] >= COLOUR_GATE, s
    off = run_gates(videos[:2], ["t2vz_first_frame"], 8, {**settings, "controlnet_scale": 0.0}, executor=executor)
    o = off["summary"]["t2vz_first_frame"]
    assert not o["centroid_error_px"] <= 2 * CENTROID_GATE_PX, ("without the ControlNet the shape does not follow "
                                                               f"the input: {o}")


def test_labelled_contact_sheet_rows():
    from vdgraph_video.ops.video_io import LABEL_WIDTH, contact_sheet, labelled_sheet

    output = torch.full((3, 4, 6, 3), 0.5)
    condition = torch.zeros((3, 8, 12, 3))  # another size: drawn at the output's
    sheet = labelled_sheet([("condition", condition), ("output", output)], gap=2)
    assert sheet.shape == (2 * 4 + 2, LABEL_WIDTH + 3 * (6 + 2), 3)
    assert (sheet[0:4, LABEL_WIDTH:LABEL_WIDTH + 6] == 0).all() and (sheet[6:10, LABEL_WIDTH:LABEL_WIDTH + 6] == 128).all()
    assert (sheet[:, :LABEL_WIDTH] < 255).any(), "labels are drawn"
    assert contact_sheet(output).shape == (2 * 4 + 2, 2 * 6 + 2, 3), "unlabelled grid unchanged"
