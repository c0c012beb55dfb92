"""The runtime values that travel over the video pack's links: model handles, conditioning, random state.

Handles are frozen: a node that "changes" a model returns a new handle (for example with one more attention patch)
and leaves the loaded module alone. `__vdgraph_nbytes__` tells the engine's memory cache what a value costs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import weakref
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import torch

from vdgraph.modules import module_tensors

# Per loaded module, facts that never change after loading (modules are not mutated), computed once.
_NBYTES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ATTENTION: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def module_nbytes(module: torch.nn.Module) -> int:
    """Bytes held by a module's parameters and buffers (cached per module)."""
    if module not in _NBYTES:
        parameters, buffers = module_tensors(module)
        _NBYTES[module] = sum(t.numel() * t.element_size() for t in (*parameters, *buffers))
    return _NBYTES[module]


def attention_layers(module: torch.nn.Module) -> dict[str, Any]:
    """{processor name (as in diffusers' `attn_processors`): attention layer} of a model, cached per module."""
    if module not in _ATTENTION:
        _ATTENTION[module] = {f"{name}.processor": sub for name, sub in module.named_modules()
                              if name and hasattr(sub, "get_processor") and hasattr(sub, "set_processor")}
    return _ATTENTION[module]


def tensor_nbytes(*tensors: torch.Tensor | None) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


class AttentionPatch(Protocol):
    """Something that swaps attention processors of a UNet for the duration of a call.

    `processors(module, current, batch_chunks)` gets the module, the {name: processor} mapping in force and the
    number of clips each model call stacks along its batch (decided by the denoise loop, see `UNetHandle.patched`),
    and returns the full mapping to install; it must not touch the module itself.
    """

    def processors(self, module: torch.nn.Module, current: Mapping[str, Any], batch_chunks: int) -> dict[str, Any]: ...


@contextlib.contextmanager
def patched_module(module: torch.nn.Module, patches: tuple[AttentionPatch, ...],
                   batch_chunks: int) -> Iterator[torch.nn.Module]:
    """Install the patches' attention processors on `module`; the saved ones are restored in `finally`.

    `batch_chunks` is how many clips every model call inside the context stacks along its batch (the guider's
    chunks times the batch: 2 with classifier-free guidance, 1 without, 3 for InstructPix2Pix). Only the denoise
    loop knows it, so it says it here and the patches build their processors for it. Works on the attention layers
    directly (what diffusers' set_attn_processor does, without walking the module tree on every call).
    """
    assert batch_chunks >= 1, f"batch_chunks (clips per model call) must be >= 1, got {batch_chunks}"
    if not patches:
        yield module
        return
    layers = attention_layers(module)
    saved = {name: layer.processor for name, layer in layers.items()}
    wanted: dict[str, Any] = dict(saved)
    for patch in patches:
        wanted = patch.processors(module, wanted, batch_chunks)
    try:
        for name, layer in layers.items():
            if wanted[name] is not saved[name]:
                layer.set_processor(wanted[name])
        yield module
    finally:
        for name, layer in layers.items():
            if layer.processor is not saved[name]:
                layer.set_processor(saved[name])


@dataclasses.dataclass(frozen=True, eq=False)
class ControlNetHandle:
    """A loaded diffusers ControlNetModel (never mutated after loading)."""

    module: torch.nn.Module

    def __vdgraph_nbytes__(self) -> int:
        return module_nbytes(self.module)


@dataclasses.dataclass(frozen=True, eq=False)
class ControlAttachment:
    """One ControlNet attached to a UNet value: its condition frames and when and how strongly it applies.

    `condition` is (F, 3, H, W) float in [0, 1] (one image per frame, the layout the ControlNet takes); it applies
    at step i of n when not (i / n < start or (i + 1) / n > end), as diffusers' control_guidance_start/end;
    `guess_mode` runs it on the prompt chunk only; `share_attention` installs the UNet's attention patches on the
    ControlNet too (diffusers' Text2Video-Zero ControlNet recipe), else it attends per frame.
    """

    controlnet: ControlNetHandle
    condition: torch.Tensor  # (F, 3, H, W)
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0
    guess_mode: bool = False
    share_attention: bool = True

    def keep(self, index: int, steps: int) -> float:
        """1.0 when this ControlNet applies at step `index` of `steps`, else 0.0 (diffusers' controlnet_keep)."""
        return 1.0 - float(index / steps < self.start or (index + 1) / steps > self.end)

    def __vdgraph_nbytes__(self) -> int:
        return tensor_nbytes(self.condition)


