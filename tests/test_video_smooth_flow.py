"""The interleaved-frame smoother's interpolators on procedural ground truth: a shape moving linearly, whose true
midpoint frame the shapes world renders exactly (tools/interpolator_error.py prints the full table)."""

from __future__ import annotations

import sys

import pytest
import torch
from conftest import REPO

import vdgraph_video
from vdgraph.context import RunContext
from vdgraph_video.ops.smooth import flow_midpoint, interleave_interpolate

sys.path.insert(0, str(REPO / "tools"))
from interpolator_error import midpoint_error, moving_triplet  # noqa: E402


@pytest.mark.parametrize("shape, dx, dy", [("circle", 4.0, 2.0), ("square", 6.0, 0.0), ("triangle", 2.0, 0.0)])
def test_flow_midpoint_is_closer_to_the_true_middle_frame_than_the_mean(shape, dx, dy):
    mean, flow = midpoint_error(shape, dx, dy, "mean"), midpoint_error(shape, dx, dy, "flow")
    assert flow < 0.5 * mean, f"flow {flow:.4f} vs mean {mean:.4f}"
    assert flow < 0.01


def test_flow_midpoint_of_a_still_pair_is_their_mean():
    frame = moving_triplet("circle", 0.0, 0.0)[0].numpy()
    assert abs(flow_midpoint(frame, frame) - frame).max() < 1e-6


def test_interleave_node_takes_the_interpolator_and_keeps_frames_with_one_neighbour():
    frames = torch.cat([moving_triplet("circle", 4.0, 0.0), moving_triplet("circle", 4.0, 0.0)[:1]])  # (4, ...)
    ctx = RunContext(node_id="i", node_type="video.interleave_frames", device=torch.device("cpu"),
                     dtype=torch.float32)
    out = vdgraph_video.InterleaveFrames().run(ctx, frames=frames, parity="odd", interpolator="flow")
    assert torch.equal(out[[0, 2, 3]], frames[[0, 2, 3]])  # frame 3 has a single neighbour: kept
    assert (out[1] - frames[1]).abs().mean() < 0.01
    mean = vdgraph_video.InterleaveFrames().run(ctx, frames=frames, parity="odd", interpolator="mean")
    assert torch.equal(mean, interleave_interpolate(frames, 0, "odd"))  # the default is unchanged
    assert torch.equal(frames, torch.cat([moving_triplet("circle", 4.0, 0.0), moving_triplet("circle", 4.0, 0.0)[:1]]))


def test_flow_interpolator_refuses_latents():
    with pytest.raises(AssertionError, match=r"frames \(F, H, W, 3\)"):
        interleave_interpolate(torch.zeros(1, 4, 3, 8, 8), 2, "odd", "flow")
