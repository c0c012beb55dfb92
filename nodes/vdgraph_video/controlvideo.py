"""ControlVideo's parts for video.denoise: the interleaved-frame smoother (a step hook) and the hierarchical sampler
for long videos (a frame plan). Both are values a denoise node takes as optional inputs, so the loop itself has no
ControlVideo branch."""

from __future__ import annotations

import dataclasses
from typing import Literal

from vdgraph.context import RunContext
from vdgraph.node import Input, Invalid, Node, Output

from vdgraph_video.facts import SchedulerFacts, step_index_problem
from vdgraph_video.families.hierarchical import HierarchicalPlan
from vdgraph_video.ops.hierarchical import MIN_WINDOW
from vdgraph_video.ops.interleaved_smoother import DDIM, InterleavedSmoother, resolve_smooth_steps
from vdgraph_video.types import FRAME_PLAN, SCHEDULER, SMOOTHER, VAE
from vdgraph_video.values import VAEHandle


@dataclasses.dataclass(frozen=True)
class SmootherFacts:
    """What validation knows of a smoother: its loop indices, the schedule length they were resolved for, and
    whether it draws random numbers."""

    steps: tuple[int, ...]
    schedule_length: int
    sample: bool


@dataclasses.dataclass(frozen=True)
class FramePlanFacts:
    window: int


class InterleavedSmootherNode(Node):
    """ControlVideo's interleaved-frame smoother, for video.denoise's `smoother` input.

    After the scheduler step of each chosen step, the step's x0 prediction is decoded, every other frame is replaced
    by an interpolation of its two neighbours (odd frames at an even step index, even frames at an odd one, as the
    reference; a frame with one neighbour is kept), the frames are encoded again and the latents for the next step
    re-derived with the DDIM update for the new x0. Bit for bit the chain video.decode (reciprocal) ->
    video.interleave_frames -> video.encode -> video.replace_x0 at that step. `steps` empty: the paper's loop
    indices 30 and 31 of 50 scaled to the schedule (floor(30 n / 50) and the next). Interpolators: "mean" of the
    neighbours, or their optical-flow midpoint "flow" (OpenCV DIS; the paper's RIFE needs weights); "none" gives no
    smoother (video.denoise then runs plain steps), so a workflow can switch the technique off with one input and
    measure what it does. DDIM only.
    """

    id = "video.interleaved_smoother"
    version = 1
    category = "smoothing"
    inputs = [
        Input("vae", VAE, doc="decodes x0 and encodes the smoothed frames"),
        Input("scheduler", SCHEDULER, doc="the DDIM scheduler of the denoise node this smoother goes to"),
        Input("steps", list[int], optional=True, default=None,
              doc="step indices after which to smooth (negative: from the end; empty: the paper's 30, 31 of 50, "
                  "scaled)"),
        Input("interpolator", Literal["mean", "flow", "none"], default="mean",
              doc="mean of the two neighbours, their optical-flow midpoint, or none (no smoother)"),
        Input("sample", bool, default=True,
              doc="re-encode by sampling the VAE posterior with the denoise rng (the reference), else its mean"),
        Input("chunk_size", int, default=8, ge=0, doc="frames per VAE call (0: all)"),
    ]
    outputs = [Output("smoother", SMOOTHER, doc="link to video.denoise's smoother input (empty for none)")]

    @classmethod
    def check(cls, known):
        facts = known.get("scheduler")
        if not isinstance(facts, SchedulerFacts) or known.get("interpolator") == "none":
            return
        if facts.class_name is not None and facts.class_name != DDIM:
            yield Invalid("scheduler", f"the smoother re-derives the latents with the DDIM update, but the scheduler "
                                       f"is {facts.class_name}", "use a DDIM scheduler (video.scheduler kind ddim)")
        for step in known.get("steps") or ():
            why = step_index_problem(step, facts.steps, "steps")
            if why:
                yield Invalid("steps", why,
                              f"give step indices in {-facts.steps}..{facts.steps - 1}, or leave steps empty for "
                              "the paper's default")

    @classmethod
    def infer(cls, known):
        facts, sample = known.get("scheduler"), known.get("sample")
        if known.get("interpolator") == "none":
            return {"smoother": None}
        if not isinstance(facts, SchedulerFacts) or "steps" not in known or sample is None:
            return {}
        try:
            steps = resolve_smooth_steps(known["steps"], facts.steps)
        except IndexError:
            return {}
        return {"smoother": SmootherFacts(steps, facts.steps, sample)}

    def run(self, ctx: RunContext, vae: VAEHandle, scheduler, steps: list[int] | None, interpolator: str,
            sample: bool, chunk_size: int) -> InterleavedSmoother | None:
        if interpolator == "none":
            return None
        length = len(scheduler.timesteps)
        smoother = InterleavedSmoother(vae.module, resolve_smooth_steps(steps, length), length, interpolator,
                                       sample, chunk_size)
        smoother.check_scheduler(scheduler)
        return smoother


class HierarchicalSamplerNode(Node):
    """ControlVideo's hierarchical sampler for long videos, for video.denoise's `frame_plan` input.

    Key frames are every (window - 1)-th frame plus the last; every step they are denoised together with fully
    cross-frame attention, then each clip between two neighbouring key frames is denoised with both key frames as
    its attention references (the paper's choice; the reference code takes the first key frame and the clip's last
    inner frame), keeping the inner frames' predictions. A model call sees at most max(key frames, window) frames,
    so memory is bounded by the clip. The sampler sets the self-attention of each call itself (any cross-frame patch
    on the UNet is overridden); ControlNets run per call on the call's frames. 2-D UNets, one video.
    """

    id = "video.hierarchical_sampler"
    version = 1
    category = "sampling"
    inputs = [
        Input("window", int, default=0, ge=0,
              doc=f"frames per clip including its two key frames (0: int(sqrt(frames)), at least {MIN_WINDOW})"),
    ]
    outputs = [Output("plan", FRAME_PLAN, doc="link to video.denoise's frame_plan input")]

    @classmethod
    def check(cls, known):
        window = known.get("window")
        if window is not None and 0 < window < MIN_WINDOW:
            yield Invalid("window", f"window {window} leaves no inner frame between a clip's two key frames",
                          f"use 0 (int(sqrt(frames))) or at least {MIN_WINDOW}")

    @classmethod
    def infer(cls, known):
        window = known.get("window")
        return {"plan": FramePlanFacts(window)} if window is not None else {}

    def run(self, ctx: RunContext, window: int) -> HierarchicalPlan:
        if 0 < window < MIN_WINDOW:
            raise ValueError(f"window {window} must be 0 or at least {MIN_WINDOW}")
        return HierarchicalPlan(window)