@dataclasses.dataclass(frozen=True, eq=False)
class UNetHandle:
    """A loaded UNet (never mutated after loading) plus the attention patches and ControlNets to apply while it
    runs."""

    module: torch.nn.Module
    patches: tuple[AttentionPatch, ...] = ()
    controls: tuple[ControlAttachment, ...] = ()

    @property
    def is_3d(self) -> bool:
        """True for a video UNet taking (B, C, F, H, W) input (diffusers UNet3DConditionModel)."""
        return type(self.module).__name__ == "UNet3DConditionModel"

    @property
    def in_channels(self) -> int:
        return int(self.module.config.in_channels)

    @property
    def family(self) -> str:
        """The key of this UNet's model-family adapter (`vdgraph_video.families.FAMILIES`): its model class."""
        return type(self.module).__name__

    def with_patch(self, patch: AttentionPatch) -> UNetHandle:
        """A new handle with `patch` appended; this handle and the module are untouched."""
        return dataclasses.replace(self, patches=self.patches + (patch,))

    def with_control(self, control: ControlAttachment) -> UNetHandle:
        """A new handle with one more ControlNet; this handle and the modules are untouched."""
        return dataclasses.replace(self, controls=self.controls + (control,))

    def patched(self, batch_chunks: int):
        """The UNet module with this handle's attention patches installed (see `patched_module`)."""
        return patched_module(self.module, self.patches, batch_chunks)

    def __vdgraph_nbytes__(self) -> int:
        return module_nbytes(self.module) + sum(c.__vdgraph_nbytes__() for c in self.controls)


@dataclasses.dataclass(frozen=True, eq=False)
class VAEHandle:
    """A loaded diffusers AutoencoderKL."""

    module: torch.nn.Module

    @property
    def scale_factor(self) -> int:
        """Pixels per latent pixel (2 ** (number of blocks - 1), as diffusers computes it)."""
        return 2 ** (len(self.module.config.block_out_channels) - 1)

    @property
    def scaling_factor(self) -> float:
        return float(self.module.config.scaling_factor)

    def __vdgraph_nbytes__(self) -> int:
        return module_nbytes(self.module)


@dataclasses.dataclass(frozen=True, eq=False)
class TextEncoderHandle:
    """A CLIP-style text encoder and its tokenizer."""

    module: torch.nn.Module
    tokenizer: Any

    @property
    def max_length(self) -> int:
        return int(self.tokenizer.model_max_length)

    def encode(self, prompt: str, negative_prompt: str, device: torch.device, truncate: bool = False) -> Conditioning:
        """The conditioning of a prompt and a negative prompt, as StableDiffusionPipeline.encode_prompt computes
        it (a model family with other text encoders subclasses this handle and encodes its own way)."""
        from vdgraph_video.ops.text import encode_text

        return Conditioning(cond=encode_text(self.module, self.tokenizer, prompt, device, truncate),
                            uncond=encode_text(self.module, self.tokenizer, negative_prompt, device, truncate))

    def __vdgraph_nbytes__(self) -> int:
        return module_nbytes(self.module)


@dataclasses.dataclass(frozen=True)
class SchedulerConfig:
    """The scheduler a model was trained with: its diffusers class name and config mapping."""

    class_name: str
    config: Mapping[str, Any]

    def __vdgraph_nbytes__(self) -> int:
        return 4096


@dataclasses.dataclass(frozen=True, eq=False)
class Conditioning:
    """Text conditioning: `cond` (B, L, D) for the prompt and `uncond` (B, L, D) for the negative prompt
    (per-frame (B, F, L, D) from prompt travel).

    Models with a pooled text embedding besides the sequence (SDXL: the projected output of its second text
    encoder) carry it in `pooled` (B, K) for the prompt and `uncond_pooled` (B, K) for the negative prompt; both
    are None for models without one. The guider arranges them per chunk as it arranges the embeddings.
    """

    cond: torch.Tensor
    uncond: torch.Tensor
    pooled: torch.Tensor | None = None
    uncond_pooled: torch.Tensor | None = None

    def __post_init__(self) -> None:
        assert self.cond.shape == self.uncond.shape, (
            f"prompt embeddings {tuple(self.cond.shape)} and negative embeddings {tuple(self.uncond.shape)} differ"
        )
        assert (self.pooled is None) == (self.uncond_pooled is None), "give both pooled embeddings or neither"
        if self.pooled is not None:
            assert self.pooled.ndim == 2 and self.pooled.shape == self.uncond_pooled.shape, (
                f"pooled embeddings must be (B, K) for both prompts, got {tuple(self.pooled.shape)} and "
                f"{tuple(self.uncond_pooled.shape)}")

    def __vdgraph_nbytes__(self) -> int:
        return tensor_nbytes(self.cond, self.uncond, self.pooled, self.uncond_pooled)


@dataclasses.dataclass(frozen=True)
class TranslationFlow:
    """A global translation per frame: frame k moves by (strength_x, strength_y) * frame_ids[k]; `mode` is
    "reference" or "resolution_aware" (see `vdgraph_video.ops.motion`)."""

    frame_ids: tuple[int, ...]
    strength_x: float
    strength_y: float
    mode: str

    def __vdgraph_nbytes__(self) -> int:
        return 64 + 8 * len(self.frame_ids)


def generator_from_state(state: torch.Tensor) -> torch.Generator:
    """A fresh CPU generator positioned at `state` (the RNG value itself is not touched)."""
    generator = torch.Generator(device="cpu")
    generator.set_state(state)
    return generator


def seeded_state(seed: int) -> torch.Tensor:
    """The RNG value of a CPU generator seeded with `seed` (as `torch.Generator().manual_seed(seed)`)."""
    return torch.Generator(device="cpu").manual_seed(int(seed)).get_state()
