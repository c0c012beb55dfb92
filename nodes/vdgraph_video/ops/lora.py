"""LoRA: reading LoRA files in the diffusers/PEFT and kohya key layouts and merging them into copies of modules.

A LoRA layer adds `scale * (up @ down)` to one weight, `down` (r, in) and `up` (out, r) (for a convolution
`down` is (r, in, kh, kw) and `up` (out, r, 1, 1)); `scale` is alpha / r when the file stores an alpha for the
layer, else 1 (what diffusers assumes for a file without alphas). Merging with a user weight w gives
`W + (w * scale) * (up @ down)`, computed in float32 and cast back to W's dtype.

Key layouts understood (one file may hold UNet and text-encoder layers):
- PEFT / diffusers: `unet.<module>.lora_A.weight` (down), `unet.<module>.lora_B.weight` (up), likewise with
  `text_encoder.`; the older diffusers spelling `<module>.lora.down.weight` / `.lora.up.weight`; an optional
  `<module>.alpha`; keys without a `unet.` / `text_encoder.` prefix are looked up in the UNet, then the text
  encoder.
- kohya (sd-scripts): `lora_unet_<module with _ for .>.lora_down.weight`, `.lora_up.weight` and `.alpha`;
  `lora_te_` (or `lora_te1_`) for the text encoder, `lora_te2_` for SDXL's second one (`text_encoder_2.` in the
  PEFT layout).

The merged module is a new module: the input module is not touched, and it shares every tensor the LoRA does
not change with the input (only the changed weights take new memory).
"""

from __future__ import annotations

import copy
import dataclasses
import re

import torch

PEFT = re.compile(r"^(?P<name>.+?)\.(?:lora_A|lora_B|lora\.down|lora\.up|alpha)(?:\.weight)?$")
KOHYA = re.compile(r"^lora_(?P<part>unet|te[12]?)_(?P<name>.+?)\.(?:lora_down\.weight|lora_up\.weight|alpha)$")
TARGETS = ("unet", "text_encoder", "text_encoder_2")
KOHYA_TARGETS = {"unet": "unet", "te": "text_encoder", "te1": "text_encoder", "te2": "text_encoder_2"}


class LoraError(ValueError):
    """A LoRA file vdgraph cannot apply: an unknown layout, a layer that matches no module, a shape mismatch."""


@dataclasses.dataclass(frozen=True)
class LoraLayer:
    """One layer of a LoRA: the module it changes (a name in `target`'s named_modules) and its factors."""

    target: str  # "unet", "text_encoder" or "text_encoder_2" (SDXL's second encoder)
    module: str
    down: torch.Tensor  # (r, in) or (r, in, kh, kw)
    up: torch.Tensor  # (out, r) or (out, r, 1, 1)
    alpha: float | None = None

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def scale(self) -> float:
        return 1.0 if self.alpha is None else self.alpha / self.rank

    def delta(self, weight: float) -> torch.Tensor:
        """(weight * scale) * (up @ down), float32, in the shape of the module's weight."""
        up, down = self.up.float(), self.down.float()
        product = up.flatten(1) @ down.flatten(1)  # (out, in * kh * kw)
        shape = (up.shape[0], *down.shape[1:])
        return (weight * self.scale) * product.reshape(shape)


def _weighted_modules(module: torch.nn.Module) -> dict[str, str]:
    """{name a LoRA may use: the module's own name} of the layers with a 2-D or 4-D weight. transformers 5 dropped
    CLIPTextModel's `text_model.` level, which LoRA files still spell: it is accepted as an alias."""
    names = [name for name, sub in module.named_modules()
             if name and isinstance(getattr(sub, "weight", None), torch.Tensor) and sub.weight.ndim in (2, 4)]
    table = {name: name for name in names}
    if hasattr(module, "config") and getattr(module.config, "model_type", "") == "clip_text_model" \
            and not any(name.startswith("text_model.") for name in names):
        table.update({f"text_model.{name}": name for name in names})
    return table


