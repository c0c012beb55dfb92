"""Built-in models shipped inside this package, by name.

Why a plain dict of absolute paths: the engine's model loader resolves built-in names through it without
importing torch or diffusers here, and the folder loads offline with `from_pretrained(path)`.
"""

from __future__ import annotations

import pathlib

MODEL_DIR: pathlib.Path = pathlib.Path(__file__).resolve().parent / "model"
"""The trained shapes-64 pipeline folder (StableDiffusionPipeline layout, safetensors weights)."""

CONTROLNET_CANNY_DIR: pathlib.Path = pathlib.Path(__file__).resolve().parent / "controlnet_canny"
"""shapes-64's ControlNet on canny edges ("shapes-64-canny", a ControlNetModel folder; see train_controlnet.py)."""

BUILTIN_MODELS: dict[str, str] = {"shapes-64": str(MODEL_DIR), "shapes-64-canny": str(CONTROLNET_CANNY_DIR)}
"""Built-in model name -> absolute path of its diffusers folder."""


def shapes_64_3d_path() -> str:
    """The built-in "shapes-64-3d" model: shapes-64's UNet inflated into a UNet3DConditionModel (TextToVideoSD
    layout; temporal layers untrained identities), built on first use from MODEL_DIR into the user cache
    ($VDGRAPH_CACHE_DIR/models, else ~/.cache/vdgraph/models); returns its folder. See vdgraph_shapes.inflate.

    Why built rather than shipped: it is the same weights rearranged, so shipping it would double the package.
    Why imported here lazily: this module stays free of torch for the engine's name lookup.
    """
    if not (MODEL_DIR / "model_index.json").is_file():
        raise FileNotFoundError(f"the built-in shapes-64 model is not at {MODEL_DIR} (train it with "
                                "`python -m vdgraph_shapes.train --out <that folder>`); shapes-64-3d is built from it")
    from vdgraph_shapes.inflate import cached_3d_model

    return cached_3d_model(MODEL_DIR, "shapes-64-3d")
