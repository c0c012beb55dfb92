"""Diffusers modules -> one state dict in the original Stable Diffusion single-file key layout (1.x, 2.x, SDXL).

The reverse of diffusers' single-file converters (convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint,
convert_ldm_clip_checkpoint), written for the tests: diffusers ships only the forward direction. Generic in the
number of blocks and layers per block, so a tiny random model converts too; `check_round_trip` runs diffusers'
forward converters on the result and demands the original tensors back.
"""

from __future__ import annotations

import torch

RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
          ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection"))
VAE_ATTENTION = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))


def _rename(key: str, pairs) -> str:
    for new, old in pairs:
        key = key.replace(f".{new}.", f".{old}.")
    return key


def unet_to_original(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    layers = unet.config.layers_per_block
    out = {}
    for key, tensor in unet.state_dict().items():
        parts = key.split(".")
        if parts[0] == "time_embedding":
            key = key.replace("time_embedding.linear_1", "time_embed.0").replace("time_embedding.linear_2", "time_embed.2")
        elif parts[0] == "add_embedding":
            key = key.replace("add_embedding.linear_1", "label_emb.0.0").replace("add_embedding.linear_2", "label_emb.0.2")
        elif parts[0] == "conv_in":
            key = "input_blocks.0.0." + parts[-1]
        elif parts[0] == "conv_norm_out":
            key = "out.0." + parts[-1]
        elif parts[0] == "conv_out":
            key = "out.2." + parts[-1]
        elif parts[0] == "down_blocks":
            block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "downsamplers":  # down_blocks.i.downsamplers.0.conv.weight
                key = f"input_blocks.{(block + 1) * (layers + 1)}.0.op.{parts[-1]}"
            else:
                slot = 0 if kind == "resnets" else 1
                key = f"input_blocks.{1 + block * (layers + 1) + index}.{slot}.{rest}"
                key = _rename("." + key, RESNET)[1:] if slot == 0 else key
        elif parts[0] == "mid_block":
            kind, index, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            position = {("resnets", 0): 0, ("attentions", 0): 1, ("resnets", 1): 2}[(kind, index)]
            key = f"middle_block.{position}.{rest}"
            key = _rename("." + key, RESNET)[1:] if kind == "resnets" else key
        elif parts[0] == "up_blocks":
            block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "upsamplers":
                has_attention = hasattr(unet.up_blocks[block], "attentions")
                key = f"output_blocks.{block * (layers + 1) + layers}.{2 if has_attention else 1}.conv.{parts[-1]}"
            else:
                slot = 0 if kind == "resnets" else 1
                key = f"output_blocks.{block * (layers + 1) + index}.{slot}.{rest}"
                key = _rename("." + key, RESNET)[1:] if slot == 0 else key
        else:
            raise AssertionError(f"no original name for the UNet key {key!r}")
        out["model.diffusion_model." + key] = tensor
    return out


def vae_to_original(vae: torch.nn.Module) -> dict[str, torch.Tensor]:
    blocks = len(vae.config.up_block_types)
    out = {}
    for key, tensor in vae.state_dict().items():
        parts = key.split(".")
        if parts[1] == "down_blocks":  # encoder.down_blocks.i.resnets.j / downsamplers.0
            if parts[3] == "resnets":
                key = f"encoder.down.{parts[2]}.block.{parts[4]}." + ".".join(parts[5:])
            else:
                key = f"encoder.down.{parts[2]}.downsample." + ".".join(parts[5:])
        elif parts[1] == "up_blocks":
            original = blocks - 1 - int(parts[2])
            if parts[3] == "resnets":
                key = f"decoder.up.{original}.block.{parts[4]}." + ".".join(parts[5:])
            else:
                key = f"decoder.up.{original}.upsample." + ".".join(parts[5:])
        elif parts[1] == "mid_block":
            if parts[2] == "resnets":
                key = f"{parts[0]}.mid.block_{int(parts[3]) + 1}." + ".".join(parts[4:])
            else:
                key = _rename(f"{parts[0]}.mid.attn_1." + ".".join(parts[4:]), VAE_ATTENTION)
                if tensor.ndim == 2:  # the original attention projections are 1x1 convolutions
                    tensor = tensor[:, :, None, None]
        elif parts[1] == "conv_norm_out":
            key = f"{parts[0]}.norm_out.{parts[-1]}"
        key = key.replace(".conv_shortcut.", ".nin_shortcut.")
        out["first_stage_model." + key] = tensor
    return out


def clip_to_original(text_encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """SD 1.x: the transformers CLIP text model under cond_stage_model.transformer.text_model (transformers 5
    flattened CLIPTextModel, so its keys have no text_model. level of their own)."""
    out = {}
    for key, tensor in text_encoder.state_dict().items():
        key = key if key.startswith("text_model.") else "text_model." + key
        out["cond_stage_model.transformer." + key] = tensor
    return out


def sd1_checkpoint(unet, vae, text_encoder) -> dict[str, torch.Tensor]:
    return {**unet_to_original(unet), **vae_to_original(vae), **clip_to_original(text_encoder)}


def check_round_trip(checkpoint: dict[str, torch.Tensor], unet, vae) -> None:
    """diffusers' forward converters give back exactly the modules' tensors from `checkpoint`."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    for module, converted in ((unet, convert_ldm_unet_checkpoint(checkpoint, dict(unet.config))),
                              (vae, convert_ldm_vae_checkpoint(checkpoint, dict(vae.config)))):
        state = module.state_dict()
        assert converted.keys() == state.keys(), sorted(set(converted) ^ set(state))[:5]
        for key, tensor in state.items():
            assert torch.equal(converted[key].reshape(tensor.shape), tensor), key


OPEN_CLIP_LAYER = (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                   ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"))


def open_clip_to_original(text_encoder: torch.nn.Module,
                          prefix: str = "cond_stage_model.model.") -> dict[str, torch.Tensor]:
    """SD 2.x: the text encoder in OpenCLIP's layout under cond_stage_model.model (q, k and v stacked into one
    in_proj; a text_projection as SD 2 checkpoints carry, which the CLIPTextModel does not use). SDXL's second
    encoder (a CLIPTextModelWithProjection) goes under `prefix` conditioner.embedders.1.model. with its own
    projection, stored transposed (OpenCLIP multiplies x @ text_projection; diffusers' converter transposes it)."""
    state = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    out = {prefix + "token_embedding.weight": state["embeddings.token_embedding.weight"],
           prefix + "positional_embedding": state["embeddings.position_embedding.weight"],
           prefix + "ln_final.weight": state["final_layer_norm.weight"],
           prefix + "ln_final.bias": state["final_layer_norm.bias"]}
    width = state["final_layer_norm.weight"].shape[0]
    projection = state.get("text_projection.weight")
    out[prefix + "text_projection"] = torch.eye(width) if projection is None else projection.T.contiguous()
    for layer in range(text_encoder.config.num_hidden_layers):
        source, target = f"encoder.layers.{layer}.", f"{prefix}transformer.resblocks.{layer}."
        for kind in ("weight", "bias"):
            out[f"{target}attn.in_proj_{kind}"] = torch.cat(
                [state[f"{source}self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")])
            for new, old in OPEN_CLIP_LAYER:
                out[f"{target}{old}.{kind}"] = state[f"{source}{new}.{kind}"]
    return out


def sd2_checkpoint(unet, vae, text_encoder) -> dict[str, torch.Tensor]:
    return {**unet_to_original(unet), **vae_to_original(vae), **open_clip_to_original(text_encoder)}


def sdxl_checkpoint(unet, vae, text_encoder, text_encoder_2) -> dict[str, torch.Tensor]:
    """SDXL base: the UNet (its added embedding as label_emb) and VAE as SD's, the first text encoder (CLIP) under
    conditioner.embedders.0.transformer, the second (OpenCLIP with projection) under conditioner.embedders.1.model."""
    first = {k.replace("cond_stage_model.transformer.", "conditioner.embedders.0.transformer."): v
             for k, v in clip_to_original(text_encoder).items()}
    return {**unet_to_original(unet), **vae_to_original(vae), **first,
            **open_clip_to_original(text_encoder_2, "conditioner.embedders.1.model.")}
