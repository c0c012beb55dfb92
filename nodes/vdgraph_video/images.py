"""Reading a still image into frames."""

from __future__ import annotations

import dataclasses
import os

from vdgraph.node import Input, Invalid, Node, Output

from vdgraph_video.ops.images import DEFAULT_MAX_IMAGE_PIXELS, AlphaMode, Resample, image_header, read_image
from vdgraph_video.types import FRAMES
from vdgraph_video.video_io import input_path


@dataclasses.dataclass(frozen=True)
class ImageSize:
    """What validation knows of video.read_image's frames: their size after the resize, from the file's header."""

    height: int
    width: int


class ReadImage(Node):
    """Reads a PNG or JPEG (anything Pillow opens; a local path or an fsspec URL) into frames (1, H, W, 3) float
    in [0, 1]: one frame, so every frames input takes it (an image-to-video condition, a first frame).

    Grey and palette images become RGB. An image with an alpha channel has 4 channels where 3 are needed: it is
    refused (alpha "refuse", found from the file's header before anything runs when the path is a local file) or
    its alpha is dropped ("drop"). Resize to height x width (one side 0: keep the aspect ratio; both 0: as is)
    on the 8-bit pixels with Pillow (Lanczos by default), as diffusers' image processor resizes a PIL image, so a
    pipeline given the same file sees the same pixels. An image over max_pixels is refused before it is decoded.
    """

    id = "video.read_image"
    version = 1
    category = "input"
    inputs = [
        Input("path", str, reads_file=True, doc="a PNG or JPEG file (local or fsspec URL; relative to the workflow's folder)"),
        Input("height", int, default=0, ge=0, doc="resize to this height (0: keep / follow the width)"),
        Input("width", int, default=0, ge=0, doc="resize to this width (0: keep / follow the height)"),
        Input("resample", Resample, default="lanczos", doc="Pillow's resampling filter for the resize"),
        Input("alpha", AlphaMode, default="refuse", doc="an image with an alpha channel: refuse it, or drop the alpha"),
        Input("max_pixels", int, default=DEFAULT_MAX_IMAGE_PIXELS, ge=1,
              doc="the largest image to decode, width x height"),
    ]
    outputs = [Output("frames", FRAMES, doc="(1, H, W, 3) float in [0, 1]")]

    @classmethod
    def _header(cls, known):
        (path,) = known.take("path")
        if not path or not path.strip() or "://" in path or not os.path.isabs(path):
            return None  # relative paths are found against the workflow's folder at run time
        return image_header(path)

    @classmethod
    def check(cls, known):
        (path,) = known.take("path")
        if path is not None and not path.strip():
            yield Invalid("path", "the image path is empty", "name a PNG or JPEG file")
            return
        if path is not None and os.path.isabs(path) and not os.path.exists(path):
            yield Invalid("path", f"there is no file at {path!r}", "name an existing PNG or JPEG file")
            return
        header = cls._header(known)
        if header is not None and header.has_alpha and known.get("alpha") == "refuse":
            yield Invalid("path", f"the image has an alpha channel ({header.mode}: 4 channels where 3 are needed)",
                          "flatten it onto a background, or set alpha to 'drop'")
        if header is not None and known.get("max_pixels") is not None \
                and header.height * header.width > known["max_pixels"]:
            yield Invalid("path", f"the image is {header.width}x{header.height} pixels, over max_pixels "
                                  f"({known['max_pixels']:,})", "shrink it first or raise max_pixels")

    @classmethod
    def infer(cls, known):
        header = cls._header(known)
        height, width = known.take("height", "width")
        if header is None or height is None:
            return {}
        h, w = header.height, header.width
        if height > 0 or width > 0:
            h, w = (height if height > 0 else max(1, round(h * width / w)),
                    width if width > 0 else max(1, round(w * height / h)))
        return {"frames": ImageSize(h, w)}

    def run(self, ctx, path, height, width, resample, alpha, max_pixels):
        return read_image(input_path(ctx, path), height, width, resample, alpha, max_pixels)
