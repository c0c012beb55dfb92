"""The shapes world renders what its captions say, and captions round-trip."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vdgraph_shapes.world import (
    COLOURS,
    IMAGE_SIZE,
    MARGIN,
    SHAPES,
    SIZE_RANGE,
    Scene,
    all_prompts,
    caption,
    parse_caption,
    render,
    sample_scene,
    shape_coverage,
)


def test_palette_is_well_separated() -> None:
    assert len(COLOURS) >= 8
    for a, b in itertools.combinations(COLOURS, 2):
        d = np.linalg.norm(np.subtract(COLOURS[a], COLOURS[b]))
        assert d >= 160, f"{a} and {b} are only {d:.0f} apart"


def test_sample_scene_is_valid_and_in_view() -> None:
    rng = np.random.default_rng(0)
    seen_shapes, seen_bg, seen_fg = set(), set(), set()
    for _ in range(500):
        s = sample_scene(rng)
        assert s.colour != s.background
        assert SIZE_RANGE[0] <= s.size <= SIZE_RANGE[1]
        half = s.size / 2 + MARGIN
        assert half <= s.x <= IMAGE_SIZE - half and half <= s.y <= IMAGE_SIZE - half, s
        seen_shapes.add(s.shape)
        seen_bg.add(s.background)
        seen_fg.add(s.colour)
    assert seen_shapes == set(SHAPES) and seen_bg == set(COLOURS) and seen_fg == set(COLOURS)


def test_sample_scene_is_deterministic() -> None:
    a = [sample_scene(np.random.default_rng(7)) for _ in range(2)]
    assert a[0] == a[1]


def test_render_colours_and_area() -> None:
    s = Scene(background="blue", colour="red", shape="square", x=32.0, y=32.0, size=20.0)
    img = render(s)
    assert img.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and img.dtype == np.uint8
    assert tuple(img[0, 0]) == COLOURS["blue"]
    assert tuple(img[32, 32]) == COLOURS["red"]
    red = np.all(img == np.asarray(COLOURS["red"], dtype=np.uint8), axis=2)
    assert red.sum() == 400  # a 20x20 square on pixel boundaries


@pytest.mark.parametrize(("shape", "expected"), [("circle", np.pi / 4), ("square", 1.0), ("triangle", 0.5)])
def test_coverage_area_matches_geometry(shape: str, expected: float) -> None:
    cov = shape_coverage(shape, 30.3, 33.7, 24.0)
    assert cov.min() >= 0 and cov.max() <= 1
    assert abs(cov.sum() / 24.0**2 - expected) < 0.01, cov.sum()


def test_shape_stays_in_view() -> None:
    rng = np.random.default_rng(1)
    for _ in range(100):
        s = sample_scene(rng)
        cov = shape_coverage(s.shape, s.x, s.y, s.size)
        assert cov[:2].sum() == 0 and cov[-2:].sum() == 0 and cov[:, :2].sum() == 0 and cov[:, -2:].sum() == 0


def test_caption_round_trip() -> None:
    s = Scene(background="blue", colour="red", shape="circle", x=20.0, y=20.0, size=16.0)
    assert caption(s) == "a red circle on a blue background"
    assert parse_caption(caption(s)) == ("red", "circle", "blue")
    assert parse_caption("A Red Circle on a Blue background.") == ("red", "circle", "blue")
    prompts = all_prompts()
    assert len(prompts) == len(set(prompts)) == len(COLOURS) * (len(COLOURS) - 1) * len(SHAPES)
    for p in prompts:
        c, sh, b = parse_caption(p)
        assert c != b


@pytest.mark.parametrize(
    "text",
    ["a red circle", "a mauve circle on a blue background", "a red hexagon on a blue background", "a red circle on a teal background", ""],
)
def test_parse_caption_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_caption(text)
