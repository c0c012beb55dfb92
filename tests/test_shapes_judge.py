"""The judge is right on rendered ground truth before it is trusted to score a model."""

from __future__ import annotations

import numpy as np

from vdgraph_shapes.judge import judge_frame, judge_video, nearest_colour
from vdgraph_shapes.world import COLOURS, Scene, render, sample_scene


def expected_centroid(s: Scene) -> tuple[float, float]:
    """Triangles (apex up, height = size) have their centroid size/6 below the bounding-box centre."""
    return s.x, s.y + (s.size / 6 if s.shape == "triangle" else 0.0)


def test_judge_on_random_ground_truth() -> None:
    rng = np.random.default_rng(123)
    n, wrong = 250, []
    for _ in range(n):
        s = sample_scene(rng)
        j = judge_frame(render(s))
        ex, ey = expected_centroid(s)
        ok = (
            j.background == s.background
            and j.colour == s.colour
            and j.shape == s.shape
            and abs(j.x - ex) < 0.3
            and abs(j.y - ey) < 0.3
            and abs(j.area - (np.pi / 4 if s.shape == "circle" else 1.0 if s.shape == "square" else 0.5) * s.size**2)
            < 0.05 * s.size**2
            and not j.touches_border
        )
        for c in (j.background_confidence, j.colour_confidence, j.shape_confidence):
            assert 0.0 <= c <= 1.0
        if not ok:
            wrong.append((s, j))
    assert not wrong, f"{len(wrong)}/{n} wrong, e.g. {wrong[:3]}"


def test_judge_confidences_high_on_ground_truth() -> None:
    rng = np.random.default_rng(5)
    js = [judge_frame(render(sample_scene(rng))) for _ in range(50)]
    assert min(j.background_confidence for j in js) > 0.9
    assert min(j.colour_confidence for j in js) > 0.9
    assert min(j.shape_confidence for j in js) > 0.6


def test_judge_accepts_float_and_noise() -> None:
    rng = np.random.default_rng(9)
    for _ in range(40):
        s = sample_scene(rng)
        img = render(s).astype(np.float32) / 255.0
        noisy = np.clip(img + rng.normal(0, 0.04, img.shape), 0, 1).astype(np.float32)
        j = judge_frame(noisy)
        assert (j.background, j.colour, j.shape) == (s.background, s.colour, s.shape), (s, j)


def test_empty_frame_has_no_shape() -> None:
    img = np.zeros((64, 64, 3), dtype=np.uint8)
    img[:] = COLOURS["green"]
    j = judge_frame(img)
    assert j.background == "green" and j.shape is None and j.colour is None
    assert j.shape_confidence == 0.0 and np.isnan(j.x)


def test_nearest_colour_confidence_falls_between_colours() -> None:
    red, blue = (np.asarray(COLOURS[c]) / 255.0 for c in ("red", "blue"))
    assert nearest_colour(red) == ("red", 1.0)
    name, conf = nearest_colour((red + blue) / 2)
    assert conf < 0.2


def test_judge_video_per_frame() -> None:
    s = Scene(background="black", colour="yellow", shape="triangle", x=30.0, y=30.0, size=20.0)
    frames = np.stack([render(s)] * 3)
    assert [j.shape for j in judge_video(frames)] == ["triangle"] * 3