def parse_lora(state: dict[str, torch.Tensor], modules: dict[str, torch.nn.Module], shown: str) -> list[LoraLayer]:
    """The layers of a LoRA state dict, matched to `modules` ({"unet": module, "text_encoder": module}, and
    "text_encoder_2" for SDXL).

    Every key must belong to a layer of a known layout and every layer must match a module with a weight; else
    a LoraError says which keys and why (a LoRA for another architecture matches nothing)."""
    names = {target: _weighted_modules(module) for target, module in modules.items()}
    kohya_names = {target: {alias.replace(".", "_"): name for alias, name in table.items()}
                   for target, table in names.items()}
    parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown: list[str] = []
    unmatched: list[str] = []
    for key, tensor in state.items():
        found = _locate(key, names, kohya_names)
        if found is None:
            (unknown if not (PEFT.match(key) or KOHYA.match(key)) else unmatched).append(key)
            continue
        target, module, role = found
        parts.setdefault((target, module), {})[role] = tensor
    if unknown:
        raise LoraError(f"{shown}: {len(unknown)} key(s) are not LoRA keys of the diffusers/PEFT or kohya layouts "
                        f"(first: {unknown[0]!r}); vdgraph reads lora_A/lora_B, lora.down/lora.up and kohya's "
                        "lora_down/lora_up with alpha")
    if unmatched:
        raise LoraError(f"{shown}: {len(unmatched)} LoRA key(s) match no layer of the UNet or text encoder "
                        f"(first: {unmatched[0]!r}); the LoRA was made for another model architecture")
    layers = []
    for (target, module), found in sorted(parts.items()):
        if "down" not in found or "up" not in found:
            missing = "down (lora_A)" if "down" not in found else "up (lora_B)"
            raise LoraError(f"{shown}: the layer {target}.{module} has no {missing} matrix")
        alpha = found.get("alpha")
        layer = LoraLayer(target, module, found["down"], found["up"],
                          None if alpha is None else float(alpha.float().reshape(-1)[0]))
        weight = modules[target].get_submodule(module).weight
        made = (layer.up.shape[0], *layer.down.shape[1:])  # the shape of up @ down
        if layer.up.shape[1] != layer.rank or tuple(made) != tuple(weight.shape):
            raise LoraError(f"{shown}: the layer {target}.{module} has factors {tuple(layer.up.shape)} @ "
                            f"{tuple(layer.down.shape)}, which do not make the module's weight "
                            f"{tuple(weight.shape)}; the LoRA was made for another model size")
        layers.append(layer)
    if not layers:
        raise LoraError(f"{shown} holds no LoRA layers")
    return layers


def _locate(key: str, names: dict[str, dict], kohya_names: dict[str, dict]) -> tuple[str, str, str] | None:
    """(target, module name, role: down/up/alpha) of a key, or None when it matches no module."""
    match = KOHYA.match(key)
    if match:
        target = KOHYA_TARGETS[match.group("part")]
        module = kohya_names.get(target, {}).get(match.group("name"))
        role = "down" if key.endswith("lora_down.weight") else "up" if key.endswith("lora_up.weight") else "alpha"
        return (target, module, role) if module is not None else None
    match = PEFT.match(key)
    if not match:
        return None
    suffix = key[len(match.group("name")) + 1:]
    role = {"lora_A.weight": "down", "lora_A": "down", "lora.down.weight": "down", "lora_B.weight": "up",
            "lora_B": "up", "lora.up.weight": "up", "alpha": "alpha"}.get(suffix)
    name = match.group("name").removeprefix("base_model.model.")
    for target in TARGETS:
        if name.startswith(target + ".") and target in names:
            module = names[target].get(name[len(target) + 1:])
            return (target, module, role) if module is not None and role else None
    for target in TARGETS:  # no prefix: the UNet first, then the text encoder
        if target in names and name in names[target] and role:
            return target, names[target][name], role
    return None


def merged_copy(module: torch.nn.Module, layers: list[tuple[LoraLayer, float]]) -> torch.nn.Module:
    """A copy of `module` with each (layer, weight) merged into its weight, in order; `module` is unchanged.

    The copy shares every parameter and buffer the layers do not touch with `module`; a changed weight is a new
    Parameter (with the original's requires_grad flag) holding W + sum of the layers' deltas, each added in
    float32 and cast back to W's dtype, layer by layer."""
    changed: dict[str, torch.Tensor] = {}
    for layer, weight in layers:
        name = f"{layer.module}.weight"
        current = changed.get(name, module.get_submodule(layer.module).weight.detach())
        changed[name] = (current.float() + layer.delta(weight).to(current.device)).to(current.dtype)
    for name, tensor in changed.items():  # a finite file can still overflow: a huge alpha, or fp16's 65504
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise LoraError(f"merging gives {bad} NaN or infinite value(s) in {name} ({tensor.dtype}): a LoRA's "
                            "weight or alpha is too large for this model; lower the weight, or load the model in "
                            "float32")
    memo: dict[int, object] = {}
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if name in changed:
            memo[id(tensor)] = torch.nn.Parameter(changed[name], requires_grad=tensor.requires_grad)
        else:
            memo[id(tensor)] = tensor  # shared, not copied
    return copy.deepcopy(module, memo)
