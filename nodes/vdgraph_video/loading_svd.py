"""Stable Video Diffusion model folders (diffusers StableVideoDiffusionPipeline layout).

A folder is an SVD folder when its model_index.json names StableVideoDiffusionPipeline or its unet/config.json
names UNetSpatioTemporalConditionModel. Its components: unet/ (UNetSpatioTemporalConditionModel), vae/
(AutoencoderKLTemporalDecoder), image_encoder/ (transformers CLIPVisionModelWithProjection), feature_extractor/
(a CLIP image processor) and scheduler/ (EulerDiscreteScheduler in the released models).

The same rules as every model folder (`vdgraph_video.loading`): configs are data (no `auto_map`, only the
supported classes), weights only from safetensors, nothing is built before the whole folder is checked.
"""

from __future__ import annotations

import dataclasses
import os

import torch

from vdgraph.errors import short_repr

from vdgraph_video.facts import read_json_dict
from vdgraph_video.loading import (
    ModelFolderError,
    ModelNotFound,
    _check_weights,
    _loading,
    _no_transformers_progress_bar,
    check_scheduler_timesteps,
    finite,
    placed,
    read_component_configs,
)
from vdgraph_video.values import SchedulerConfig, UNetHandle, VAEHandle
from vdgraph_video.values_svd import ImageEncoderHandle

SVD_PIPELINE = "StableVideoDiffusionPipeline"
SVD_UNET = "UNetSpatioTemporalConditionModel"
SVD_SUBFOLDERS = ("unet", "vae", "image_encoder", "feature_extractor", "scheduler")
SVD_CONFIGS = {"unet": "config.json", "vae": "config.json", "image_encoder": "config.json",
               "feature_extractor": "preprocessor_config.json", "scheduler": "scheduler_config.json"}
SVD_CLASSES = {"unet": (SVD_UNET,), "vae": ("AutoencoderKLTemporalDecoder",)}
SVD_WEIGHTED = ("unet", "vae", "image_encoder")
IMAGE_ENCODER_ARCHITECTURES = ("CLIPVisionModelWithProjection",)
IMAGE_PROCESSORS = ("CLIPImageProcessor", "CLIPImageProcessorFast", "CLIPFeatureExtractor")


def is_svd_folder(folder: str) -> bool:
    """Whether `folder` holds a Stable Video Diffusion model (by model_index.json or unet/config.json)."""
    index = read_json_dict(os.path.join(folder, "model_index.json")) or {}
    if index.get("_class_name") == SVD_PIPELINE:
        return True
    unet = read_json_dict(os.path.join(folder, "unet", "config.json")) or {}
    return unet.get("_class_name") == SVD_UNET


def check_svd_folder_names(folder: str) -> None:
    """Refuse an SVD folder that lacks a component subfolder (cheap: looks at names only)."""
    missing = [sub for sub in SVD_SUBFOLDERS if not os.path.isdir(os.path.join(folder, sub))]
    if missing:
        raise ModelNotFound(f"{folder!r} is a Stable Video Diffusion folder but misses "
                            f"{', '.join(m + '/' for m in missing)}")


def check_svd_folder(folder: str) -> dict[str, dict]:
    """The checks of `check_model_folder` for an SVD folder; returns the component configs by subfolder."""
    check_svd_folder_names(folder)
    configs = read_component_configs(folder, SVD_SUBFOLDERS, SVD_CONFIGS, SVD_CLASSES, "Stable Video Diffusion")
    architectures = configs["image_encoder"].get("architectures") or list(IMAGE_ENCODER_ARCHITECTURES)
    if not isinstance(architectures, list) or any(a not in IMAGE_ENCODER_ARCHITECTURES for a in architectures):
        raise ModelFolderError(f"{os.path.join(folder, 'image_encoder', 'config.json')}: architectures "
                               f"{short_repr(architectures)} is not supported: expected CLIPVisionModelWithProjection")
    processor = configs["feature_extractor"].get("image_processor_type", "CLIPImageProcessor")
    if processor not in IMAGE_PROCESSORS:
        raise ModelFolderError(f"{os.path.join(folder, 'feature_extractor', 'preprocessor_config.json')}: "
                               f"image_processor_type {short_repr(processor)} is not supported: expected "
                               "CLIPImageProcessor")
    check_scheduler_timesteps(folder, configs["scheduler"])
    for sub in SVD_WEIGHTED:
        _check_weights(os.path.join(folder, sub))
    return configs


def load_svd_components(folder: str, device: torch.device, dtype: torch.dtype, variant: str = ""):
    """(UNetHandle, VAEHandle, ImageEncoderHandle, SchedulerConfig) from a checked SVD folder, in eval mode on
    `device` in `dtype` (the image processor is built by its CLIP class, never from code in the folder)."""
    import diffusers
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    configs = check_svd_folder(folder)
    weights = {"use_safetensors": True, "variant": variant or None}
    with _loading(os.path.join(folder, "unet")):
        unet = diffusers.UNetSpatioTemporalConditionModel.from_pretrained(folder, subfolder="unet",
                                                                          torch_dtype=dtype, **weights)
    with _loading(os.path.join(folder, "vae")):
        vae = diffusers.AutoencoderKLTemporalDecoder.from_pretrained(folder, subfolder="vae", torch_dtype=dtype,
                                                                     **weights)
    with _loading(os.path.join(folder, "image_encoder")), _no_transformers_progress_bar():
        encoder = CLIPVisionModelWithProjection.from_pretrained(os.path.join(folder, "image_encoder"), dtype=dtype,
                                                                trust_remote_code=False, **weights)
    with _loading(os.path.join(folder, "feature_extractor")):
        processor = CLIPImageProcessor.from_pretrained(os.path.join(folder, "feature_extractor"))
    for module, sub in ((unet, "unet"), (vae, "vae"), (encoder, "image_encoder")):
        finite(placed(module, device), os.path.join(folder, sub))
    scheduler_config = configs["scheduler"]
    class_name = scheduler_config.get("_class_name", "EulerDiscreteScheduler")
    config = {k: v for k, v in scheduler_config.items() if not k.startswith("_")}
    return (UNetHandle(unet), VAEHandle(vae), ImageEncoderHandle(encoder, processor),
            SchedulerConfig(class_name, config))


@dataclasses.dataclass(frozen=True)
class SpatioTemporalUNetFacts:
    """What validation knows of an SVD UNet from its config."""

    num_frames: int
    """The frame count the model was configured (trained) for: more frames are refused."""


@dataclasses.dataclass(frozen=True)
class NoTextEncoder:
    """What validation knows of the text_encoder output of an image-conditioned model: there is none."""

    model_class: str = SVD_PIPELINE


def svd_model_facts(folder: str) -> dict:
    """{"unet": SpatioTemporalUNetFacts, "text_encoder": NoTextEncoder} for an SVD folder, {} otherwise."""
    unet = svd_unet_facts(folder)
    return {} if unet is None else {"unet": unet, "text_encoder": NoTextEncoder()}


def svd_unet_facts(folder: str) -> SpatioTemporalUNetFacts | None:
    config = read_json_dict(os.path.join(folder, "unet", "config.json"))
    if not config or config.get("_class_name") != SVD_UNET:
        return None
    frames = config.get("num_frames", 25)
    return SpatioTemporalUNetFacts(frames) if isinstance(frames, int) and not isinstance(frames, bool) else None
