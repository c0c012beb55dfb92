"""Where nodes run: resolving `--device` and `--dtype` into torch objects (both go into every cache key)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from vdgraph.errors import VdgraphError

if TYPE_CHECKING:
    import torch

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DTYPES = {"float32": "float32", "fp32": "float32", "float": "float32", "float16": "float16", "fp16": "float16",
          "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}


class DeviceError(VdgraphError):
    """The requested device or dtype cannot be used here."""


def resolve_device(spec: Any = "auto") -> torch.device:
    """`auto` is the first CUDA device when there is one, else the CPU; `cuda[:N]` must exist."""
    import torch

    if isinstance(spec, torch.device):
        spec = str(spec)
    text = str(spec).strip().lower()
    if not _DEVICE.match(text):
        raise DeviceError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N")
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {text!r} was requested but CUDA is not available here (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {text!r} does not exist: {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("device 'mps' was requested but MPS is not available here")
    return device


def resolve_dtype(spec: Any, device: torch.device) -> torch.dtype:
    """float16 on CUDA and float32 elsewhere unless asked; names like fp16 / bf16 are accepted."""
    import torch

    if isinstance(spec, torch.dtype):
        return spec
    if spec is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    name = DTYPES.get(str(spec).strip().lower().removeprefix("torch."))
    if name is None:
        raise DeviceError(f"unknown dtype {spec!r}: use float32, float16 or bfloat16")
    return getattr(torch, name)
