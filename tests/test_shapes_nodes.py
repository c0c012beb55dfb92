"""The judge and metric nodes: through the engine, on rendered ground-truth videos with known answers."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import vdgraph
from vdgraph.context import RunContext
from vdgraph_shapes.nodes import TemporalConsistency, TranslationFlow, VideoMetrics, WarpingError
from vdgraph_shapes.world import Scene, render

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"


def moving_video(dx: float, dy: float, frames: int = 8) -> torch.Tensor:
    """A green square on a red background moving by (dx, dy) px per frame: (F, 64, 64, 3) float in [0, 1]."""
    start = Scene(background="red", colour="green", shape="square", x=32.0, y=32.0, size=18.0)
    video = [render(dataclasses.replace(start, x=start.x + k * dx, y=start.y + k * dy)) for k in range(frames)]
    return torch.from_numpy(np.stack(video)).float() / 255.0


def ctx(node) -> RunContext:
    return RunContext(node_id="n", node_type=node.id, device=torch.device("cpu"), dtype=torch.float32)


def test_video_metrics_recover_prompt_identity_and_motion():
    frames = moving_video(1.5, -1.0)
    out = VideoMetrics().run(ctx(VideoMetrics), frames=frames, prompt="a green square on a red background",
                             motion_x=1.5, motion_y=-1.0)
    assert out["adherence"] == 1.0
    assert out["identity"] == 1.0
    assert out["motion_error"] < 0.2, out["report"]["motion"]
    assert out["report"]["motion"]["direction_correct"] is True
    json.dumps(out["report"])  # the report is plain JSON (no NaN, no numpy)


def test_video_metrics_flag_a_wrong_prompt_and_wrong_motion():
    frames = moving_video(1.5, 0.0)
    out = VideoMetrics().run(ctx(VideoMetrics), frames=frames, prompt="a blue circle on a red background",
                             motion_x=-1.5, motion_y=0.0)
    assert out["report"]["adherence"]["background_rate"] == 1.0
    assert out["report"]["adherence"]["colour_rate"] == 0.0
    assert out["adherence"] == 0.0
    assert out["motion_error"] > 2.5
    assert out["report"]["motion"]["direction_correct"] is False


def test_warping_error_is_small_with_the_true_flow_and_large_with_none():
    frames = moving_video(2.0, 0.0)
    true_flow = TranslationFlow().run(ctx(TranslationFlow), frames=frames, dx=2.0, dy=0.0)
    still = TranslationFlow().run(ctx(TranslationFlow), frames=frames, dx=0.0, dy=0.0)
    assert true_flow.shape == (7, 64, 64, 2)
    good = WarpingError().run(ctx(WarpingError), frames=frames, flow=true_flow)
    bad = WarpingError().run(ctx(WarpingError), frames=frames, flow=still)
    assert good < 1e-6 and bad > 1e-3, (good, bad)  # the true flow explains every changed pixel
    assert TemporalConsistency().run(ctx(TemporalConsistency), frames=frames) > 0
    assert TemporalConsistency().run(ctx(TemporalConsistency), frames=frames[:1].repeat(3, 1, 1, 1)) == 0


def test_judge_workflow_reads_a_written_video_and_saves_its_report(tmp_path):
    frames = moving_video(-1.0, -1.0)
    writer = {"vdgraph": 1, "nodes": {"w": {"type": "video.write_video", "in": {}, "params": {"path": "clip"}}},
              "outputs": {"file": "w.file"}}
    # Frames are link-only, so a tiny in-test source node hands the rendered frames to the writer.
    registry = vdgraph.Registry.discover()

    class Rendered(vdgraph.Node):
        """Test source: the rendered frames."""

        id = "shapes.test_rendered"
        inputs = []
        outputs = [vdgraph.Output("frames", VideoMetrics.input_map["frames"].type)]

        def run(self, ctx):
            return frames

    registry.register(Rendered, pack="shapes")
    writer["nodes"]["src"] = {"type": "shapes.test_rendered"}
    writer["nodes"]["w"]["in"]["frames"] = "src.frames"
    executor = vdgraph.Executor(registry=registry, device="cpu")
    executor.run(writer, output_dir=str(tmp_path))  # a lossless PNG-frame folder

    result = executor.run(WORKFLOWS / "judge_shapes_video.json", output_dir=str(tmp_path),
                          inputs={"video": str(tmp_path / "clip"), "prompt": "a green square on a red background",
                                  "motion_x": -1.0, "motion_y": -1.0})
    assert result["identity"] == 1.0 and result["adherence"] == 1.0
    assert result["motion_error"] < 0.2
    saved = json.loads(Path(result["file"]).read_text())
    assert saved["identity_consistency"] == 1.0 and len(saved["frames"]) == 8
