"""AnimateDiff motion adapters: loading a diffusers MotionAdapter folder and inflating a 2-D UNet with it.

`video.apply_motion_adapter` returns a new UNet value holding diffusers' `UNetMotionModel.from_unet2d(unet,
adapter)`: a copy of the 2-D UNet's weights with the adapter's temporal motion modules inserted after every
resnet/attention pair (the input UNet value and its module are never changed). The denoise loop runs it through its
own family adapter (`vdgraph_video.families.motion_unet`); FreeNoise context windows travel on the value
(`MotionUNetHandle.windows`, set by video.context_windows).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
from typing import Any

import torch

from vdgraph.context import RunContext
from vdgraph.errors import short_repr
from vdgraph.filekeys import search_dirs
from vdgraph.node import Input, Invalid, Node, Output

from vdgraph_video.facts import ResidualLayoutFacts, UNetFacts, single_model_config_folder
from vdgraph_video.loading import (
    ModelFolderError,
    _loading,
    finite,
    local_model,
    placed,
    resolve_model,
    single_model_folder,
    variant_input,
    variant_problems,
)
from vdgraph_video.ops.motion_text import (
    TEXT_ROUTE_CONFIG,
    TEXT_ROUTE_WEIGHTS,
    MotionTextRoute,
    attach_text_route,
    restore_text_embedding,
    route_files,
    route_mismatch,
)
from vdgraph_video.types import MOTION_ADAPTER, UNET
from vdgraph_video.values import UNetHandle, module_nbytes

MOTION_ADAPTER_CLASS = "MotionAdapter"
DEFAULT_MAX_FRAMES = 32  # MotionAdapter's default motion_max_seq_length


@dataclasses.dataclass(frozen=True, eq=False)
class MotionAdapterHandle:
    """A loaded diffusers MotionAdapter (never mutated after loading) and, when its folder has one, vdgraph's text
    route into its motion modules (vdgraph_video.ops.motion_text.MotionTextRoute)."""

    module: torch.nn.Module
    text_route: MotionTextRoute | None = None

    @property
    def max_frames(self) -> int:
        return int(self.module.config.motion_max_seq_length)

    def __vdgraph_nbytes__(self) -> int:
        return module_nbytes(self.module) + (module_nbytes(self.text_route) if self.text_route is not None else 0)


@dataclasses.dataclass(frozen=True)
class ContextWindows:
    """FreeNoise's sliding windows over frames in every motion module (diffusers' enable_free_noise): windows of
    `length` frames every `stride` frames, the overlaps blended with `weighting` ("flat", "pyramid",
    "delayed_reverse_sawtooth"); `split_frames` > 0 adds diffusers' FreeNoise split inference
    (enable_free_noise_split_inference), which bounds activation memory."""

    length: int
    stride: int
    weighting: str
    split_frames: int = 0  # > 0: spatial layers see at most this many frames per call (split inference)
    split_pixels: int = 256  # with split_frames: motion modules see at most this many pixels' sequences per call


@dataclasses.dataclass(frozen=True, eq=False)
class MotionUNetHandle(UNetHandle):
    """A UNet inflated with a motion adapter (diffusers UNetMotionModel), plus its FreeNoise context windows."""

    max_frames: int = DEFAULT_MAX_FRAMES
    windows: ContextWindows | None = None

    def with_windows(self, windows: ContextWindows | None) -> MotionUNetHandle:
        return dataclasses.replace(self, windows=windows)


@dataclasses.dataclass(frozen=True)
class MotionAdapterFacts:
    """What validation reads from a MotionAdapter's config.json: its block layout and its frame window; and from
    its text route's files, when it has them: the width of the text states the route reads (`text_dim`, which must
    be the UNet's cross_attention_dim) or why the route is broken (`route_problem`)."""

    block_out_channels: tuple[int, ...]
    layers_per_block: tuple[int, ...]
    max_frames: int
    text_dim: int | None = None
    route_problem: str | None = None

    @classmethod
    def from_config(cls, config: dict | None) -> MotionAdapterFacts | None:
        if not config:
            return None
        blocks = config.get("block_out_channels", (320, 640, 1280, 1280))
        layers = config.get("motion_layers_per_block", 2)
        frames = config.get("motion_max_seq_length", DEFAULT_MAX_FRAMES)
        if not isinstance(blocks, (list, tuple)) or not isinstance(frames, int):
            return None
        layers = tuple(layers) if isinstance(layers, (list, tuple)) else (layers,) * len(blocks)
        return cls(tuple(blocks), layers, frames)


