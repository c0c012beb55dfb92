"""ControlNet: loading a diffusers ControlNetModel folder and attaching ControlNets to a UNet value.

A ControlNet is a new part of the denoise loop, not a branch in it: `video.apply_controlnet` returns a UNet value
that carries the ControlNet with its condition frames (`UNetHandle.controls`); the 2-D and motion-UNet model-family adapters
(`vdgraph_video.families.sd`, `.motion_unet`, sharing `.common.control_kwargs`) compute its residuals per frame every
step.
"""

from __future__ import annotations

import dataclasses
import os

import torch

from vdgraph.context import RunContext
from vdgraph.filekeys import search_dirs
from vdgraph.node import Input, Invalid, Node, Output

from vdgraph_video.facts import FramesFacts, ResidualLayoutFacts, UNetFacts, single_model_config
from vdgraph_video.loading import (
    ModelNotFound,
    _loading,
    finite,
    local_model,
    placed,
    resolve_model,
    single_model_folder,
    variant_input,
    variant_problems,
)
from vdgraph_video.types import CONTROLNET, FRAMES, UNET
from vdgraph_video.values import ControlAttachment, ControlNetHandle, UNetHandle

CONTROLNET_CLASS = "ControlNetModel"


def load_controlnet(folder: str, device: torch.device, dtype: torch.dtype, variant: str = "") -> ControlNetHandle:
    """A ControlNetModel from safetensors weights, in eval mode on `device` in `dtype`."""
    import diffusers

    folder = single_model_folder(folder, "controlnet", CONTROLNET_CLASS)
    with _loading(folder):
        module = diffusers.ControlNetModel.from_pretrained(folder, torch_dtype=dtype, use_safetensors=True,
                                                           variant=variant or None)
    finite(placed(module, device), folder)
    return ControlNetHandle(module)


def controlnet_layout_facts(model: str) -> ResidualLayoutFacts | None:
    config = single_model_config(model, "controlnet")
    return ResidualLayoutFacts.from_config(config) if config is not None else None


class LoadControlNet(Node):
    """Loads a diffusers ControlNetModel folder (its config.json and safetensors weights, or a pipeline folder's
    controlnet/ subfolder): a local folder, an fsspec URL, a built-in name or a cached hub id, found as
    video.load_model finds models. Data, never code: a config naming custom code (`auto_map`, a `_class_name`
    other than ControlNetModel) or pickle-only weights is refused. Validation reads the config (never the weights)
    so video.apply_controlnet can check the block layout against the UNet's before anything runs. With
    allow_empty, an empty name gives no ControlNet (video.apply_controlnet then returns the UNet as it is), so a
    workflow can make one optional."""

    id = "video.load_controlnet"
    version = 1
    category = "model"
    inputs = [
        Input("model", str, model_path=True, reads_file=True, doc="a ControlNetModel folder, an fsspec URL, a built-in name or a hub id (owner/name)"),
        variant_input(),
        Input("allow_empty", bool, default=False, doc="an empty name means no ControlNet (the output is empty)"),
    ]
    outputs = [Output("controlnet", CONTROLNET, doc="the ControlNet, to attach with video.apply_controlnet "
                                                    "(empty for an empty name with allow_empty)")]

    @classmethod
    def check(cls, known):
        yield from variant_problems(known)
        (model,) = known.take("model")
        if model is not None and not model.strip() and not known.get("allow_empty"):
            yield Invalid("model", "the ControlNet name is empty", "give a ControlNetModel folder (a diffusers "
                                                                   "folder with config.json and safetensors weights)")

    @classmethod
    def infer(cls, known):
        (model,) = known.take("model")
        if model is not None and not model.strip() and known.get("allow_empty"):
            return {"controlnet": None}  # no ControlNet: video.apply_controlnet passes the UNet on as it is
        layout = controlnet_layout_facts(model) if model else None
        return {"controlnet": layout} if layout is not None else {}

    @classmethod
    def locate_file(cls, port, name, workflow_dir):
        return local_model(name, search_dirs(workflow_dir), kind="controlnet")

    def run(self, ctx: RunContext, model: str, variant: str, allow_empty: bool) -> ControlNetHandle | None:
        if allow_empty and not model.strip():
            return None
        search = ctx.search_dirs()
        with resolve_model(model, search, variant, kind="controlnet") as folder:
            if os.path.isfile(folder):
                raise ModelNotFound(f"{folder!r} is a single file; video.load_controlnet loads diffusers-format "
                                    "ControlNet folders (config.json and diffusion_pytorch_model.safetensors)")
            return load_controlnet(folder, ctx.device, ctx.dtype, variant)


