"""VAE decode and encode."""

from __future__ import annotations

from vdgraph.node import Input, Invalid, Node, Output

from typing import Literal

from vdgraph_video.ops.vae import decode, encode
from vdgraph_video.types import FRAMES, LATENTS, RNG, VAE
from vdgraph_video.values import generator_from_state


class DecodeLatents(Node):
    """Decodes latents (1, C, F, h, w) to frames (F, H, W, 3) float in [0, 1] on the CPU, chunk_size frames per
    VAE call to bound memory (0: all at once); a batch (B, C, F, h, w) with B > 1 gives (B, F, H, W, 3), which
    video.write_video writes as one file per video. Arithmetic of diffusers' decode_latents; `unscale` says how the
    latents are divided by the VAE's scaling factor: "reciprocal" multiplies by 1 / factor (decode_latents,
    TextToVideoZeroPipeline, TextToVideoSDPipeline), "divide" divides (StableDiffusionPipeline and its ControlNet
    pipeline); the two differ in the last bit. A temporal decoder (Stable Video Diffusion's
    AutoencoderKLTemporalDecoder) mixes the frames of each call and is told their count, so chunk_size is
    StableVideoDiffusionPipeline's decode_chunk_size: fewer frames per call bound memory and change the result."""

    id = "video.decode"
    version = 1
    category = "vae"
    inputs = [
        Input("vae", VAE, doc="from video.load_model"),
        Input("latents", LATENTS, doc="(B, C, F, h, w) latents"),
        Input("chunk_size", int, default=8, ge=0, doc="frames per VAE call (0: all)"),
        Input("unscale", Literal["reciprocal", "divide"], default="reciprocal",
              doc="multiply by 1 / scaling factor (decode_latents) or divide by it (StableDiffusionPipeline)"),
    ]
    outputs = [Output("frames", FRAMES, doc="(F, H, W, 3) float32 in [0, 1]; (B, F, H, W, 3) for B > 1")]

    def run(self, ctx, vae, latents, chunk_size, unscale):
        frames = decode(vae.module, latents, chunk_size, unscale)  # (B*F, H, W, 3)
        batch = latents.shape[0]
        return frames if batch == 1 else frames.view(batch, -1, *frames.shape[1:])  # (B, F, H, W, 3)


class EncodeFrames(Node):
    """Encodes frames (F, H, W, 3) in [0, 1] to latents (1, C, F, h, w), scaled by the VAE's scaling factor (or
    not, with scaled false: InstructPix2Pix's image latents are the raw posterior mode): the posterior mean, or a
    sample drawn from `rng` when `sample` is true."""

    id = "video.encode"
    version = 1
    category = "vae"
    inputs = [
        Input("vae", VAE, doc="from video.load_model"),
        Input("frames", FRAMES, doc="(F, H, W, 3) float in [0, 1]; sides multiples of the VAE factor"),
        Input("sample", bool, default=False, doc="sample the posterior instead of taking its mean"),
        Input("rng", RNG, optional=True, doc="random state (needed when sample is true)"),
        Input("chunk_size", int, default=8, ge=0, doc="frames per VAE call (0: all)"),
        Input("scaled", bool, default=True,
              doc="multiply by the VAE's scaling factor (the denoiser's latent space); false: the raw latents, as "
                  "InstructPix2Pix's image latents"),
    ]
    outputs = [
        Output("latents", LATENTS, doc="(1, C, F, h, w) latents"),
        Output("rng", RNG, doc="the random state after sampling (the input state when not sampling)"),
    ]

    @classmethod
    def check(cls, known):
        if known.get("sample") and "rng" in known and known["rng"] is None:  # rng optional and left unlinked
            yield Invalid("rng", "sample is true but no rng is linked", "link an rng (e.g. noise.rng from "
                                                                       "video.noise), or set sample to false")

    def run(self, ctx, vae, frames, sample, rng, chunk_size, scaled):
        factor = vae.scale_factor
        if frames.shape[1] % factor or frames.shape[2] % factor:
            raise ValueError(f"frame size {tuple(frames.shape[1:3])} is not a multiple of the VAE factor {factor}")
        if sample and rng is None:
            raise ValueError("sample is true: link an rng so the draw is reproducible")
        generator = generator_from_state(rng) if rng is not None else None
        latents = encode(vae.module, frames, ctx.device, ctx.dtype, sample, generator, chunk_size, scaled)
        return {"latents": latents, "rng": generator.get_state() if generator is not None else None}