@dataclasses.dataclass(frozen=True)
class MotionUNetFacts(UNetFacts):
    """A motion UNet's residual layout (its 2-D UNet's, for ControlNets), the condition frames of attached
    ControlNets (as UNetFacts), plus its frame window and whether context windows are on.

    `frames_problem(frames)` is asked by nodes that set the frame count (video.noise) before anything runs."""

    max_frames: int = DEFAULT_MAX_FRAMES
    window: int = 0  # FreeNoise context length (0: no context windows)

    def frames_problem(self, frames: int | None) -> tuple[str, str] | None:
        if frames is None:
            return None
        if self.window and frames < self.window:
            return (f"{frames} frames are fewer than the context windows' length of {self.window} frames",
                    f"ask for at least {self.window} frames, or shorten the windows (context_length; 0 turns them "
                    "off)")
        if self.window or frames <= self.max_frames:
            return None
        return (f"{frames} frames are more than the motion module's window of {self.max_frames} frames "
                "(its positional embeddings end there)",
                f"ask for at most {self.max_frames} frames, or render in context windows (video.context_windows, "
                "the workflow's context_length input)")


def layout_differences(unet_config: dict, adapter: MotionAdapterFacts) -> list[str]:
    """Why a motion adapter does not fit a 2-D UNet (the checks of UNetMotionModel.from_unet2d, and the channel
    widths its motion modules are built for), as `what adapter vs UNet` strings; [] when it fits."""
    blocks = tuple(unet_config.get("block_out_channels", ()))
    layers = unet_config.get("layers_per_block", 2)
    layers = tuple(layers) if isinstance(layers, (list, tuple)) else (layers,) * len(blocks)
    differences = []
    if len(adapter.block_out_channels) != len(blocks):
        differences.append(f"{len(adapter.block_out_channels)} blocks vs {len(blocks)}")
    elif adapter.block_out_channels != blocks:
        differences.append(f"block_out_channels {list(adapter.block_out_channels)} vs {list(blocks)}")
    if len(adapter.block_out_channels) == len(blocks) and adapter.layers_per_block != layers:
        differences.append(f"layers per block {list(adapter.layers_per_block)} vs {list(layers)}")
    return differences


def load_motion_adapter(folder: str, device: torch.device, dtype: torch.dtype, variant: str = "") -> MotionAdapterHandle:
    """A MotionAdapter from safetensors weights, and its text route when the folder has one, in eval mode on
    `device` in `dtype`."""
    from diffusers import MotionAdapter

    folder = single_model_folder(folder, "motion_adapter", MOTION_ADAPTER_CLASS)
    try:  # read once, checked (route_files) before a tensor is made
        route = MotionTextRoute.load(folder)
    except ValueError as exc:  # its own message names the file: not cut short as _loading's are
        raise ModelFolderError(str(exc)) from exc
    with _loading(folder):
        module = MotionAdapter.from_pretrained(folder, torch_dtype=dtype, use_safetensors=True,
                                               variant=variant or None)
        mismatch = route_mismatch(route, module) if route is not None else None
        if mismatch:
            raise ValueError(f"its {TEXT_ROUTE_CONFIG} belongs to another motion adapter ({mismatch})")
    finite(placed(module, device), folder)
    if route is not None:
        finite(placed(route.to(dtype=dtype), device), os.path.join(folder, TEXT_ROUTE_WEIGHTS))
    return MotionAdapterHandle(module, route)


def adapter_facts(model: str) -> MotionAdapterFacts | None:
    found = single_model_config_folder(model, "motion_adapter")
    facts = MotionAdapterFacts.from_config(found[1]) if found is not None else None
    if facts is None:
        return None
    route, problem = route_files(found[0])  # the loader's own checks, on the JSON and the safetensors header
    if route is not None:
        mismatch = _route_mismatch_on_meta(json.dumps(found[1], sort_keys=True), json.dumps(route, sort_keys=True))
        if mismatch:
            problem = f"{os.path.join(found[0], TEXT_ROUTE_CONFIG)} belongs to another motion adapter ({mismatch})"
    return dataclasses.replace(facts, text_dim=route["text_dim"] if route else None, route_problem=problem)


@functools.lru_cache(maxsize=32)
def _route_mismatch_on_meta(config_json: str, route_json: str) -> str | None:
    """route_mismatch (the loader's check) for a route config and the MotionAdapter a config.json describes (both
    as JSON text: the memo's key), both built on the meta device (no weight is allocated or read: 0.06 s for SD
    1.5's adapter, once per pair of configs: video.load_motion_adapter's check and infer both ask); None also when
    diffusers cannot build the adapter from the config (the loader then says why)."""
    from diffusers import MotionAdapter

    route = json.loads(route_json)
    try:
        with torch.device("meta"):
            module = MotionAdapter.from_config(json.loads(config_json))
            skeleton = MotionTextRoute(route["text_dim"], route["width"], route["channels"])
    except Exception:  # a config diffusers rejects: loading reports it, naming the folder
        return None
    return route_mismatch(skeleton, module)