class ApplyControlNet(Node):
    """Attaches a ControlNet to a UNet value and returns a new one (the input value is never changed); chain the
    node to attach several (their residuals are summed, as diffusers' MultiControlNetModel).

    `condition` holds one condition image per frame, (F, H, W, 3) in [0, 1] at the video's size (canny edges, a
    pose skeleton, depth, or frames as they are). Every step, video.denoise runs the ControlNet per frame on the
    same folded input as the UNet and adds scale x its residuals, while the step lies in [start, end) as
    fractions of the steps (diffusers' control_guidance_start/end: step i of n applies unless i/n < start or
    (i+1)/n > end). guess_mode runs it on the prompt's chunk only, with diffusers' guess-mode scales.
    cross_frame: the UNet's attention patches (video.cross_frame_attention, linked before or after this node)
    are installed on the ControlNet too, as diffusers' Text2Video-Zero ControlNet recipe does; off, the
    ControlNet attends per frame (ControlVideo). 2-D UNets and AnimateDiff motion UNets (video.apply_motion_adapter,
    linked before or after this node: the ControlNet sees every frame of the clip alone, as diffusers'
    AnimateDiffControlNetPipeline); a 3-D UNet is refused. An empty `controlnet` (video.load_controlnet with
    allow_empty and no name) returns the UNet as it is.

    The condition must have one image per frame at the video's size: where validation knows both (the frame
    count and size from workflow inputs), a mismatch is reported before anything runs; otherwise video.denoise
    names the ControlNet, the counts and sizes.
    """

    id = "video.apply_controlnet"
    version = 1
    category = "conditioning"
    inputs = [
        Input("unet", UNET, doc="the model to attach the ControlNet to (not modified)"),
        Input("controlnet", CONTROLNET, optional=True,
              doc="from video.load_controlnet (empty: no ControlNet, the UNet is returned as it is)"),
        Input("condition", FRAMES, doc="(F, H, W, 3) condition images in [0, 1], one per frame"),
        Input("scale", float, default=1.0, ge=0.0, doc="multiplier of the ControlNet's residuals"),
        Input("start", float, default=0.0, ge=0.0, le=1.0, doc="fraction of the steps where the ControlNet starts"),
        Input("end", float, default=1.0, ge=0.0, le=1.0, doc="fraction of the steps where the ControlNet stops"),
        Input("guess_mode", bool, default=False, doc="run on the prompt's guidance chunk only (diffusers' guess mode)"),
        Input("cross_frame", bool, default=True, doc="apply the UNet's attention patches to the ControlNet too"),
    ]
    outputs = [Output("unet", UNET, doc="the model with the ControlNet attached")]

    @classmethod
    def check(cls, known):
        start, end = known.take("start", "end")
        if start is not None and start >= end:
            yield Invalid("end", f"end ({end}) must be after start ({start})",
                          "the ControlNet applies while start <= step fraction < end: raise end or lower start")
        unet, controlnet = known.get("unet"), known.get("controlnet")
        if isinstance(unet, ResidualLayoutFacts) and isinstance(controlnet, ResidualLayoutFacts):
            differences = unet.differences(controlnet)
            if differences:
                yield Invalid("controlnet", "the ControlNet's block layout does not match the UNet's ("
                              + "; ".join(differences) + ", ControlNet vs UNet)",
                              "use a ControlNet trained for this base model (ControlNetModel.from_unet of it)")

    @classmethod
    def infer(cls, known):
        """The UNet's facts, with this ControlNet's condition frames added (video.denoise checks them against the
        latents); an empty ControlNet adds nothing."""
        unet, controlnet = known.get("unet"), known.get("controlnet", "linked")
        if controlnet is None:  # optional and left unlinked: the UNet is returned as it is
            return {"unet": unet} if unet is not None else {}
        condition = known.get("condition")
        condition = condition if isinstance(condition, FramesFacts) else None
        if not isinstance(unet, UNetFacts):
            unet = UNetFacts(unet.layout if isinstance(unet, ResidualLayoutFacts) else ())
        return {"unet": dataclasses.replace(unet, conditions=unet.conditions + (condition,))}

    def run(self, ctx: RunContext, unet: UNetHandle, controlnet: ControlNetHandle | None, condition: torch.Tensor,
            scale: float, start: float, end: float, guess_mode: bool, cross_frame: bool) -> UNetHandle:
        if start >= end:
            raise ValueError(f"end ({end}) must be after start ({start})")
        if controlnet is None:
            return unet
        if unet.is_3d:
            raise ValueError("a 3-D video UNet takes no ControlNet residuals: use a 2-D UNet")
        _check_layout(unet.module.config, controlnet.module.config)
        assert condition.ndim == 4 and condition.shape[-1] == 3, (
            f"condition must be (F, H, W, 3) frames, got {tuple(condition.shape)}")
        images = condition.permute(0, 3, 1, 2).contiguous()  # (F, 3, H, W), the ControlNet's layout
        return unet.with_control(ControlAttachment(controlnet, images, scale, start, end, guess_mode, cross_frame))


# UNetMotionModel.from_unet2d renames the 2-D UNet's down blocks; the residuals they take are those of the 2-D blocks.
_MOTION_DOWN_BLOCKS = {"CrossAttnDownBlockMotion": "CrossAttnDownBlock2D", "DownBlockMotion": "DownBlock2D"}


def _residual_config(config) -> dict:
    """A UNet's config with a motion UNet's down blocks named as the 2-D blocks it was inflated from."""
    config = dict(config)
    if "down_block_types" in config:
        config["down_block_types"] = [_MOTION_DOWN_BLOCKS.get(b, b) for b in config["down_block_types"]]
    return config


def _check_layout(unet_config, controlnet_config) -> None:
    mine = ResidualLayoutFacts.from_config(_residual_config(unet_config))
    theirs = ResidualLayoutFacts.from_config(dict(controlnet_config))
    if mine is not None and theirs is not None and mine.differences(theirs):
        raise ValueError("the ControlNet's block layout does not match the UNet's ("
                         + "; ".join(mine.differences(theirs)) + ", ControlNet vs UNet): use a ControlNet trained "
                         "for this base model")
