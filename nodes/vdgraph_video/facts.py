"""What validation can know about the video pack's values before anything runs (see `Node.infer`).

The facts are small frozen records read from configuration files only (never weights), so a workflow's step
ranges, VAE factors and sampler randomness are checked before a model is loaded.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

# Scheduler classes whose step draws random numbers (they need an rng to be reproducible).
STOCHASTIC_SCHEDULERS = frozenset({
    "DDPMScheduler", "EulerAncestralDiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "DPMSolverSDEScheduler",
})
# The classes behind video.scheduler's kinds (ops.schedulers) that are deterministic.
DETERMINISTIC_SCHEDULERS = frozenset({
    "DDIMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler", "PNDMScheduler", "LMSDiscreteScheduler",
    "HeunDiscreteScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler", "DPMSolverSinglestepScheduler",
})


@dataclasses.dataclass(frozen=True)
class VAEFacts:
    scale_factor: int
    """Pixels per latent pixel."""


@dataclasses.dataclass(frozen=True)
class SchedulerConfigFacts:
    class_name: str


@dataclasses.dataclass(frozen=True)
class SchedulerFacts:
    steps: int
    stochastic: bool | None
    """Whether a step draws random numbers (None: not known before running)."""
    class_name: str | None = None
    """The diffusers scheduler class (None: not known before running)."""


def step_index_problem(index: int | None, steps: int, port: str, allow_end: bool = False) -> str | None:
    """Why a Python-style step index (negative: from the end) does not name a step of a `steps`-step schedule
    (`allow_end`: the index one past the last step is fine, as a slice end), or None when it does."""
    if index is None:
        return None
    resolved = index + steps if index < 0 else index
    if 0 <= resolved < steps or (allow_end and resolved == steps):
        return None
    where = f"{-index - 1} steps from the end" if index < 0 else f"step {index}"
    return f"{port} = {index} ({where}) is outside a schedule of {steps} steps"


def stochastic_class(class_name: str) -> bool | None:
    if class_name in STOCHASTIC_SCHEDULERS:
        return True
    return False if class_name in DETERMINISTIC_SCHEDULERS else None


def model_facts(model: str) -> dict[str, Any]:
    """{"vae": VAEFacts, "scheduler_config": SchedulerConfigFacts} for a local model folder or a built-in model
    that is a plain folder, from its config files; {} when the model is elsewhere (a URL, a hub id, a built-in
    that is built on first use) or the configs cannot be read: then the run decides."""
    folder = _local_folder(model)
    if folder is None:
        return {}
    facts: dict[str, Any] = {}
    vae = read_json_dict(os.path.join(folder, "vae", "config.json"))
    blocks = vae.get("block_out_channels") if vae else None
    if isinstance(blocks, list) and blocks:
        facts["vae"] = VAEFacts(2 ** (len(blocks) - 1))
    scheduler = read_json_dict(os.path.join(folder, "scheduler", "scheduler_config.json"))
    if scheduler and isinstance(scheduler.get("_class_name"), str):
        facts["scheduler_config"] = SchedulerConfigFacts(scheduler["_class_name"])
    from vdgraph_video.loading_sdxl import sdxl_model_facts
    from vdgraph_video.loading_svd import svd_model_facts

    layout = unet_layout_facts(folder)
    if layout is not None:
        facts["unet"] = layout
    facts.update(svd_model_facts(folder))
    facts.update(sdxl_model_facts(folder))
    return facts


def _local_folder(model: str) -> str | None:
    if not model or "://" in model:
        return None
    if os.path.isdir(model):
        return model
    from importlib.metadata import entry_points

    from vdgraph_video.loading import MODEL_GROUP

    for entry in entry_points(group=MODEL_GROUP, name=model):
        try:  # only a plain path attribute: a callable may build the model, which validation must not do
            target = entry.load()
        except Exception:
            return None
        if isinstance(target, (str, os.PathLike)) and os.path.isdir(target):
            return os.fspath(target)
    return None


def single_model_config(model: str, subfolder: str) -> dict | None:
    """The config.json of a model saved on its own (a ControlNet, a motion adapter) for validation: in the folder
    `model` names, or in its pipeline folder's `subfolder`/ (as loading.single_model_folder finds it); None when
    the model is not a local folder or has no readable config."""
    found = single_model_config_folder(model, subfolder)
    return found[1] if found is not None else None


def single_model_config_folder(model: str, subfolder: str) -> tuple[str, dict] | None:
    """(folder, config) as single_model_config finds them: the folder holding the config.json, for validation
    that reads files saved beside it (a motion adapter's text route)."""
    folder = _local_folder(model)
    if folder is None:
        return None
    for candidate in (folder, os.path.join(folder, subfolder)):
        config = read_json_dict(os.path.join(candidate, "config.json"))
        if config is not None:
            return candidate, config
    return None


def read_json_dict(path: str) -> dict | None:
    """The JSON object in a file, or None when it cannot be read, is not JSON or is not an object (validation and
    folder detection read configs this way and never raise)."""
    try:
        with open(path, "rb") as handle:
            value = json.loads(handle.read())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


# The config keys that fix where a UNet takes residuals and of what shape: a ControlNet must agree on all of them.
RESIDUAL_LAYOUT_KEYS = ("in_channels", "block_out_channels", "layers_per_block", "down_block_types",
                        "cross_attention_dim")


@dataclasses.dataclass(frozen=True)
class ResidualLayoutFacts:
    """The residual layout of a UNet or a ControlNet, from its config: ((key, value), ...) for RESIDUAL_LAYOUT_KEYS."""

    layout: tuple[tuple[str, Any], ...]

    @classmethod
    def from_config(cls, config: dict | None) -> ResidualLayoutFacts | None:
        if not config or any(key not in config for key in RESIDUAL_LAYOUT_KEYS):
            return None
        return cls(tuple((key, _frozen(config[key])) for key in RESIDUAL_LAYOUT_KEYS))

    def differences(self, other: ResidualLayoutFacts) -> list[str]:
        mine, theirs = dict(self.layout), dict(other.layout)
        return [f"{key} {theirs[key]} vs {mine[key]}" for key in mine if mine[key] != theirs[key]]


@dataclasses.dataclass(frozen=True)
class FramesFacts:
    """What validation knows of a frames value (F, H, W, 3): at most `max_count` frames, `height` x `width`
    pixels; None where it is only known at run time (e.g. a video shorter than the frames asked for)."""

    max_count: int | None = None
    height: int | None = None
    width: int | None = None

    def resized(self, height: int | None, width: int | None) -> FramesFacts:
        """These frames resized as video.read_video resizes (both sides given: that size; one: the aspect
        ratio decides, unknown here; none: as they are)."""
        if height and width:
            return dataclasses.replace(self, height=height, width=width)
        if height or width:
            return dataclasses.replace(self, height=None, width=None)
        return self


@dataclasses.dataclass(frozen=True)
class LatentsFacts:
    """What validation knows of latents (B, C, F, h, w): F frames for an image of height x width pixels."""

    frames: int | None = None
    height: int | None = None
    width: int | None = None


@dataclasses.dataclass(frozen=True)
class UNetFacts(ResidualLayoutFacts):
    """A 2-D UNet's residual layout plus the channels it predicts (fewer than it takes for image-conditioned
    UNets such as InstructPix2Pix's: the image latents ride along on the input channels), and the condition
    frames of the ControlNets attached to it (video.apply_controlnet), for checks where the latents are known."""

    out_channels: int | None = None
    conditions: tuple[FramesFacts | None, ...] = ()
    added_conditions: str | None = None
    """The config's addition_embed_type: "text_time" for SDXL (pooled text embedding and size time ids)."""

    @property
    def is_sdxl(self) -> bool:
        return self.added_conditions == "text_time"


def condition_problems(unet: Any, latents: Any) -> list[tuple[str, str]]:
    """(message, hint) for every ControlNet condition whose frame count or size cannot fit the latents."""
    if not isinstance(unet, UNetFacts) or not isinstance(latents, LatentsFacts):
        return []
    found = []
    for k, condition in enumerate(unet.conditions):
        if condition is None:
            continue
        if condition.max_count is not None and latents.frames is not None and condition.max_count < latents.frames:
            found.append((f"ControlNet {k + 1}'s condition has at most {condition.max_count} frames but the latents "
                          f"have {latents.frames}", "give one condition image per frame: read as many frames of "
                                                    "the control video as are denoised, or ask for fewer frames"))
        sizes = (condition.height, condition.width, latents.height, latents.width)
        if None not in sizes and sizes[:2] != sizes[2:]:
            found.append((f"ControlNet {k + 1}'s condition frames are {sizes[0]}x{sizes[1]} pixels but the latents "
                          f"are for {sizes[2]}x{sizes[3]}", "resize the control video to the video's height and "
                                                            "width (video.read_video's height and width)"))
    return found


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def unet_layout_facts(model: str) -> UNetFacts | None:
    """The residual layout of a model folder's 2-D UNet (None for a 3-D UNet or when validation cannot read it)."""
    folder = _local_folder(model)
    config = read_json_dict(os.path.join(folder, "unet", "config.json")) if folder else None
    if config and config.get("_class_name", "UNet2DConditionModel") != "UNet2DConditionModel":
        return None
    layout = ResidualLayoutFacts.from_config(config)
    if layout is None:
        return None
    out = config.get("out_channels", dict(layout.layout)["in_channels"])
    added = config.get("addition_embed_type")
    return UNetFacts(layout.layout, out if isinstance(out, int) else None,
                     added_conditions=added if isinstance(added, str) else None)