def text_dim_problem(unet_config: dict, text_dim: int | None) -> str | None:
    """Why a text route reading `text_dim`-wide states cannot read the text states of a UNet with this config
    (their width is its cross_attention_dim), or None."""
    width = unet_config.get("cross_attention_dim")
    if text_dim is None or not isinstance(width, int) or width == text_dim:
        return None
    return (f"the motion adapter's text route reads text states {text_dim} wide but the UNet's text states "
            f"(cross_attention_dim) are {width} wide")


def inflate(unet: UNetHandle, adapter: MotionAdapterHandle) -> MotionUNetHandle:
    """A new motion UNet value: UNetMotionModel.from_unet2d of the UNet's module (copied, never changed) with the
    adapter's motion modules (and a copy of its text route, when it has one); the UNet value's attention patches and
    ControlNets carry over."""
    from diffusers import UNetMotionModel

    differences = layout_differences(dict(unet.module.config), MotionAdapterFacts.from_config(
        dict(adapter.module.config)))
    if differences:
        raise ValueError("port 'motion_adapter': the motion adapter's block layout does not match the UNet's (" + "; ".join(differences)
                         + ", adapter vs UNet): use a motion adapter trained for this base model")
    text_problem = text_dim_problem(dict(unet.module.config),
                                    adapter.text_route.text_dim if adapter.text_route is not None else None)
    if text_problem:
        raise ValueError(f"port 'motion_adapter': {text_problem}: {TEXT_DIM_HINT}")
    module = restore_text_embedding(UNetMotionModel.from_unet2d(unet.module, adapter.module), unet.module).eval()
    if adapter.text_route is not None:  # a copy: the adapter value is never changed
        module = attach_text_route(module, copy.deepcopy(adapter.text_route))
    return MotionUNetHandle(module=module, patches=unet.patches, controls=unet.controls,
                            max_frames=adapter.max_frames)


class LoadMotionAdapter(Node):
    """Loads a diffusers MotionAdapter folder (AnimateDiff's temporal motion modules: its config.json and
    safetensors weights, or a folder's motion_adapter/ subfolder): a local folder, an fsspec URL, a built-in name
    (entry points `vdgraph.models`) or a cached hub id, found as video.load_model finds models. A folder may also
    hold vdgraph's text route into the motion modules (`text_route.json` + `text_route.safetensors`, as the built-in
    shapes-64-motion does): it is loaded with the adapter and video.apply_motion_adapter attaches it, so the motion
    modules read the prompt. Data, never code: a config naming custom code (`auto_map`, a `_class_name` other than
    MotionAdapter) or pickle-only weights is refused."""

    id = "video.load_motion_adapter"
    version = 1
    category = "model"
    inputs = [
        Input("model", str, model_path=True, reads_file=True, doc="a MotionAdapter folder, an fsspec URL, a built-in name or a hub id (owner/name)"),
        variant_input(),
    ]
    outputs = [Output("motion_adapter", MOTION_ADAPTER, doc="the motion modules, for video.apply_motion_adapter")]

    @classmethod
    def check(cls, known):
        yield from variant_problems(known)
        (model,) = known.take("model")
        if model is not None and not model.strip():
            yield Invalid("model", "the motion adapter name is empty",
                          "give a MotionAdapter folder (config.json and safetensors weights), a built-in name or a "
                          "hub id such as guoyww/animatediff-motion-adapter-v1-5-2")
        elif model is not None and os.path.isabs(model) and "://" not in model and not os.path.isdir(model):
            yield Invalid("model", f"there is no motion adapter folder at {short_repr(model)}",
                          "give a MotionAdapter folder, an fsspec URL, a built-in name or a hub id")
        elif model:
            facts = adapter_facts(model)
            if facts is not None and facts.route_problem:
                yield Invalid("model", f"its text route is broken: {facts.route_problem}",
                              "fix or re-save the route's two files, or remove both (the adapter then runs "
                              "without a text route)")

    @classmethod
    def infer(cls, known):
        (model,) = known.take("model")
        facts = adapter_facts(model) if model else None
        return {"motion_adapter": facts} if facts is not None else {}

    @classmethod
    def locate_file(cls, port, name, workflow_dir):
        return local_model(name, search_dirs(workflow_dir), kind="motion")

    def run(self, ctx: RunContext, model: str, variant: str) -> MotionAdapterHandle:
        search = ctx.search_dirs()
        with resolve_model(model, search, variant, kind="motion") as folder:
            return load_motion_adapter(folder, ctx.device, ctx.dtype, variant)


