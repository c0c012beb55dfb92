"""Stable Video Diffusion (image-to-video): the image condition, the noise and the denoising steps.

The three nodes reproduce diffusers' StableVideoDiffusionPipeline: `video.svd_encode_image` (CLIP image embedding,
zeros as the negative; VAE latents of the noise-augmented image), `video.svd_noise` (the (B, F, C, h, w) latents
draw) and `video.svd_denoise` (the shared denoise loop with the spatio-temporal family adapter and the per-frame
guidance ramp). Decode with video.decode (its chunk_size is the pipeline's decode_chunk_size).
"""

from __future__ import annotations

import copy

import torch
from diffusers.utils.torch_utils import randn_tensor

from vdgraph.node import Input, Invalid, Node, Output

from vdgraph_video.facts import VAEFacts
from vdgraph_video.families.svd import SpatioTemporalUNet, is_spatio_temporal
from vdgraph_video.images import ImageSize
from vdgraph_video.loading_svd import SpatioTemporalUNetFacts
from vdgraph_video.ops.denoise import denoise_loop
from vdgraph_video.ops.guiders import frame_ramp_guider
from vdgraph_video.ops.images import resize_image
from vdgraph_video.ops.svd import added_time_ids, clip_image_embedding, image_latents
from vdgraph_video.types import (
    CONDITIONING,
    FRAMES,
    IMAGE_CONDITION,
    IMAGE_ENCODER,
    LATENTS,
    RNG,
    SCHEDULER,
    UNET,
    VAE,
)
from vdgraph_video.values import Conditioning, generator_from_state, seeded_state
from vdgraph_video.values_svd import ImageCondition


class PortError(ValueError):
    """A run-time problem with one input port's value (the executor adds the node id)."""

    def __init__(self, port: str, message: str):
        super().__init__(f"port {port!r}: {message}")
        self.port = port


def _size_problems(factor: int, sides: dict[str, int | None], where: str):
    for port, size in sides.items():
        if size is not None and size % factor:
            lower = size - size % factor
            yield Invalid(port, f"{where} {port} {size} is not a multiple of the VAE factor {factor}",
                          f"use {max(lower, factor)} or {lower + factor}")


class SVDEncodeImage(Node):
    """Stable Video Diffusion's image condition, as StableVideoDiffusionPipeline computes it from a PIL image.

    conditioning: the CLIP image embedding (1, 1, D) of the image at its own size, resized to 224x224 with the
    pipeline's antialiasing and normalised by the model's CLIP image processor; zeros as the negative.
    image_condition: the VAE latents (posterior mode, unscaled) of the image resized to height x width (Pillow,
    Lanczos, on its 8-bit pixels, as the pipeline resizes a PIL image) plus noise_aug_strength times Gaussian noise
    (one (1, 3, H, W) draw: the first of the pipeline's seeded draws), and noise_aug_strength itself (the third
    added time id). The advanced rng feeds video.svd_noise.
    """

    id = "video.svd_encode_image"
    version = 1
    category = "conditioning"
    inputs = [
        Input("image_encoder", IMAGE_ENCODER, doc="from video.load_model (a Stable Video Diffusion folder)"),
        Input("vae", VAE, doc="from video.load_model"),
        Input("image", FRAMES, doc="(1, H, W, 3) float in [0, 1], e.g. from video.read_image"),
        Input("height", int, optional=True, default=None, ge=8,
              doc="the video's height in pixels, a multiple of the VAE factor (empty: the image's)"),
        Input("width", int, optional=True, default=None, ge=8,
              doc="the video's width in pixels, a multiple of the VAE factor (empty: the image's)"),
        Input("noise_aug_strength", float, default=0.02, ge=0.0, le=10.0,
              doc="noise added to the image before encoding (more: less like the image, more motion)"),
        Input("seed", int, default=0, ge=0, le=2**64 - 1, doc="seed of the CPU generator (ignored when rng is linked)"),
        Input("rng", RNG, optional=True, doc="continue from this random state instead of seeding"),
    ]
    outputs = [
        Output("conditioning", CONDITIONING, doc="the CLIP image embedding (1, 1, D) and zeros as the negative"),
        Output("image_condition", IMAGE_CONDITION, doc="the image latents and noise_aug_strength"),
        Output("rng", RNG, doc="the random state after the augmentation noise"),
    ]

    @classmethod
    def check(cls, known):
        vae, image = known.get("vae"), known.get("image")
        if not isinstance(vae, VAEFacts):
            return
        height, width = known.get("height"), known.get("width")
        sides = {"height": height, "width": width}
        yield from _size_problems(vae.scale_factor, sides, "the video's")
        if isinstance(image, ImageSize):
            implied = {"height": image.height if height is None and "height" in known else None,
                       "width": image.width if width is None and "width" in known else None}
            for port, size in implied.items():
                if size is not None and size % vae.scale_factor:
                    yield Invalid(port, f"{port} is empty, so the video takes the image's {port} {size}, which is not "
                                        f"a multiple of the VAE factor {vae.scale_factor}",
                                  f"set {port} to a multiple of {vae.scale_factor}")

    def run(self, ctx, image_encoder, vae, image, height, width, noise_aug_strength, seed, rng):
        if image.ndim != 4 or image.shape[-1] != 3:
            raise PortError("image", f"expected one RGB image (1, H, W, 3), got shape {tuple(image.shape)}: "
                                     "3 colour channels are needed (drop an alpha channel, convert grey to RGB)")
        if image.shape[0] != 1:
            raise PortError("image", f"expected one image, got {image.shape[0]} frames: pick the conditioning frame")
        height = height or int(image.shape[1])
        width = width or int(image.shape[2])
        factor = vae.scale_factor
        for port, size in (("height", height), ("width", width)):
            if size % factor:
                raise PortError(port, f"{size} is not a multiple of the VAE factor {factor}")
        dtype = next(image_encoder.module.parameters()).dtype
        embeds = clip_image_embedding(image_encoder.module, image_encoder.processor, image, ctx.device, dtype)
        generator = generator_from_state(rng if rng is not None else seeded_state(seed))
        latents = image_latents(vae.module, resize_image(image, height, width), noise_aug_strength, generator,
                                ctx.device, embeds.dtype)
        return {"conditioning": Conditioning(cond=embeds, uncond=torch.zeros_like(embeds)),
                "image_condition": ImageCondition(latents, float(noise_aug_strength)),
                "rng": generator.get_state()}


