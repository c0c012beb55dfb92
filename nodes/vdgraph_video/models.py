"""Loading a model: the UNet, VAE, text encoder and scheduler config as separate typed values."""

from __future__ import annotations

import os

from vdgraph.errors import short_repr
from vdgraph.filekeys import search_dirs
from vdgraph.node import Input, Invalid, Node, Output

from vdgraph_video.facts import model_facts
from vdgraph_video.loading import (
    ModelNotFound,
    check_folder,
    load_components,
    local_model,
    resolve_model,
    variant_input,
    variant_problems,
)
from vdgraph_video.loading_sdxl import is_sdxl_folder
from vdgraph_video.single_file import (ARCHITECTURES, CheckpointError, detect_architecture, load_checkpoint_components,
                                       shipped_config)
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

    `model` may also be a single-file checkpoint (one .safetensors in the original SD 1.x / 2.x / SDXL base key
    layout, as a path or a name in the models folder's checkpoints/), loaded through diffusers' single-file loading
    with a configuration shipped with vdgraph for the recognised architecture, or `config` (see
    vdgraph_video.single_file); its tokenizer comes from `tokenizer`, the config folder or the local Hugging Face
    cache. Names in the models folder (`vdgraph models`) are accepted for folders too.

    An SDXL model (a StableDiffusionXLPipeline folder with text_encoder_2/ and tokenizer_2/, or an SDXL
    checkpoint) gives SDXL's values on the same ports: `text_encoder` holds both text encoders (video.encode_text
    then gives the pooled embedding too) and `unet` carries the VAE factor its size conditioning needs; the
    denoise nodes call it through the SDXL family adapter (vdgraph_video.families.sdxl).

    A Stable Video Diffusion folder (StableVideoDiffusionPipeline layout) gives its UNetSpatioTemporalConditionModel,
    its AutoencoderKLTemporalDecoder and its CLIP image encoder (with the image processor) on `image_encoder`;
    `text_encoder` is then empty, as `image_encoder` is for text-conditioned models.
    """

    id = "video.load_model"
    version = 1
    category = "model"
    inputs = [
        Input("model", str, model_path=True, reads_file=True, doc="a model folder or single-file .safetensors checkpoint, an fsspec URL, a built-in or "
                                     "models-folder name, or a hub id (owner/name)"),
        variant_input(),
        Input("config", str, default="", reads_file=True,
              doc="for a single-file checkpoint: a diffusers-format folder describing its model ('': the config "
                  "shipped for the recognised architecture)"),
        Input("tokenizer", str, default="", reads_file=True,
              doc="for a single-file checkpoint: a folder with the CLIP tokenizer files ('': the config's, else "
                  "the Hugging Face cache's openai/clip-vit-large-patch14)"),
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
        yield from variant_problems(known)
        (model,) = known.take("model")
        if model is not None and not model.strip():
            yield Invalid("model", "the model name is empty",
                          "give a model folder, an fsspec URL, a built-in name such as shapes-64, or a hub id")
            return
        config, tokenizer = known.take("config", "tokenizer")
        for port, folder in (("config", config), ("tokenizer", tokenizer)):
            if folder and os.path.isabs(folder) and not os.path.isdir(folder):
                yield Invalid(port, f"there is no folder at {short_repr(folder)}",
                              f"give the {port} folder of the checkpoint's model, or '' for the default")
        if model is None or "://" in model:
            return  # a URL is looked at when the run fetches it
        if model.lower().endswith(".safetensors"):
            if os.path.isabs(model) and not os.path.isfile(model):
                yield Invalid("model", f"there is no checkpoint file at {short_repr(model)}", "check the path")
            elif os.path.isfile(model):
                try:
                    architecture = detect_architecture(model)
                except CheckpointError as exc:
                    yield Invalid("model", str(exc), "give an SD 1.x, SD 2.x or SDXL base checkpoint, or a "
                                                     "diffusers-format folder")
                    return
                if config and os.path.isdir(config) and (architecture == "sdxl") != is_sdxl_folder(config):
                    yield Invalid("config", f"the checkpoint is {ARCHITECTURES[architecture].name} but the config "
                                  f"folder {short_repr(config)} describes "
                                  f"{'an SDXL' if is_sdxl_folder(config) else 'a non-SDXL'} model",
                                  "give the config folder of the checkpoint's model, or '' for the one vdgraph "
                                  "ships for it")
            return
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
        model = known.get("model")
        if model and model.lower().endswith(".safetensors") and os.path.isfile(model):
            if "config" not in known:
                return {}
            try:  # a checkpoint is described by its configuration folder (the shipped one unless `config`)
                return model_facts(known["config"] or shipped_config(detect_architecture(model)))
            except CheckpointError:
                return {}
        return model_facts(model) if model else {}

    @classmethod
    def locate_file(cls, port, name, workflow_dir):
        if port != "model":
            return super().locate_file(port, name, workflow_dir)
        return local_model(name, search_dirs(workflow_dir))

    def run(self, ctx, model, variant, config="", tokenizer=""):
        search = ctx.search_dirs()
        config, tokenizer = (_local_path(name, search) for name in (config, tokenizer))
        checkpoint = _local_path(model, search) if model.lower().endswith(".safetensors") else ""
        if checkpoint and os.path.isfile(checkpoint):
            loaded = load_checkpoint_components(checkpoint, ctx.device, ctx.dtype, config, tokenizer)
        else:
            with resolve_model(model, search, variant) as found:
                if os.path.isfile(found):  # a single file from the models folder's checkpoints/
                    loaded = load_checkpoint_components(found, ctx.device, ctx.dtype, config, tokenizer)
                elif is_svd_folder(found):
                    unet, vae, image_encoder, scheduler_config = load_svd_components(found, ctx.device, ctx.dtype,
                                                                                     variant)
                    return {"unet": unet, "vae": vae, "text_encoder": None, "scheduler_config": scheduler_config,
                            "image_encoder": image_encoder}
                else:
                    loaded = load_components(found, ctx.device, ctx.dtype, variant)
        unet, vae, text_encoder, scheduler_config = loaded
        return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "scheduler_config": scheduler_config,
                "image_encoder": None}


def _local_path(name: str, search: tuple[str, ...]) -> str:
    """`name` as given when it exists, else relative to the first search folder where it exists ('' stays '')."""
    if not name or os.path.exists(name) or os.path.isabs(name):
        return name
    for folder in search:
        if os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return name
