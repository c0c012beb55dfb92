"""Sweeps: the grid of several inputs' values through one Executor (`Executor.sweep`, `vdgraph run --sweep`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from vdgraph import Executor
from vdgraph.errors import WorkflowInvalid
from vdgraph.sweep import grid, parse_sweep
from vdgraph_video.ops.video_io import write_png_frames


def no_file(path: str) -> str:
    raise AssertionError(f"no file should be read, asked for {path}")


def test_sweep_specs():
    assert parse_sweep("seed=0..3", no_file) == ("seed", ["0", "1", "2", "3"])
    assert parse_sweep("seed=10..4..-3", no_file) == ("seed", ["10", "7", "4"])
    assert parse_sweep("guidance=5, 7.5,9", no_file) == ("guidance", ["5", "7.5", "9"])
    assert parse_sweep("prompt=@p.txt", lambda path: "a red circle\n\n a blue square \n") == (
        "prompt", ["a red circle", "a blue square"])
    for bad, message in [("seed", "expects name=values"), ("seed=0..5..0", "never goes"), ("seed=3..1..1", "never goes"),
                         ("seed=1,,2", "empty value"), ("seed=0..99999999", "at most"),
                         ("prompt=@p.txt", "has no values")]:
        with pytest.raises(ValueError, match=message):
            parse_sweep(bad, lambda path: "\n")
    assert grid({"a": [1, 2], "b": ["x", "y", "z"]})[:4] == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "z"}, {"a": 2, "b": "x"}]


@pytest.fixture
def clip_workflow(tmp_path):
    """Reads a 6-frame clip (frame i is grey i/10) and selects frames from `start`, every `step`-th."""
    frames = (np.arange(6, dtype=np.float32).reshape(6, 1, 1, 1) / 10 * np.ones((6, 16, 16, 3), np.float32))
    write_png_frames((frames * 255).round().astype(np.uint8), str(tmp_path / "clip"))
    return {
        "vdgraph": 1,
        "name": "cut",
        "inputs": {"start": {"type": "int", "default": 0}, "step": {"type": "int", "default": 1, "min": 1},
                   "clip": {"type": "str", "default": str(tmp_path / "clip")}},
        "nodes": {
            "read": {"type": "video.read_video", "in": {"path": "inputs.clip"}},
            "cut": {"type": "video.select_frames", "in": {"frames": "read.frames", "start": "inputs.start",
                                                          "step": "inputs.step"}},
            "write": {"type": "video.write_video", "in": {"frames": "cut.frames"}, "params": {"path": "cut.gif"}},
        },
        "outputs": {"frames": "cut.frames", "video": "write.file"},
    }


def test_executor_sweep_runs_the_grid_once_per_job_sharing_the_cache(tmp_path, clip_workflow):
    executor = Executor(device="cpu")
    seen = []
    sweep = executor.sweep(clip_workflow, {"start": [0, 1], "step": [1, 2, 3]}, output_dir=tmp_path / "out",
                           on_job=lambda job, total: seen.append((job.index, total)))
    assert seen == [(i, 6) for i in range(6)]
    assert [job.values for job in sweep.jobs][:2] == [{"start": 0, "step": 1}, {"start": 0, "step": 2}]
    for job in sweep.jobs:
        start, step = job.values["start"], job.values["step"]
        expected = [round(v * 10) for v in np.arange(6)[start::step] / 10]
        assert [round(float(v) * 10) for v in job.result.outputs["frames"][:, 0, 0, 0]] == expected
        assert job.result.outputs["video"].startswith(job.output_dir)  # each job's files apart
    statuses = [{r.id: r.status for r in job.result.report}["read"] for job in sweep.jobs]
    assert statuses == ["ran"] + ["cached-memory"] * 5  # what the swept inputs do not reach ran once
    assert len({job.output_dir for job in sweep.jobs}) == 6
    sheet = Image.open(sweep.sheet)
    assert sweep.sheet.endswith("cut_sweep/sweep_sheet.png") and sheet.width > 3 * 4 * 16 and sheet.height > 2 * 16
    again = executor.sweep(clip_workflow, {"step": [1]}, output_dir=tmp_path / "out")
    assert again.folder.endswith("cut_sweep_00001")  # a second sweep never writes into the first one's folder


def test_every_job_is_validated_before_the_first_runs(tmp_path, clip_workflow):
    with pytest.raises(WorkflowInvalid) as caught:
        Executor(device="cpu").sweep(clip_workflow, {"step": [1, 0]}, output_dir=tmp_path / "out")
    assert "sweep job step=0" in str(caught.value.problems[0].message)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="both set and swept"):
        Executor(device="cpu").sweep(clip_workflow, {"step": [1]}, {"step": 2}, output_dir=tmp_path / "out")


def test_cli_sweep(tmp_path, clip_workflow):
    flow = tmp_path / "cut.json"
    flow.write_text(json.dumps(clip_workflow))
    (tmp_path / "steps.txt").write_text("1\n2\n")
    args = ("run", str(flow), "--output-dir", str(tmp_path / "out"), "--device", "cpu")
    done = run_cli(*args, "--sweep", "start=0..1", "--sweep", f"step=@{tmp_path / 'steps.txt'}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("[1/4] start=0 step=1: 3 ran, 0 cached") and lines[3].startswith("[4/4] start=1 step=2")
    assert "sweep: 4 jobs" in done.stdout and "grid contact sheet:" in done.stdout
    as_json = json.loads(run_cli(*args, "--sweep", "step=1,2", "--json").stdout)
    assert [job["values"] for job in as_json["jobs"]] == [{"step": 1}, {"step": 2}]
    bad = run_cli(*args, "--sweep", "step=1,x")
    assert bad.returncode == 1 and "--sweep" in bad.stderr and "'x'" in bad.stderr
    missing = run_cli(*args, "--sweep", f"step=@{tmp_path / 'absent.txt'}")
    assert missing.returncode == 2 and "cannot read" in missing.stderr
