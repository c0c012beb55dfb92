"""The 2-D UNet's text add-embedding, restored in a motion UNet (AnimateDiff) built from it.

A UNet2DConditionModel with `addition_embed_type: "text"` (shapes-64's UNet, for one) adds
`add_embedding(encoder_hidden_states)` (a TextTimeEmbedding: attention pooling over every text token) to its time
embedding, so the caption reaches every ResNet block as a global scale/shift. diffusers' `UNetMotionModel` knows only
"text_time": `from_unet2d` does not carry the add-embedding over and its forward ignores "text", so inflated, such an
image model silently loses conditioning it was trained with.

`restore_text_embedding(model, unet)` gives it back without copying diffusers' forward: the motion UNet keeps a
frozen copy of the 2-D UNet's `add_embedding` (an image weight, under the 2-D UNet's name), a forward pre-hook on the
motion UNet computes `add_embedding(encoder_hidden_states)` once per call, and forward pre-hooks on its down, mid and
up blocks add it to the time embedding (`temb`) each block receives. UNet2DConditionModel adds it before anything
else reads the time embedding; the motion UNet repeats the time embedding per frame (repeat_interleave) before the
blocks, so adding the per-frame copies there is the same elementwise sum, value for value: with one text state per
frame, every frame's ResNets see exactly the 2-D UNet's embedding. The motion UNet takes one text state per frame,
(B*F, L, D) (AnimateDiffPipeline repeats the clip's state over its frames; prompt travel gives each frame its own):
each frame's add-embedding is computed from its own state.
"""

from __future__ import annotations

import copy

import torch

HOOKED = "_vdgraph_text_embedding"  # attribute marking a motion UNet whose add-embedding is restored


class _TextEmbeddingRoute:
    """The hooks: the motion UNet's pre-hook computes the per-frame add-embedding, the blocks' pre-hooks add it to
    their `temb`. Bound methods of one object, so a deep copy of the UNet copies the route with it."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.current: torch.Tensor | None = None  # (B*F, D) during a forward call

    def before_model(self, module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]  # (B, C, F, H, W)
        states = args[2] if len(args) > 2 else kwargs.get("encoder_hidden_states")  # (B*F or B, L, D)
        if states is None:
            raise ValueError("this motion UNet's image model conditions every block on the text (addition_embed_type "
                             "'text'): pass encoder_hidden_states")
        if isinstance(states, tuple):  # (text, image embeds) when an IP-adapter projection is on
            states = states[0]
        batch, frames = sample.shape[0], sample.shape[2]
        if states.shape[0] != batch * frames:  # the motion UNet's cross-attention takes one state per frame too
            raise ValueError(f"encoder_hidden_states has {states.shape[0]} rows for {batch} clips of {frames} frames: "
                             f"give one text state per frame ({batch * frames} rows, the clip's state repeated "
                             "over its frames as AnimateDiffPipeline does)")
        extra = module.add_embedding(states)  # (B*F, D)
        self.current = extra
        return None

    def after_model(self, module, args, output):
        self.current = None
        return None

    def before_block(self, module, args, kwargs):
        extra = self.current
        if extra is None:  # the block called on its own, outside the motion UNet's forward
            return None
        if "temb" in kwargs:
            temb = kwargs["temb"]  # (B*F, D)
            assert temb.shape == extra.shape, f"time embedding {tuple(temb.shape)} vs text {tuple(extra.shape)}"
            return args, {**kwargs, "temb": temb + extra.to(temb.dtype)}
        temb = args[1]  # the mid block takes (hidden_states, temb, ...)
        assert temb.shape == extra.shape, f"time embedding {tuple(temb.shape)} vs text {tuple(extra.shape)}"
        return (args[0], temb + extra.to(temb.dtype), *args[2:]), kwargs


def restore_text_embedding(model: torch.nn.Module, unet: torch.nn.Module) -> torch.nn.Module:
    """Give `model` (UNetMotionModel.from_unet2d(unet, ...)) the 2-D `unet`'s text add-embedding, frozen, and the
    hooks that add it to every block's time embedding; returns `model`. A UNet without addition_embed_type "text"
    leaves `model` exactly as diffusers built it (no hook, no module)."""
    if getattr(unet.config, "addition_embed_type", None) != "text":
        return model
    assert not hasattr(model, HOOKED), "the text add-embedding is already restored on this motion UNet"
    assert getattr(unet.config, "time_embedding_act_fn", None) is None, (
        "a 2-D UNet with time_embedding_act_fn applies it after the add-embedding: not supported here")
    model.add_embedding = copy.deepcopy(unet.add_embedding).requires_grad_(False)  # an image weight: frozen
    route = _TextEmbeddingRoute(model)
    model.register_forward_pre_hook(route.before_model, with_kwargs=True)
    model.register_forward_hook(route.after_model)
    for block in (*model.down_blocks, model.mid_block, *model.up_blocks):
        if block is not None:
            block.register_forward_pre_hook(route.before_block, with_kwargs=True)
    setattr(model, HOOKED, route)
    return model
