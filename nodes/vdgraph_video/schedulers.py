"""Schedulers and the step indices of Text2Video-Zero."""

from __future__ import annotations

from vdgraph.node import Input, Invalid, Known, Node, Output

from vdgraph_video.facts import SchedulerConfigFacts, SchedulerFacts, stochastic_class

from vdgraph_video.ops.schedulers import SchedulerKind, build_scheduler, scheduler_class, scheduler_class_name
from vdgraph_video.types import SCHEDULER, SCHEDULER_CONFIG


class MakeScheduler(Node):
    """Builds a sampler from the model's scheduler config and sets its number of steps.

    Kinds: "model" (the class the model ships with; it must be a diffusers scheduler class, anything else its
    config names is refused before it is built), DDIM, DDPM, Euler, Euler ancestral, DPM-Solver++ (multistep) and
    Euler on Karras sigmas (euler_karras: the model's config with use_karras_sigmas, as Stable Video Diffusion's).
    Stochastic samplers (DDPM, Euler ancestral, DDIM with eta > 0) draw from the rng given to video.denoise. The
    scheduler value is never changed by a consumer: each works on its own copy.
    """

    id = "video.scheduler"
    version = 1
    category = "sampling"
    inputs = [
        Input("scheduler_config", SCHEDULER_CONFIG, doc="from video.load_model"),
        Input("kind", SchedulerKind, default="ddim", doc="the sampling algorithm"),
        Input("steps", int, default=50, ge=1, le=1000, doc="number of denoising steps"),
    ]
    outputs = [Output("scheduler", SCHEDULER, doc="the scheduler with its timesteps set")]

    @classmethod
    def check(cls, known):
        config = known.get("scheduler_config")
        if known.get("kind") == "model" and isinstance(config, SchedulerConfigFacts):
            try:
                scheduler_class(config.class_name)
            except ValueError as exc:
                yield Invalid("kind", f"kind 'model' builds the class the model's scheduler config names, and {exc}",
                              "choose a sampler (ddim, ddpm, euler, euler_ancestral, dpmsolver++) instead of 'model'")

    @classmethod
    def infer(cls, known):
        kind, steps = known.take("kind", "steps")
        if kind is None:
            return {}
        if kind == "model":
            config = known.get("scheduler_config")
            class_name = config.class_name if config is not None else None
            stochastic = stochastic_class(class_name) if class_name is not None else None
        else:
            class_name = scheduler_class_name(kind)
            stochastic = kind in ("ddpm", "euler_ancestral")
        return {"scheduler": SchedulerFacts(steps, stochastic, class_name)}

    def run(self, ctx, scheduler_config, kind, steps):
        return build_scheduler(scheduler_config.class_name, scheduler_config.config, kind, steps, ctx.device)


class Text2VideoZeroSteps(Node):
    """Turns Text2Video-Zero's t0 and t1 into step indices for video.denoise and video.renoise.

    t0 < t1 count denoising steps from the end, as the paper and diffusers' TextToVideoZeroPipeline do (with 50
    DDIM steps, t0=44 and t1=47 are timesteps 881 and 941). The outputs are negative step indices (-t - 1), which
    the denoise and re-noise nodes resolve against the scheduler's timesteps, so they work for any step count.
    """

    id = "video.text2video_zero_steps"
    version = 1
    category = "sampling"
    inputs = [
        Input("t0", int, default=44, ge=0, doc="steps from the end where motion is added (the later, less noisy one)"),
        Input("t1", int, default=47, ge=1, doc="steps from the end where the frames restart (t1 > t0)"),
        Input("steps", int, optional=True, default=None, ge=1,
              doc="the schedule's number of steps, to check t1 < steps before running (empty: not checked)"),
    ]
    outputs = [
        Output("t1_index", int, doc="step index of timestep T1: end of the first pass, start of the final one"),
        Output("t0_index", int, doc="step index of timestep T0: end of the second pass"),
    ]

    @classmethod
    def check(cls, known):
        t0, t1 = known.take("t0", "t1")
        if t0 is not None and not t0 < t1:
            yield Invalid("t0", f"t0 ({t0}) must be smaller than t1 ({t1})",
                          "both count steps from the end: t0 is where motion is added, t1 (earlier) where frames "
                          "restart")
        t1, steps = known.take("t1", "steps")
        if steps is not None and t1 is not None and not t1 < steps:
            yield Invalid("t1", f"t1 ({t1}) must be smaller than steps ({steps}): it counts steps from the end",
                          f"lower t1 below {steps} (and t0 below t1), or raise steps")

    @classmethod
    def infer(cls, known):
        t0, t1 = known.take("t0", "t1")
        return {} if t0 is None else {"t1_index": -t1 - 1, "t0_index": -t0 - 1}

    def run(self, ctx, t0, t1, steps):
        problems = list(self.check(Known({"t0": t0, "t1": t1, "steps": steps})))
        if problems:
            raise ValueError(problems[0].message)
        return {"t1_index": -t1 - 1, "t0_index": -t0 - 1}