class SVDNoise(Node):
    """Stable Video Diffusion's initial latents: one Gaussian draw of shape (1, F, C, h, w) (frames before
    channels, the pipeline's layout, so the numbers match it), C the UNet's input channels / 2 (the other half are
    the image latents), scaled by the scheduler's init_noise_sigma; returned as (1, C, F, h, w) latents. Continue
    the rng of video.svd_encode_image to reproduce the pipeline's order of draws."""

    id = "video.svd_noise"
    version = 1
    category = "sampling"
    inputs = [
        Input("unet", UNET, doc="a Stable Video Diffusion UNet (gives the channels and the most frames)"),
        Input("vae", VAE, doc="gives the pixels per latent pixel"),
        Input("scheduler", SCHEDULER, doc="scale by its init_noise_sigma"),
        Input("rng", RNG, doc="the random state after the image's augmentation noise"),
        Input("frames", int, default=14, ge=1, doc="number of frames F (at most the UNet's num_frames)"),
        Input("height", int, default=576, ge=8, doc="frame height in pixels (a multiple of the VAE factor)"),
        Input("width", int, default=1024, ge=8, doc="frame width in pixels (a multiple of the VAE factor)"),
    ]
    outputs = [
        Output("latents", LATENTS, doc="(1, C, F, h, w) Gaussian latents"),
        Output("rng", RNG, doc="the random state after the draw"),
    ]

    @classmethod
    def check(cls, known):
        unet, vae, frames = known.get("unet"), known.get("vae"), known.get("frames")
        if isinstance(unet, SpatioTemporalUNetFacts) and frames is not None and frames > unet.num_frames:
            yield Invalid("frames", f"{frames} frames is more than the model's {unet.num_frames} (its UNet config's "
                                    "num_frames, what it was trained for)", f"ask for at most {unet.num_frames} frames")
        if isinstance(vae, VAEFacts):
            yield from _size_problems(vae.scale_factor,
                                      {"height": known.get("height"), "width": known.get("width")}, "frame")

    def run(self, ctx, unet, vae, scheduler, rng, frames, height, width):
        module = unet.module
        if not is_spatio_temporal(module):
            raise PortError("unet", f"video.svd_noise needs a Stable Video Diffusion UNet, got "
                                    f"{type(module).__name__}: use video.noise for other models")
        most = int(module.config.num_frames)
        if frames > most:
            raise PortError("frames", f"{frames} frames is more than the model's {most} (its UNet config's num_frames)")
        factor = vae.scale_factor
        for port, size in (("height", height), ("width", width)):
            if size % factor:
                raise PortError(port, f"{size} is not a multiple of the VAE factor {factor}")
        generator = generator_from_state(rng)
        shape = (1, frames, unet.in_channels // 2, height // factor, width // factor)
        latents = randn_tensor(shape, generator=generator, device=ctx.device, dtype=ctx.dtype)
        latents = latents * scheduler.init_noise_sigma  # (1, F, C, h, w)
        return {"latents": latents.permute(0, 2, 1, 3, 4).contiguous(), "rng": generator.get_state()}


class SVDDenoise(Node):
    """Stable Video Diffusion's denoising steps: the shared denoise loop with the spatio-temporal family adapter
    (image latents on the channel axis, the added time ids [fps - 1, motion_bucket_id, noise_aug_strength]) and the
    per-frame guidance ramp (min_guidance at the first frame to max_guidance at the last; max_guidance <= 1 turns
    classifier-free guidance off; the negative is a zero image embedding and zero image latents). Arithmetic and
    call order of StableVideoDiffusionPipeline; runs every step of the scheduler (Euler with Karras sigmas in the
    released models)."""

    id = "video.svd_denoise"
    version = 1
    category = "sampling"
    inputs = [
        Input("unet", UNET, doc="a Stable Video Diffusion UNet (UNetSpatioTemporalConditionModel)"),
        Input("scheduler", SCHEDULER, doc="the sampler with its timesteps set"),
        Input("conditioning", CONDITIONING, doc="the image embedding from video.svd_encode_image"),
        Input("image_condition", IMAGE_CONDITION, doc="the image latents from video.svd_encode_image"),
        Input("latents", LATENTS, doc="(1, C, F, h, w) initial latents from video.svd_noise"),
        Input("fps", int, default=7, ge=1, le=240, doc="frames per second the motion is meant for (SVD sees fps - 1)"),
        Input("motion_bucket_id", int, default=127, ge=0, le=1023, doc="amount of motion (higher: more)"),
        Input("min_guidance", float, default=1.0, ge=0.0, doc="guidance scale at the first frame"),
        Input("max_guidance", float, default=3.0, ge=0.0, doc="guidance scale at the last frame (<= 1: no guidance)"),
        Input("rng", RNG, optional=True, doc="random state for stochastic samplers"),
    ]
    outputs = [
        Output("latents", LATENTS, doc="(1, C, F, h, w) latents after the last step"),
        Output("scheduler", SCHEDULER, doc="the sampler state after the last step"),
        Output("rng", RNG, doc="the random state after the steps (empty when none was linked)"),
        Output("x0", LATENTS, doc="the last step's prediction of the clean latents"),
    ]

    @classmethod
    def check(cls, known):
        low, high = known.take("min_guidance", "max_guidance")
        if low is not None and low > high:
            yield Invalid("min_guidance", f"min_guidance ({low}) is larger than max_guidance ({high}); the ramp goes "
                                          "from min at the first frame to max at the last",
                          "swap them, or set both to one value for a constant scale")

    def run(self, ctx, unet, scheduler, conditioning, image_condition, latents, fps, motion_bucket_id, min_guidance,
            max_guidance, rng):
        module = unet.module
        if not is_spatio_temporal(module):
            raise PortError("unet", f"video.svd_denoise needs a Stable Video Diffusion UNet "
                                    f"(UNetSpatioTemporalConditionModel), got {type(module).__name__}")
        if min_guidance > max_guidance:
            raise PortError("min_guidance", f"{min_guidance} is larger than max_guidance {max_guidance}")
        b, c, f, h, w = latents.shape
        most = int(module.config.num_frames)
        if f > most:
            raise PortError("latents", f"{f} frames is more than the model's {most} (its UNet config's num_frames)")
        if c * 2 != unet.in_channels:
            raise PortError("latents", f"{c} channels, but the UNet takes {unet.in_channels} = 2 x {c} (noise and "
                                       f"image latents): make them with video.svd_noise")
        expected = module.add_embedding.linear_1.in_features
        passed = module.config.addition_time_embed_dim * 3
        if expected != passed:
            raise PortError("unet", f"the UNet's added-time embedding takes {expected} inputs, but its config's "
                                    f"addition_time_embed_dim gives {passed} for three time ids: the config is wrong")
        ids = added_time_ids(fps, motion_bucket_id, image_condition.noise_aug_strength, conditioning.cond.dtype,
                             ctx.device)
        family = SpatioTemporalUNet(unet, image_condition.latents, ids, b, f)
        scheduler = copy.deepcopy(scheduler)
        unseeded = seeded_state(0)
        generator = generator_from_state(rng if rng is not None else unseeded)
        n = len(scheduler.timesteps)
        ctx.progress(0, n)
        result = denoise_loop(family, frame_ramp_guider(min_guidance, max_guidance), scheduler, conditioning,
                              latents.to(ctx.device), 0, n, 0.0, generator,
                              on_step=lambda done, total: ctx.progress(done, total))
        if rng is None and not torch.equal(generator.get_state(), unseeded):
            raise PortError("rng", "the sampler draws random numbers: link an rng (from video.svd_noise) so the "
                                   "result is reproducible")
        return {"latents": result.latents, "scheduler": scheduler,
                "rng": generator.get_state() if rng is not None else None, "x0": result.x0}
