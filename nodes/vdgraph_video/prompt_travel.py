"""Prompt travel: per-frame conditioning from key-frame prompts."""

from __future__ import annotations

from vdgraph.context import RunContext
from vdgraph.node import Input, Invalid, Node, Output

from vdgraph_video.ops.prompt_travel import (ScheduleError, is_schedule, parse_schedule, schedule_problems,
                                             travel_embeddings)
from vdgraph_video.types import CONDITIONING, TEXT_ENCODER
from vdgraph_video.values import Conditioning
from vdgraph_video.values_sdxl import SDXLTextEncoderFacts, SDXLTextEncoderHandle

SDXL_TRAVEL = ("the model is SDXL, whose pooled text embedding has no per-frame form in the SDXL family yet: a "
               "prompt schedule cannot be encoded for it", "give one prompt for the whole video (a plain prompt, "
                                                          "as video.encode_text takes)")


class PromptTravel(Node):
    """Encodes a prompt that may change over the video: "0: a red circle | 8: a blue circle" (entries separated by
    "|" or new lines, "frame: prompt", from frame 0, strictly increasing, inside the video's frames). Key-frame
    prompts are encoded in one batch and interpolated linearly in conditioning space over the frames between them;
    the last prompt holds to the last frame (diffusers' FreeNoise dict prompts, exactly). The negative prompt may be
    a schedule too. The result is per-frame conditioning (1, F, 77, D), which every model family takes (2-D, 3-D
    and motion UNets).

    When neither text is a schedule, the output is plain conditioning (1, 77, D), exactly what video.encode_text
    computes, so a plain prompt is not changed by the interpolation's rounding (on any model, SDXL included;
    a schedule on an SDXL model is refused: its pooled embedding has no per-frame form yet). A schedule
    "0: <prompt>" holds one prompt per frame through the interpolation, as diffusers' FreeNoise encodes a plain
    prompt.
    """

    id = "video.prompt_travel"
    version = 1
    category = "conditioning"
    inputs = [
        Input("text_encoder", TEXT_ENCODER, doc="from video.load_model"),
        Input("prompt", str, doc="a prompt, or key frames '0: a red circle | 8: a blue circle'"),
        Input("negative_prompt", str, default="", doc="what to steer away from (a prompt or key frames)"),
        Input("frames", int, ge=1, doc="frames of the video (per-frame conditioning has one embedding each)"),
        Input("truncate", bool, default=False, doc="cut over-long prompts instead of failing"),
    ]
    outputs = [Output("conditioning", CONDITIONING, doc="(1, F, 77, D) per-frame, or (1, 77, D) for plain prompts")]

    @classmethod
    def check(cls, known):
        frames = known.get("frames")
        for port in ("prompt", "negative_prompt"):
            text = known.get(port)
            if not isinstance(text, str) or not is_schedule(text):
                continue
            if isinstance(known.get("text_encoder"), SDXLTextEncoderFacts):
                yield Invalid(port, *SDXL_TRAVEL)
                continue
            try:
                entries = parse_schedule(text)
            except ScheduleError as exc:
                yield Invalid(port, str(exc), "write every entry as 'frame: prompt', separated by '|' or new lines")
                continue
            for problem in schedule_problems(entries, frames):
                yield Invalid(port, problem, "key frames run from 0 in increasing order, each below the frame count "
                                             f"({frames if frames is not None else 'frames'})")

    def run(self, ctx: RunContext, text_encoder, prompt: str, negative_prompt: str, frames: int,
            truncate: bool) -> Conditioning:
        if not (is_schedule(prompt) or is_schedule(negative_prompt)):
            return text_encoder.encode(prompt, negative_prompt, ctx.device, truncate)
        if isinstance(text_encoder, SDXLTextEncoderHandle):
            raise ValueError(SDXL_TRAVEL[0] + "; " + SDXL_TRAVEL[1])
        module, tokenizer = text_encoder.module, text_encoder.tokenizer
        cond = travel_embeddings(module, tokenizer, prompt, frames, ctx.device, truncate)
        uncond = travel_embeddings(module, tokenizer, negative_prompt, frames, ctx.device, truncate)
        return Conditioning(cond=cond, uncond=uncond)
