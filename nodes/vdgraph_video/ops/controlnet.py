"""ControlNet residuals for one folded model call (diffusers' StableDiffusionControlNetPipeline arithmetic).

Per ControlNet: its condition images of the call's frames, (B*n, 3, H, W), stacked for every guider chunk; scale
times keep (1 inside its control guidance start/end, else 0: then it is not run, adding zeros changes nothing); in
guess mode (with more than one chunk) it runs on the prompt chunks only and the other chunks get zero residuals.
Residuals of several ControlNets are summed in order, as MultiControlNetModel does.
"""

from __future__ import annotations

import torch


def control_residuals(controls, modules, model_input: torch.Tensor, t, embeds: torch.Tensor, guider, batch: int,
                      frames: list[int], index: int, steps: int):
    """(down residuals, mid residual) for `model_input` (chunks*B*n, C, H, W), or None when none applies."""
    down, mid = None, None
    for control, module in zip(controls, modules):
        keep = control.keep(index, steps)
        if keep == 0.0:
            continue
        guess = control.guess_mode or bool(getattr(module.config, "global_pool_conditions", False))
        condition = control.condition[frames].to(model_input.device, model_input.dtype)  # (n, 3, H, W)
        condition = condition.repeat(batch, 1, 1, 1)  # (B*n, 3, H, W): every clip's frames
        only_conditional = guess and guider.chunks > 1
        if only_conditional:
            wanted = guider.conditional_chunks()
            sample = torch.cat([model_input.chunk(guider.chunks)[k] for k in wanted])
            states = torch.cat([embeds.chunk(guider.chunks)[k] for k in wanted])
            condition = torch.cat([condition] * len(wanted))
        else:
            sample, states, condition = model_input, embeds, guider.stack(condition)
        d, m = module(sample, t, encoder_hidden_states=states, controlnet_cond=condition,
                      conditioning_scale=control.scale * keep, guess_mode=guess, return_dict=False)
        if only_conditional:
            d = [_pad_chunks(r, guider) for r in d]
            m = _pad_chunks(m, guider)
        if down is None:
            down, mid = list(d), m
        else:
            down = [a + b for a, b in zip(down, d)]
            mid = mid + m
    return None if down is None else (down, mid)


def _pad_chunks(residual: torch.Tensor, guider) -> torch.Tensor:
    """Residuals of the prompt chunks -> all chunks, zeros for the others (diffusers' guess-mode padding)."""
    wanted = guider.conditional_chunks()
    parts = residual.chunk(len(wanted))
    zeros = torch.zeros_like(parts[0])
    return torch.cat([parts[wanted.index(k)] if k in wanted else zeros for k in range(guider.chunks)])