TEXT_DIM_HINT = ("use a motion adapter whose text route was trained with this base model's text encoder, or "
                 "remove its text_route.json and text_route.safetensors to run it without the route")
SDXL_MOTION = ("the UNet is SDXL's, and the motion UNet family gives it none of SDXL's added conditions (pooled "
               "text embedding, size time ids) yet", "inflate an SD 1.x / 2.x model's UNet")


class ApplyMotionAdapter(Node):
    """Inflates a 2-D UNet with a motion adapter (AnimateDiff): returns a new UNet value holding diffusers'
    UNetMotionModel.from_unet2d of it; the input UNet value and its module are never changed. The result takes
    (B, C, F, H, W) latents: its spatial layers see every frame alone, its motion modules attend over the frames at
    every pixel, up to the adapter's window (motion_max_seq_length frames; longer videos need
    video.context_windows). An adapter with a text route (vdgraph's, see video.load_motion_adapter) also feeds every
    motion module the prompt of each frame. A motion adapter whose block layout (block count, channel widths, layers
    per block) does not match the UNet is a problem on `motion_adapter`."""

    id = "video.apply_motion_adapter"
    version = 1
    category = "model"
    inputs = [
        Input("unet", UNET, doc="a 2-D UNet (UNet2DConditionModel) from video.load_model (not modified)"),
        Input("motion_adapter", MOTION_ADAPTER, doc="from video.load_motion_adapter"),
    ]
    outputs = [Output("unet", UNET, doc="the inflated motion UNet (UNetMotionModel)")]

    @classmethod
    def check(cls, known):
        unet, adapter = known.get("unet"), known.get("motion_adapter")
        if isinstance(unet, UNetFacts) and unet.is_sdxl:
            yield Invalid("unet", SDXL_MOTION[0], SDXL_MOTION[1])
            return
        if isinstance(unet, ResidualLayoutFacts) and isinstance(adapter, MotionAdapterFacts):
            differences = layout_differences(dict(unet.layout), adapter)
            if differences:
                yield Invalid("motion_adapter", "the motion adapter's block layout does not match the UNet's ("
                              + "; ".join(differences) + ", adapter vs UNet)",
                              "use a motion adapter trained for this base model (its block_out_channels and "
                              "motion_layers_per_block are the UNet's block_out_channels and layers_per_block)")
            text_problem = text_dim_problem(dict(unet.layout), adapter.text_dim)
            if text_problem:
                yield Invalid("motion_adapter", text_problem, TEXT_DIM_HINT)

    @classmethod
    def infer(cls, known):
        unet, adapter = known.get("unet"), known.get("motion_adapter")
        if isinstance(unet, ResidualLayoutFacts) and isinstance(adapter, MotionAdapterFacts):
            known_2d = unet if isinstance(unet, UNetFacts) else UNetFacts(unet.layout)
            return {"unet": MotionUNetFacts(unet.layout, known_2d.out_channels, known_2d.conditions,
                                            max_frames=adapter.max_frames)}
        return {}

    def run(self, ctx: RunContext, unet: UNetHandle, motion_adapter: MotionAdapterHandle) -> MotionUNetHandle:
        if unet.family == "SDXL":
            raise ValueError(f"port 'unet': {SDXL_MOTION[0]}; {SDXL_MOTION[1]}")
        if type(unet.module).__name__ != "UNet2DConditionModel":
            raise ValueError(f"a motion adapter inflates a 2-D UNet (UNet2DConditionModel), got "
                             f"{type(unet.module).__name__}: load an image model (e.g. shapes-64)")
        return inflate(unet, motion_adapter)


def windows_problem(length: Any, stride: Any, max_frames: int | None, weighting: Any = None
                    ) -> list[tuple[str, str, str]]:
    """(port, problem, hint) for FreeNoise window settings that cannot work."""
    problems = []
    if weighting == "delayed_reverse_sawtooth" and isinstance(length, int) and length % 2:
        problems.append(("context_length", f"the delayed_reverse_sawtooth weighting needs an even context_length, "
                         f"got {length} (diffusers' weights for an odd length have one entry too many, and its "
                         "FreeNoise fails on them)", f"use {length - 1} or {length + 1}, or another weighting"))
    if isinstance(length, int) and max_frames is not None and length > max_frames:
        problems.append(("context_length", f"context_length {length} is longer than the motion module's window of "
                         f"{max_frames} frames", f"use at most {max_frames} (usually the frames the adapter was "
                                                 "trained on, 16)"))
    if isinstance(length, int) and isinstance(stride, int) and stride > length:
        problems.append(("context_stride", f"context_stride {stride} is longer than context_length {length}: frames "
                         "between windows would never be denoised together", "use a stride of at most the length "
                                                                              "(a quarter of it is usual)"))
    return problems
