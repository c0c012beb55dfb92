"""ControlVideo's interleaved-frame smoother as a step hook of the denoise loop.

After the scheduler step of each chosen step index (ControlVideo: loop indices 30 and 31 of 50), the step's
prediction of the clean latents x0 is decoded to RGB, every other frame is replaced by an interpolation of its two
neighbours (the odd frames at an even loop index, the even frames at an odd one, as the reference decides by
`i % 2`), the frames are encoded again, and the latents for the next step are re-derived with the DDIM update for
the new x0 (`replace_ddim_x0`: the same noise estimate, so z' = z + sqrt(abar_prev) (x0' - x0)).

The arithmetic is that of the node chain video.decode (unscale "reciprocal", as ControlVideo's decode_latents) ->
video.interleave_frames -> video.encode -> video.replace_x0 at the same step, bit for bit; the hook runs it inside
one denoise call instead of splitting the loop in three.
"""

from __future__ import annotations

import dataclasses

import torch

from vdgraph_video.ops.latents import fold_frames
from vdgraph_video.ops.schedulers import ddim_alpha_prev
from vdgraph_video.ops.smooth import Interpolator, interleave_interpolate, replace_ddim_x0
from vdgraph_video.ops.vae import decode, encode

DDIM = "DDIMScheduler"
PAPER_STEPS = (30, 31)
PAPER_SCHEDULE = 50


def default_smooth_steps(steps: int) -> tuple[int, ...]:
    """The paper's loop indices 30 and 31 of 50, scaled to a schedule of `steps` steps: floor(30 * steps / 50) and
    the step after it (only those inside the schedule). 50 -> (30, 31), 20 -> (12, 13), 8 -> (4, 5), 1 -> (0,)."""
    assert steps >= 1, f"a schedule has at least one step, got {steps}"
    first = PAPER_STEPS[0] * steps // PAPER_SCHEDULE
    return tuple(i for i in (first, first + 1) if i < steps)


def resolve_smooth_steps(steps: list[int] | tuple[int, ...] | None, length: int) -> tuple[int, ...]:
    """Python-style step indices (negative from the end; empty or None: the paper's default) -> sorted loop
    indices in [0, length); an index outside the schedule raises IndexError."""
    if not steps:
        return default_smooth_steps(length)
    resolved = []
    for index in steps:
        i = index + length if index < 0 else index
        if not 0 <= i < length:
            raise IndexError(f"smoother step {index} is outside a schedule of {length} steps "
                             f"(allowed {-length}..{length - 1})")
        resolved.append(i)
    return tuple(sorted(set(resolved)))


def smoothing_parity(index: int) -> str:
    """Which frames the smoother replaces at loop index `index`: the odd ones at even indices, the even ones at odd
    indices (ControlVideo's `i % 2 == 0` test)."""
    return "odd" if index % 2 == 0 else "even"


@dataclasses.dataclass(frozen=True, eq=False)
class InterleavedSmoother:
    """A step hook (`vdgraph_video.ops.denoise.StepHook`): the smoother at loop indices `steps` of a DDIM schedule
    of `schedule_length` steps. `vae` is the loaded AutoencoderKL module; `sample` re-encodes by drawing from the
    posterior with the loop's generator (as the reference's `latent_dist.sample(generator)`), else takes its mean."""

    vae: torch.nn.Module
    steps: tuple[int, ...]
    schedule_length: int
    interpolator: Interpolator = "mean"
    sample: bool = True
    chunk_size: int = 8

    def check_scheduler(self, scheduler) -> None:
        """Refuse a scheduler this smoother cannot follow (before the loop starts)."""
        name = type(scheduler).__name__
        if name != DDIM:
            raise ValueError(f"the interleaved smoother re-derives latents with the DDIM update; the scheduler is "
                             f"{name}: use kind ddim")
        if len(scheduler.timesteps) != self.schedule_length:
            raise ValueError(f"the smoother was set up for {self.schedule_length} steps but the scheduler has "
                             f"{len(scheduler.timesteps)}: give both the same scheduler")

    def before(self, state) -> None:
        pass

    def __vdgraph_nbytes__(self) -> int:
        return 4096  # the VAE module it refers to is counted by the VAE value

    @torch.no_grad()
    def after(self, state) -> None:
        if state.index not in self.steps:
            return
        assert state.x0 is not None, "the smoother needs the step's x0 prediction (DDIM gives it)"
        family = state.family
        latents = family.end(state.latents).contiguous()  # (B, C, F, H, W)
        x0 = family.to_video(state.x0).contiguous()  # (B, C, F, H, W)
        assert latents.shape[0] == 1, f"the smoother takes one video (batch 1), got batch {latents.shape[0]}"
        if self.sample and state.generator is None:
            raise ValueError("the smoother samples the VAE posterior: the loop needs a generator")
        frames = decode(self.vae, x0, self.chunk_size, "reciprocal")  # (F, H, W, 3) in [0, 1]
        smoothed = interleave_interpolate(frames, 0, smoothing_parity(state.index), self.interpolator)
        dtype = next(self.vae.parameters()).dtype
        new_x0 = encode(self.vae, smoothed, latents.device, dtype, self.sample, state.generator,
                        self.chunk_size)  # (1, C, F, H, W)
        new_x0 = new_x0.to(latents.device, latents.dtype)
        replaced = replace_ddim_x0(latents, x0, new_x0, ddim_alpha_prev(state.scheduler, state.index))
        state.latents = family.begin(replaced)
        state.x0 = fold_frames(new_x0)
