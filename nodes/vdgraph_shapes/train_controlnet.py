"""Train the built-in ControlNet for shapes-64 ("shapes-64-canny") on the shapes world, on a CPU.

    python -m vdgraph_shapes.train_controlnet --out DIR [--condition canny|mask] [--seed 0] [--steps N] ...

A diffusers ControlNetModel made from shapes-64's UNet (`ControlNetModel.from_unet`: the UNet's down and mid
blocks copied, zero-initialised output convolutions), trained with the UNet, text encoder and VAE frozen, on the
same v-prediction loss and target-latent layout train.py uses (train.latent_targets, foreground_weights,
sample_timesteps, the cosine DDIM schedule). The condition image of a scene is
- canny: cv2.Canny(rendered RGB frame, 100, 200), white edges on black, repeated over RGB, exactly what the video
  pack's `video.condition` (kind canny) gives the ControlNet at inference;
- mask: the shape's coverage > 0.5, white on black.
Scenes: a share (--out-of-frame) has the shape's centre anywhere up to half a size outside the frame, so the
ControlNet also learns partly visible shapes (input videos where the shape leaves the frame); the rest are the
world's fully visible scenes. The conditioning embedding downsamples 4x (three channel stages), matching the VAE.
Why from_unet and frozen base: the ControlNet then only has to learn *where* and *which* shape; colours still come
from the prompt through the frozen UNet, which is what lets a re-prompted video keep the input's motion.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, PreTrainedTokenizerFast

from vdgraph_shapes.components import build_scheduler
from vdgraph_shapes.models import MODEL_DIR
from vdgraph_shapes.train import (Ema, foreground_weights, latent_targets, lr_at, render_scenes, sample_timesteps,
                                  start_run, tokenize)
from vdgraph_shapes.world import IMAGE_SIZE, Scene, caption, sample_scene, shape_coverage

CONDITIONS: tuple[str, ...] = ("canny", "mask")
CANNY_THRESHOLDS: tuple[int, int] = (100, 200)
"""cv2.Canny hysteresis thresholds, as the reference ControlNet annotators and `video.condition` use."""
CONDITIONING_CHANNELS: tuple[int, int, int] = (16, 32, 64)
"""The ControlNet's condition-embedding widths: three stages = two stride-2 convs = the VAE's 4x reduction."""


def sample_control_scene(rng: np.random.Generator, out_of_frame: float) -> Scene:
    """A world scene; with probability `out_of_frame` its centre is redrawn anywhere in [-size/2, 64 + size/2]
    on both axes, so the shape may be cut by the border (or, rarely, just outside)."""
    scene = sample_scene(rng)
    if rng.random() < out_of_frame:
        lo, hi = -scene.size / 2, IMAGE_SIZE + scene.size / 2
        scene = Scene(scene.background, scene.colour, scene.shape, float(rng.uniform(lo, hi)),
                      float(rng.uniform(lo, hi)), scene.size)
    return scene


def canny_condition(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H, W) uint8 canny edges (0 or 255), OpenCV on the RGB image as the video pack."""
    import cv2

    return np.stack([cv2.Canny(np.ascontiguousarray(im), *CANNY_THRESHOLDS) for im in images])


def mask_condition(scenes: list[Scene]) -> np.ndarray:
    """(N, H, W) uint8: 255 where the shape covers more than half of the pixel, else 0."""
    return np.stack([(shape_coverage(s.shape, s.x, s.y, s.size) > 0.5).astype(np.uint8) * 255 for s in scenes])


def condition_images(kind: str, images: np.ndarray, scenes: list[Scene]) -> np.ndarray:
    """The ControlNet's condition for each rendered scene, (N, H, W) uint8."""
    assert kind in CONDITIONS, f"condition must be one of {CONDITIONS}, got {kind!r}"
    return canny_condition(images) if kind == "canny" else mask_condition(scenes)


def to_condition_tensor(grey: np.ndarray) -> torch.Tensor:
    """(N, H, W) uint8 -> (N, 3, H, W) float32 in [0, 1], the layout video.apply_controlnet hands the ControlNet."""
    x = torch.from_numpy(grey).float() / 255.0  # (N, H, W)
    return x[:, None].expand(-1, 3, -1, -1).contiguous()


