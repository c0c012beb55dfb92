"""The shapes world: 64x64 images of one coloured shape on a plain coloured background.

Why a procedural world: every image has an exactly known caption and ground truth (colours, shape class,
position), so a tiny text-to-image model can be trained on it in minutes on a CPU and a classic judge can
score what the model generates without any learned evaluator.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

IMAGE_SIZE: int = 64
"""Side of every rendered image in pixels."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 35, 35),
    "green": (35, 200, 60),
    "blue": (35, 50, 230),
    "yellow": (240, 220, 40),
    "cyan": (40, 220, 230),
    "magenta": (220, 45, 220),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
"""Named colours (sRGB uint8). Near the corners of the RGB cube, so every pair is >= ~165 apart (L2, 0..255)."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
"""Shape classes. Squares are axis-aligned; triangles are isosceles, apex up, as tall as they are wide."""

SIZE_RANGE: tuple[float, float] = (16.0, 32.0)
"""Shape size (bounding-box side in pixels), sampled uniformly."""

MARGIN: float = 2.0
"""Minimum gap in pixels between the shape's bounding box and the image border."""

_SUPERSAMPLE: int = 4
"""Sub-pixel samples per axis for anti-aliasing (coverage is the mean over SUPERSAMPLE^2 points)."""

_CAPTION_RE = re.compile(r"^\s*an?\s+(\w+)\s+(\w+)\s+on\s+an?\s+(\w+)\s+background\s*\.?\s*$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Scene:
    """One image's ground truth: shape `colour` and `shape` centred at (x, y) with bounding-box side `size`.

    Coordinates are in pixels, x to the right and y down, pixel centres at integer + 0.5.
    """

    background: str
    colour: str
    shape: str
    x: float
    y: float
    size: float

    def __post_init__(self) -> None:
        assert self.background in COLOURS, f"unknown background colour {self.background!r}"
        assert self.colour in COLOURS, f"unknown shape colour {self.colour!r}"
        assert self.shape in SHAPES, f"unknown shape {self.shape!r}"
        assert self.size > 0, f"size must be positive, got {self.size}"


def sample_scene(rng: np.random.Generator) -> Scene:
    """Draw a scene uniformly: background, a different shape colour, a shape, a size and a fully visible position."""
    names = list(COLOURS)
    background = names[int(rng.integers(len(names)))]
    others = [n for n in names if n != background]
    colour = others[int(rng.integers(len(others)))]
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    size = float(rng.uniform(*SIZE_RANGE))
    lo, hi = size / 2 + MARGIN, IMAGE_SIZE - size / 2 - MARGIN
    x, y = float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))
    return Scene(background=background, colour=colour, shape=shape, x=x, y=y, size=size)


def shape_coverage(shape: str, x: float, y: float, size: float, image_size: int = IMAGE_SIZE) -> np.ndarray:
    """Fraction of each pixel covered by the shape, in [0, 1], shape (H, W) float32.

    Why supersampling: a hard 0/1 mask makes jagged edges that a VAE spends capacity on; the coverage gives
    light anti-aliasing and a shape that can sit at sub-pixel positions (needed for smooth motion).
    The shape may extend outside the image; it is clipped.
    """
    assert shape in SHAPES, f"unknown shape {shape!r}"
    n = image_size * _SUPERSAMPLE
    coords = (np.arange(n, dtype=np.float32) + 0.5) / _SUPERSAMPLE  # (n,) sub-pixel centres in pixel units
    px, py = coords[None, :] - x, coords[:, None] - y  # (1, n), (n, 1) relative to the centre
    half = size / 2
    if shape == "circle":
        inside = px**2 + py**2 <= half**2  # (n, n)
    elif shape == "square":
        inside = (np.abs(px) <= half) & (np.abs(py) <= half)  # (n, n)
    else:  # triangle: apex at (0, -half), base from (-half, half) to (half, half)
        t = (py + half) / size  # 0 at the apex, 1 at the base
        inside = (py <= half) & (t >= 0) & (np.abs(px) <= half * t)  # (n, n)
    fine = inside.astype(np.float32).reshape(image_size, _SUPERSAMPLE, image_size, _SUPERSAMPLE)
    return fine.mean(axis=(1, 3))  # (H, W)


def render(scene: Scene, image_size: int = IMAGE_SIZE) -> np.ndarray:
    """Render a scene to an RGB image, shape (H, W, 3) uint8."""
    cov = shape_coverage(scene.shape, scene.x, scene.y, scene.size, image_size)[..., None]  # (H, W, 1)
    bg = np.asarray(COLOURS[scene.background], dtype=np.float32)  # (3,)
    fg = np.asarray(COLOURS[scene.colour], dtype=np.float32)  # (3,)
    img = bg * (1.0 - cov) + fg * cov  # (H, W, 3)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def caption(scene: Scene) -> str:
    """The training caption, e.g. "a red circle on a blue background"."""
    return f"a {scene.colour} {scene.shape} on a {scene.background} background"


def parse_caption(text: str) -> tuple[str, str, str]:
    """Parse "a <colour> <shape> on a <background> background" into (colour, shape, background).

    Raises ValueError with the reason when the text is not such a caption or names an unknown colour/shape.
    """
    m = _CAPTION_RE.match(text)
    if m is None:
        raise ValueError(f"not a shapes caption (expected 'a <colour> <shape> on a <colour> background'): {text!r}")
    colour, shape, background = (g.lower() for g in m.groups())
    if colour not in COLOURS:
        raise ValueError(f"unknown shape colour {colour!r} in {text!r}; known: {sorted(COLOURS)}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r} in {text!r}; known: {list(SHAPES)}")
    if background not in COLOURS:
        raise ValueError(f"unknown background colour {background!r} in {text!r}; known: {sorted(COLOURS)}")
    return colour, shape, background


def all_prompts() -> list[str]:
    """Every valid caption (colour != background), in a fixed order: 8 * 7 * 3 = 168 prompts."""
    return [
        f"a {c} {s} on a {b} background" for b in COLOURS for c in COLOURS if c != b for s in SHAPES
    ]


def vocabulary() -> list[str]:
    """Every word that can appear in a caption, in a fixed order (for the word-level tokenizer)."""
    return ["a", "an", "on", "background", *COLOURS, *SHAPES]
