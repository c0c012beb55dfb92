"""Loading a model: the UNet, VAE, text encoder and scheduler config as separate typed values."""

from __future__ import annotations

import os

from vdgraph.errors import short_repr
from vdgraph.node import Input, Invalid, Node, Output

from vdgraph_video.facts import model_facts
from vdgraph_video.loading import ModelNotFound, check_folder, load_components, resolve_model
from vdgraph_video.loading_svd import is_svd_folder, load_svd_components
from vdgraph_video.types import IMAGE_ENCODER, SCHEDULER_CONFIG, TEXT_ENCODER, UNET, VAE


class LoadModel(Node):
    """Loads a diffusers-format text-to-image or text-to-video model.

    `model` is a local folder (absolute, relative to the working directory or to the workflow's folder), an
    fsspec URL of one (copied to a temporary folder first: a remote protocol in `model` is a request to fetch
    it), a built-in model name (entry-point group `vdgraph.models`) or a Hugging Face hub id (from the local cache,
    or downloaded when online); an empty name is an error. The UNet is a UNet2DConditionModel or a
    UNet3DConditionModel, chosen by unet/config.json. A model folder is data, never code: a folder whose configs
    name custom code (`auto_map`, another `_class_name`, a tokenizer_class that is not a transformers class) or
    whose weights are only pickles (.bin, .pt, .ckpt) is refused with the file and key, and a malformed config
    is named with its JSON error. Weights load only from safetensors, on the run's device in the run's dtype
    (float16 on CUDA, float32 on CPU by default), in eval mode with gradients off; no node changes them afterwards.

    A Stable Video Diffusion folder (StableVideoDiffusionPipeline layout) gives its UNetSpatioTemporalConditionModel,
    its AutoencoderKLTemporalDecoder and its CLIP image encoder (with the image processor) on `image_encoder`;
    `text_encoder` is then empty, as `image_encoder` is for text-conditioned models.
    """

    id = "video.load_model"
    version = 1
    category = "model"
    inputs = [
        Input("model", str, doc="a local folder, an fsspec URL, a built-in model name or a hub id (owner/name)"),
        Input("variant", str, default="", doc="weights variant, e.g. 'fp16' for *.fp16.safetensors ('': plain)"),
    ]
    outputs = [
        Output("unet", UNET, doc="the denoising UNet (2-D or 3-D)"),
        Output("vae", VAE, doc="the autoencoder between latents and frames"),
        Output("text_encoder", TEXT_ENCODER, doc="the text encoder and its tokenizer (empty for an image-to-video model)"),
        Output("scheduler_config", SCHEDULER_CONFIG, doc="the noise schedule the model was trained with"),
        Output("image_encoder", IMAGE_ENCODER, doc="the CLIP image encoder of an image-to-video model (Stable Video "
                                                   "Diffusion; empty for text-conditioned models)"),
    ]

    @classmethod
    def check(cls, known):
        (model,) = known.take("model")
        if model is not None and not model.strip():
            yield Invalid("model", "the model name is empty",
                          "give a model folder, an fsspec URL, a built-in name such as shapes-64, or a hub id")
            return
        if model is None or "://" in model:
            return  # a URL is looked at when the run fetches it
        hint = "give a diffusers-format model folder, an fsspec URL, a built-in name such as shapes-64, or a hub id"
        if os.path.isabs(model) and not os.path.isdir(model):  # no search folder, built-in or hub id can match it
            yield Invalid("model", f"there is no model folder at {short_repr(model)}", hint)
        elif os.path.isdir(model):  # the run takes a folder of the working directory first, as this check does
            try:
                check_folder(model)
            except ModelNotFound as exc:
                yield Invalid("model", str(exc), hint)

    @classmethod
    def infer(cls, known):
        (model,) = known.take("model")
        return model_facts(model) if model else {}

    def run(self, ctx, model, variant):
        search = tuple(d for d in (ctx.workflow_dir,) if d and "://" not in d)
        text_encoder = image_encoder = None
        with resolve_model(model, search, variant) as folder:
            if is_svd_folder(folder):
                unet, vae, image_encoder, scheduler_config = load_svd_components(folder, ctx.device, ctx.dtype,
                                                                                 variant)
            else:
                unet, vae, text_encoder, scheduler_config = load_components(folder, ctx.device, ctx.dtype, variant)
        return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "scheduler_config": scheduler_config,
                "image_encoder": image_encoder}