def build_controlnet(unet: UNet2DConditionModel) -> ControlNetModel:
    """shapes-64's ControlNet: the UNet's encoder copied, a 4x condition embedding, zero convs."""
    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=CONDITIONING_CHANNELS)


def train_controlnet(
    controlnet: ControlNetModel,
    unet: UNet2DConditionModel,
    prompt_embeds: torch.Tensor,
    empty_embeds: torch.Tensor,
    latents: torch.Tensor,
    conditions: np.ndarray,
    pixel_weights: torch.Tensor,
    *,
    steps: int,
    batch: int,
    lr: float,
    uncond_prob: float,
    ema_decay: float,
    t_focus: tuple[int, int],
    t_focus_prob: float,
    seed: int,
    log,
    on_snapshot=None,
    snapshot_every: int = 0,
) -> tuple[ControlNetModel, list[float]]:
    """Train the ControlNet on scaled target latents (N, 4, 16, 16), their prompts' text states (N, 77, D) and
    condition images (N, H, W) uint8; the UNet stays frozen (it is only run). Returns the EMA copy and losses.

    The loss is train.py's: v-prediction MSE, per latent pixel weighted by pixel_weights (N, 1, 16, 16).
    """
    assert len(latents) == len(prompt_embeds) == len(conditions), "latents, prompts and conditions must pair up"
    gen = torch.Generator().manual_seed(seed)
    noise_sched = DDPMScheduler.from_config(build_scheduler().config)
    assert noise_sched.config.prediction_type == "v_prediction", "the shapes model is v-prediction"
    params = list(controlnet.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    ema = Ema(controlnet, ema_decay)
    controlnet.train()
    unet.eval().requires_grad_(False)
    losses: list[float] = []
    t0 = time.time()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup=100)
        idx = torch.randint(len(latents), (batch,), generator=gen)
        z0 = latents[idx]  # (B, 4, 16, 16)
        states = prompt_embeds[idx].clone()  # (B, 77, D)
        drop = torch.rand(batch, generator=gen) < uncond_prob
        states[drop] = empty_embeds
        t = sample_timesteps(batch, noise_sched.config.num_train_timesteps, t_focus, t_focus_prob, gen)
        noise = torch.randn(z0.shape, generator=gen)
        zt = noise_sched.add_noise(z0, noise, t)
        cond = to_condition_tensor(conditions[idx.numpy()])  # (B, 3, 64, 64)
        down, mid = controlnet(zt, t, states, cond, return_dict=False)
        pred = unet(zt, t, states, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        target = noise_sched.get_velocity(z0, noise, t)  # (B, 4, 16, 16)
        w_px = pixel_weights[idx]  # (B, 1, 16, 16)
        sq = F.mse_loss(pred, target, reduction="none")  # (B, 4, 16, 16)
        loss = ((sq * w_px).sum(dim=(1, 2, 3)) / (w_px.sum(dim=(1, 2, 3)) * sq.shape[1])).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(controlnet, step)
        losses.append(float(sq.mean().detach()))
        if step % 50 == 0 or step == steps - 1:
            log(f"controlnet step {step:5d}/{steps} mse {np.mean(losses[-50:]):.4f} {time.time() - t0:.0f}s")
        if on_snapshot is not None and snapshot_every and step > 0 and step % snapshot_every == 0:
            on_snapshot(ema.module, step)
    return ema.module, losses


@torch.no_grad()
def text_states(text_encoder: CLIPTextModel, tokenizer: PreTrainedTokenizerFast, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 77, D) last hidden states of the frozen text encoder for each caption, and (77, D) for "".

    Why precomputed: the encoder is frozen and the world has only 168 captions, so each is encoded once."""
    unique = sorted(set(captions))
    states = text_encoder(tokenize(tokenizer, unique))[0]  # (U, 77, D)
    index = {c: i for i, c in enumerate(unique)}
    rows = torch.tensor([index[c] for c in captions])
    return states[rows], text_encoder(tokenize(tokenizer, [""]))[0][0]


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keep the module docstring's layout and show every option's default."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vdgraph_shapes.train_controlnet", description=__doc__,
                                formatter_class=_Formatter)
    p.add_argument("--out", type=pathlib.Path, required=True, help="output ControlNetModel folder")
    p.add_argument("--condition", choices=CONDITIONS, default="canny", help="what the condition image shows")
    p.add_argument("--seed", type=int, default=0, help="seeds the scenes and the training stage")
    p.add_argument("--model", type=pathlib.Path, default=MODEL_DIR, help="the shapes-64 pipeline folder (frozen)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (results depend on it bit-wise)")
    p.add_argument("--num-images", type=int, default=12000, help="rendered training scenes")
    p.add_argument("--out-of-frame", type=float, default=0.3, help="share of scenes whose shape may be cut by the border")
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps")
    p.add_argument("--batch", type=int, default=16, help="batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (warmup, cosine decay)")
    p.add_argument("--uncond-prob", type=float, default=0.1,
                   help="share of empty captions: the ControlNet runs on the unconditional chunk under guidance too")
    p.add_argument("--ema-decay", type=float, default=0.998, help="EMA decay of the shipped weights")
    p.add_argument("--fg-weight", type=float, default=4.0, help="extra loss weight on the shape's latent pixels")
    p.add_argument("--t-focus", type=int, nargs=2, default=[350, 850], help="timestep band sampled extra")
    p.add_argument("--t-focus-prob", type=float, default=0.5, help="share of timesteps drawn from --t-focus")
    p.add_argument("--snapshot-every", type=int, default=0, help="save the EMA weights to DIR every N steps (0: never)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out, log, start = start_run(args)

    model = args.model
    vae = AutoencoderKL.from_pretrained(str(model / "vae")).eval()
    unet = UNet2DConditionModel.from_pretrained(str(model / "unet")).eval().requires_grad_(False)
    text_encoder = CLIPTextModel.from_pretrained(str(model / "text_encoder")).eval().requires_grad_(False)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(model / "tokenizer"))

    rng = np.random.default_rng(args.seed)
    scenes = [sample_control_scene(rng, args.out_of_frame) for _ in range(args.num_images)]
    images = render_scenes(scenes)  # (N, 64, 64, 3)
    conditions = condition_images(args.condition, images, scenes)  # (N, 64, 64)
    latents = latent_targets(images, scenes) * vae.config.scaling_factor  # (N, 4, 16, 16): what the UNet learnt
    prompt_embeds, empty_embeds = text_states(text_encoder, tokenizer, [caption(s) for s in scenes])
    log(f"rendered {len(images)} scenes with {args.condition} conditions")

    controlnet = build_controlnet(unet)
    n_params = sum(p.numel() for p in controlnet.parameters())
    log(f"controlnet parameters {n_params:,}")
    def snapshot(module: ControlNetModel, step: int) -> None:
        module.save_pretrained(str(out), safe_serialization=True)
        log(f"snapshot at step {step} -> {out}")

    train_start = time.time()
    ema, losses = train_controlnet(
        controlnet, unet, prompt_embeds, empty_embeds, latents, conditions, foreground_weights(images, args.fg_weight),
        steps=args.steps, batch=args.batch, lr=args.lr, uncond_prob=args.uncond_prob, ema_decay=args.ema_decay,
        t_focus=tuple(args.t_focus), t_focus_prob=args.t_focus_prob, seed=args.seed + 3, log=log,
        on_snapshot=snapshot, snapshot_every=args.snapshot_every)
    train_s = time.time() - train_start
    ema.save_pretrained(str(out), safe_serialization=True)
    total = time.time() - start
    log(f"done: {total:.0f}s (training {train_s:.0f}s) -> {out}")
    report = {
        "command": "python -m vdgraph_shapes.train_controlnet " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if k not in ("out", "model", "snapshot_every")),
        "args": {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()
                 if k not in ("out", "model", "snapshot_every")},
        "base_model": "shapes-64",
        "params": n_params,
        "wall_time_s": {"training": round(train_s), "total": round(total)},
        "torch_threads": args.threads,
        "final_losses": {"mse_last_100": float(np.mean(losses[-100:])) if losses else None,
                         "mse_first_100": float(np.mean(losses[:100])) if losses else None},
        "torch": torch.__version__,
    }
    (out / "training.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
