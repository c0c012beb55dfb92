"""Reading one still image (PNG, JPEG, anything Pillow opens) through fsspec, resized as diffusers resizes PIL
images (Pillow, Lanczos by default, on the 8-bit pixels)."""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Literal

import fsspec
import numpy as np
import torch

Resample = Literal["lanczos", "bicubic", "bilinear", "nearest"]
AlphaMode = Literal["refuse", "drop"]
DEFAULT_MAX_IMAGE_PIXELS = 8192 * 8192
"""The largest image read_image decodes by default (64 M pixels)."""
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


@dataclasses.dataclass(frozen=True)
class ImageFacts:
    """An image's size and Pillow mode, read from its header (validation reads no pixels)."""

    height: int
    width: int
    mode: str

    @property
    def has_alpha(self) -> bool:
        return self.mode in ALPHA_MODES


def _has_alpha(image) -> bool:
    return image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info)


def image_header(path: str) -> ImageFacts | None:
    """The size and mode of a local image file from its header, or None when it cannot be read (the run decides)."""
    from PIL import Image

    if "://" in path or not os.path.isfile(path):
        return None
    try:
        with Image.open(path) as image:
            mode = "RGBA" if _has_alpha(image) else image.mode
            return ImageFacts(image.height, image.width, mode)
    except Exception:
        return None


def read_image(path: str, height: int = 0, width: int = 0, resample: Resample = "lanczos", alpha: AlphaMode = "refuse",
               max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> torch.Tensor:
    """(1, H, W, 3) float32 RGB in [0, 1] from an image file (local path or fsspec URL).

    Grey and palette images become RGB; an image with an alpha channel is refused (alpha "refuse": its transparent
    parts have no colour to keep) or its alpha dropped ("drop"). Resize: both sides given -> that size; one given ->
    the other follows the aspect ratio; the 8-bit pixels are resized with Pillow, as diffusers' image processor
    resizes a PIL image. An image over `max_pixels` is refused before its pixels are decoded.
    """
    from PIL import Image

    if not isinstance(path, str) or not path.strip():
        raise ValueError("the image path is empty: name a PNG or JPEG file")
    with fsspec.open(path, "rb") as handle:
        data = handle.read()
    try:
        image = Image.open(io.BytesIO(data))
    except Exception as exc:
        raise ValueError(f"{path} is not an image Pillow can read ({type(exc).__name__}: {exc})") from exc
    if image.width * image.height > max_pixels:
        raise ValueError(f"{path} is {image.width}x{image.height} pixels, over max_pixels ({max_pixels:,}): "
                         "shrink it first or raise max_pixels")
    if _has_alpha(image) and alpha == "refuse":
        raise ValueError(f"{path} has an alpha channel ({image.mode}, 4 channels where 3 are needed): flatten it "
                         "onto a background, or set alpha to 'drop'")
    pixels = np.asarray(image.convert("RGB"))  # (H, W, 3) uint8
    h, w = pixels.shape[:2]
    if height > 0 or width > 0:
        height = height if height > 0 else max(1, round(h * width / w))
        width = width if width > 0 else max(1, round(w * height / h))
        pixels = resize_image_uint8(pixels, height, width, resample)
    return (torch.from_numpy(pixels.copy()).float() / 255)[None]  # (1, H, W, 3)


def resize_image_uint8(image: np.ndarray, height: int, width: int, resample: str = "lanczos") -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3) uint8 with Pillow (what diffusers' image processor does to a PIL
    image; the same size is returned unchanged, as Pillow does)."""
    from PIL import Image

    if image.shape[:2] == (height, width):
        return image
    filters = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC,
               "bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}
    return np.asarray(Image.fromarray(image).resize((width, height), resample=filters[resample]))


def resize_image(image: torch.Tensor, height: int, width: int, resample: str = "lanczos") -> torch.Tensor:
    """(1, H, W, 3) float in [0, 1] -> (1, height, width, 3), resized as 8-bit RGB with Pillow (exact for an image
    read from an 8-bit file; the pipeline resizes a PIL image the same way). The same size is returned as it is."""
    assert image.ndim == 4 and image.shape[0] == 1 and image.shape[-1] == 3, (
        f"image must be (1, H, W, 3), got {tuple(image.shape)}")
    if tuple(image.shape[1:3]) == (height, width):
        return image
    pixels = (image[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    resized = resize_image_uint8(pixels, height, width, resample)
    return torch.from_numpy(resized.copy()).float().div(255)[None]
