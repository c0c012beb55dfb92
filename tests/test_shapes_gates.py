"""The video-gate summary: motion figures only over videos where the shape is in view, as the issue words it."""

from __future__ import annotations

import math

from vdgraph_shapes.video_gates import summarise


def _row(identity: float, error: float, direction: bool | None) -> dict:
    return {"identity": identity, "adherence": identity, "motion_error": error, "direction_correct": direction,
            "pairs_in_view": 0 if math.isnan(error) else 7, "background_change": 0.001}


def test_a_video_never_in_view_is_left_out_of_motion_not_counted_wrong():
    s = summarise([_row(1.0, 0.5, True), _row(1.0, 1.5, True), _row(0.5, math.nan, False)])
    assert s["videos"] == 3 and s["videos_with_motion_measured"] == 2
    assert s["direction_correct"] == 1.0 and s["motion_error"] == 1.0
    assert abs(s["identity"] - 2.5 / 3) < 1e-12  # identity still counts every video


def test_a_wrong_direction_in_view_counts():
    s = summarise([_row(1.0, 0.5, True), _row(1.0, 3.0, False)])
    assert s["direction_correct"] == 0.5 and s["motion_error"] == 1.75


def test_no_video_in_view_gives_nan_not_a_pass():
    s = summarise([_row(1.0, math.nan, False)])
    assert math.isnan(s["motion_error"]) and math.isnan(s["direction_correct"])
