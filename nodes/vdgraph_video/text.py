"""Text conditioning."""

from __future__ import annotations

from vdgraph.node import Input, Invalid, Node, Output

from vdgraph_video.loading_svd import NoTextEncoder

from vdgraph_video.types import CONDITIONING, TEXT_ENCODER


class EncodeText(Node):
    """Encodes a prompt and a negative prompt into CLIP-style conditioning (77 tokens, padded).

    Computes what diffusers' StableDiffusionPipeline.encode_prompt computes (the negative prompt "" is the
    unconditional embedding of classifier-free guidance). A prompt longer than the encoder takes is an error
    that says by how much, unless `truncate` is true (then its tail is cut, as diffusers does).

    On an SDXL model it computes what StableDiffusionXLPipeline.encode_prompt computes: both encoders'
    penultimate hidden states concatenated (1, 77, D1 + D2) and the second encoder's pooled embedding; an empty
    negative prompt is zeros when the model says so (force_zeros_for_empty_prompt, as SDXL base does).
    """

    id = "video.encode_text"
    version = 1
    category = "conditioning"
    inputs = [
        Input("text_encoder", TEXT_ENCODER, doc="from video.load_model"),
        Input("prompt", str, doc="what the video should show"),
        Input("negative_prompt", str, default="", doc="what to steer away from ('' is plain unconditional)"),
        Input("truncate", bool, default=False, doc="cut over-long prompts instead of failing"),
    ]
    outputs = [Output("conditioning", CONDITIONING, doc="(1, 77, D) embeddings of both prompts (SDXL: and their "
                                                        "pooled embeddings)")]

    @classmethod
    def check(cls, known):
        if isinstance(known.get("text_encoder"), NoTextEncoder):
            yield Invalid("text_encoder", "the model is image-conditioned (Stable Video Diffusion): it has no text "
                                          "encoder", "condition it on an image with video.svd_encode_image and the "
                                                     "model's image_encoder")

    def run(self, ctx, text_encoder, prompt, negative_prompt, truncate):
        if text_encoder is None:
            raise ValueError("port 'text_encoder': the model has no text encoder (an image-conditioned model such as "
                             "Stable Video Diffusion): condition it with video.svd_encode_image")
        return text_encoder.encode(prompt, negative_prompt, ctx.device, truncate)
