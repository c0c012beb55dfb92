"""LoRA: merging one or more LoRA files into a UNet and a text encoder, as new model values."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from vdgraph.context import RunContext
from vdgraph.errors import short_repr
from vdgraph.models_folder import find_model, model_roots
from vdgraph.node import Input, Invalid, Node, Output

from vdgraph_video.loading import finite
from vdgraph_video.ops.lora import LoraError, merged_copy, parse_lora
from vdgraph_video.types import TEXT_ENCODER, UNET
from vdgraph_video.values import TextEncoderHandle, UNetHandle

def lora_path(name: str, workflow_dir: str | None) -> str | None:
    """The file a LoRA name means: a path (absolute, relative to the working directory, then to the workflow's
    folder) or a name in the models folder's lora/ (`style` or `style.safetensors`); None when none exists."""
    candidates = [name] + ([os.path.join(workflow_dir, name)] if workflow_dir and "://" not in workflow_dir
                           and not os.path.isabs(name) else [])
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    return find_model(name, "lora")


def _weights(files: list[str], weight: list[float]) -> list[float]:
    return list(weight) * len(files) if len(weight) == 1 else list(weight)


class ApplyLora(Node):
    """Merges LoRA files into the UNet and the text encoder and returns new model values: the modules received
    are never changed (the new ones share every weight a LoRA does not touch, so only changed layers take memory).

    Each file (safetensors; diffusers/PEFT `lora_A`/`lora_B` or kohya `lora_down`/`lora_up` + `alpha` keys, for
    SD 1.x/2.x and SDXL models, whose second text encoder is `lora_te2_` / `text_encoder_2.`) changes each layer it names by `weight * alpha / rank * (up @ down)` (alpha = rank when
    the file stores none), applied in the order given. A file is a path (absolute, or relative to the working
    directory or the workflow's folder) or a name in the models folder's lora/ (`vdgraph models --kind lora`).
    The cache key holds each file's content hash with its weight, however the names arrive (a literal, a workflow
    input or a link): editing a file runs the node again.
    """

    id = "video.apply_lora"
    version = 1
    category = "model"
    inputs = [
        Input("unet", UNET, doc="the UNet to merge into (unchanged; a new one is returned)"),
        Input("text_encoder", TEXT_ENCODER, doc="the text encoder to merge into (unchanged; a new one is returned)"),
        Input("lora", list[str], reads_file=True, model_path=True, doc="LoRA .safetensors files: paths, or names in the models folder's lora/"),
        Input("weight", list[float], default=[1.0],
              doc="how strongly each file applies (one number for all files, or one per file)"),
    ]
    outputs = [
        Output("unet", UNET, doc="the UNet with the LoRA layers merged"),
        Output("text_encoder", TEXT_ENCODER, doc="the text encoder with the LoRA layers merged"),
    ]

    @classmethod
    def check(cls, known):
        files, weight = known.take("lora", "weight")
        if files is None:
            return
        if not files:
            yield Invalid("lora", "no LoRA file is named", "list one or more .safetensors files")
            return
        if len(weight) not in (1, len(files)):
            yield Invalid("weight", f"{len(weight)} weights for {len(files)} LoRA files",
                          "give one weight for all files, or one per file")
        for name in files:
            if not name.strip():
                yield Invalid("lora", "a LoRA file name is empty", "name a .safetensors file")
            elif os.path.isabs(name) and not os.path.isfile(name):
                yield Invalid("lora", f"there is no LoRA file at {short_repr(name)}", "check the path")
            elif os.path.isfile(name) and not name.endswith(".safetensors"):
                yield Invalid("lora", f"{short_repr(name)} is not a .safetensors file",
                              "vdgraph loads LoRA weights only from .safetensors (a pickle can run code)")

    @classmethod
    def locate_file(cls, port: str, name: str, workflow_dir: str | None) -> str | None:
        return lora_path(name, workflow_dir)

    def run(self, ctx: RunContext, unet: UNetHandle, text_encoder: TextEncoderHandle, lora: list[str],
            weight: list[float]) -> dict[str, Any]:
        from safetensors.torch import load_file

        if len(weight) not in (1, len(lora)):
            raise ValueError(f"port 'weight': {len(weight)} weights for {len(lora)} LoRA files; give one for all "
                             "or one per file")
        modules = {"unet": unet.module, "text_encoder": text_encoder.module}
        if getattr(text_encoder, "module_2", None) is not None:  # SDXL's second text encoder
            modules["text_encoder_2"] = text_encoder.module_2
        merged: dict[str, list] = {target: [] for target in modules}
        for name, w in zip(lora, _weights(lora, weight)):
            path = lora_path(name, ctx.workflow_dir)
            if path is None:
                raise FileNotFoundError(f"port 'lora': no LoRA file {name!r} (not a file, not in the models "
                                        f"folder's lora/ of {os.pathsep.join(model_roots())})")
            if not path.endswith(".safetensors"):
                raise LoraError(f"port 'lora': {path!r} is not a .safetensors file")
            weights = load_file(path)
            finite(weights, path)
            for layer in parse_lora(weights, modules, path):
                merged[layer.target].append((layer, float(w)))
        try:
            new_unet = dataclasses.replace(unet, module=merged_copy(unet.module, merged["unet"])) \
                if merged["unet"] else unet
            changed = {field: merged_copy(modules[target], merged[target])
                       for target, field in (("text_encoder", "module"), ("text_encoder_2", "module_2"))
                       if merged.get(target)}
        except LoraError as exc:  # the merge overflowed: name what was merged
            raise LoraError(f"port 'lora' ({', '.join(lora)} at weights {list(_weights(lora, weight))}): {exc}") \
                from exc
        new_text = dataclasses.replace(text_encoder, **changed) if changed else text_encoder  # keeps its kind (SDXL's)
        return {"unet": new_unet, "text_encoder": new_text}
