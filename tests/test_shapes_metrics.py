"""Video metrics recover known answers on synthetic shapes videos."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vdgraph_shapes.metrics import (
    background_stability,
    identity_consistency,
    motion_accuracy,
    prompt_adherence,
    temporal_consistency,
    translation_flow,
    warp_backward,
    warping_error,
)
from vdgraph_shapes.world import Scene, render

BASE = Scene(background="blue", colour="yellow", shape="circle", x=20.0, y=24.0, size=18.0)


def moving_video(scene: Scene, dx: float, dy: float, frames: int = 8) -> np.ndarray:
    """(F, 64, 64, 3) float in [0, 1]: the scene translated by (dx, dy) px per frame."""
    return np.stack(
        [render(dataclasses.replace(scene, x=scene.x + k * dx, y=scene.y + k * dy)) for k in range(frames)]
    ).astype(np.float32) / 255.0


@pytest.mark.parametrize(("dx", "dy"), [(2.0, 0.0), (0.0, -1.5), (1.25, 0.75), (-2.5, 1.0)])
def test_motion_accuracy_recovers_translation(dx: float, dy: float) -> None:
    video = moving_video(BASE if dx >= 0 else dataclasses.replace(BASE, x=44.0), dx, dy)
    r = motion_accuracy(video, dx, dy)
    assert r["pairs"] == 7
    assert r["mae"] < 0.1, r
    assert abs(r["measured"][0] - dx) < 0.05 and abs(r["measured"][1] - dy) < 0.05, r
    assert r["direction_correct"] is True
    assert abs(r["speed_ratio"] - 1.0) < 0.05
    wrong = motion_accuracy(video, -dx, -dy)
    assert wrong["direction_correct"] is False
    assert abs(wrong["mae"] - 2 * np.hypot(dx, dy)) < 0.2


def test_motion_accuracy_skips_frames_out_of_view() -> None:
    video = moving_video(dataclasses.replace(BASE, x=40.0), 4.0, 0.0)  # leaves the right edge around frame 4
    r = motion_accuracy(video, 4.0, 0.0)
    assert 0 < r["pairs"] < 7
    assert r["mae"] < 0.1, r


def test_motion_accuracy_zero_command_and_static() -> None:
    video = moving_video(BASE, 0.0, 0.0, frames=4)
    r = motion_accuracy(video, 0.0, 0.0)
    assert r["mae"] < 1e-6 and r["direction_correct"] is None and r["speed_ratio"] is None


def test_prompt_adherence_and_identity() -> None:
    video = moving_video(BASE, 1.0, 0.0, frames=4)
    r = prompt_adherence(video, "a yellow circle on a blue background")
    assert r["all_rate"] == 1.0 and r["all"] == [True] * 4
    r = prompt_adherence(video, "a yellow square on a red background")
    assert r["background_rate"] == 0.0 and r["colour_rate"] == 1.0 and r["shape_rate"] == 0.0
    assert identity_consistency(video) == 1.0
    # swap the shape in half the frames: identity falls to the fraction of frames 1..3 that still match frame 0
    other = render(dataclasses.replace(BASE, shape="square")).astype(np.float32) / 255.0
    mixed = video.copy()
    mixed[2:] = other
    assert identity_consistency(mixed) == pytest.approx(1 / 3)
    assert identity_consistency(video[:1]) == 1.0


def test_background_stability() -> None:
    video = moving_video(BASE, 2.0, 0.0)
    assert background_stability(video) < 1e-6  # the shape moves, the background does not change
    flicker = video.copy()
    flicker[1::2] = np.clip(flicker[1::2] + 0.1, 0, 1)
    assert background_stability(flicker) == pytest.approx(0.1, abs=0.01)


def test_temporal_consistency() -> None:
    still = moving_video(BASE, 0.0, 0.0, frames=3)
    assert temporal_consistency(still) == 0.0
    a = np.zeros((2, 8, 8, 3), dtype=np.float32)
    a[1] = 0.25
    assert temporal_consistency(a) == pytest.approx(0.25)
    assert temporal_consistency((a * 255).astype(np.uint8)) == pytest.approx(63 / 255)


def test_warp_backward_integer_shift() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((16, 16, 3))
    flow = np.zeros((16, 16, 2))
    flow[..., 0] = 3.0
    warped, valid = warp_backward(img, flow)
    assert np.allclose(warped[:, :13], img[:, 3:]) and valid[:, :13].all() and not valid[:, 13:].any()


def test_warping_error_zero_for_true_flow() -> None:
    # a smooth pattern translated by a sub-pixel amount: the true flow gives a near-zero error, zero flow does not
    ys, xs = np.mgrid[0:64, 0:64].astype(np.float64)
    frames = np.stack(
        [np.stack([0.5 + 0.4 * np.sin((xs - 1.5 * k) / 5 + c) * np.cos(ys / 7) for c in range(3)], axis=-1) for k in range(4)]
    )
    good = warping_error(frames, translation_flow(4, 64, 64, 1.5, 0.0))
    bad = warping_error(frames, translation_flow(4, 64, 64, 0.0, 0.0))
    assert good < 0.005 < bad, (good, bad)
    # a mask restricts scoring to chosen pixels
    mask = np.zeros((3, 64, 64), dtype=bool)
    mask[:, :, :20] = True
    assert warping_error(frames, translation_flow(4, 64, 64, 1.5, 0.0), mask) < 0.005


def test_warping_error_on_shapes_video() -> None:
    video = moving_video(BASE, 2.0, 1.0)
    # the whole frame moves only where the shape is; the flow of a rigid translation is exact on the shape, and
    # the background is constant, so warping with the shape's motion everywhere gives ~0 error
    assert warping_error(video, translation_flow(8, 64, 64, 2.0, 1.0)) < 0.01
    assert warping_error(video, translation_flow(8, 64, 64, -2.0, -1.0)) > 0.02
