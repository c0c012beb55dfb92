"""Train the built-in "shapes-64" latent text-to-image model on the shapes world, on a CPU, in diffusers format.

    python -m vdgraph_shapes.train --out DIR [--seed 0] [--vae-steps N] [--unet-steps N] ...

Stages (all seeded): render a dataset -> train a tiny AutoencoderKL whose latent space is a 16x16 colour
thumbnail plus a shape-class map (see latent_targets) -> set the VAE's scaling_factor from the latents' std ->
train a tiny CLIP text encoder and a small UNet jointly on those latents (v-prediction on a cosine schedule,
shape-weighted loss, 10% caption dropout for classifier-free guidance, EMA) -> save a StableDiffusionPipeline
folder (safetensors only). Why this shape: it is the smallest thing that loads in the
stock diffusers pipelines (StableDiffusionPipeline, TextToVideoZeroPipeline) so the engine's video nodes can be
tested end to end on CPU with a model whose outputs a classic judge can score.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import pathlib
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, PreTrainedTokenizerFast

from vdgraph_shapes.components import (
    LATENT_CHANNELS,
    VAE_REDUCTION,
    build_scheduler,
    build_text_encoder,
    build_tokenizer,
    build_unet,
    build_vae,
)
from vdgraph_shapes.world import Scene, caption, render, sample_scene, shape_coverage

Log = Callable[[str], None]


def sample_scenes(n: int, seed: int) -> list[Scene]:
    """n random scenes from a fresh generator seeded with `seed`."""
    rng = np.random.default_rng(seed)
    return [sample_scene(rng) for _ in range(n)]


def render_scenes(scenes: list[Scene]) -> np.ndarray:
    """The scenes' images, (N, 64, 64, 3) uint8."""
    return np.stack([render(s) for s in scenes])


def to_model_space(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [-1, 1], the VAE's input convention."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()  # (N, 3, H, W)
    return x / 127.5 - 1.0


def foreground_weights(images: np.ndarray, weight: float) -> torch.Tensor:
    """Per-latent-pixel loss weights (N, 1, 16, 16): 1 on background, 1 + weight on and around the shape.

    Why: the shape's class changes only a few latent pixels (a 20 px square and circle differ in four corner
    latents), so under a plain per-pixel loss the prompt's shape word carries almost no gradient and the model
    drew the same blob for every shape. Up-weighting the shape region amplifies exactly that signal.
    """
    x = torch.from_numpy(images).float()  # (N, H, W, 3)
    shape_px = ((x - x[:, :1, :1, :]).abs().amax(dim=3) > 24).float()[:, None]  # (N, 1, H, W) differs from corner
    latent = F.max_pool2d(shape_px, VAE_REDUCTION)  # (N, 1, 16, 16) any shape pixel in the 4x4 patch
    grown = F.max_pool2d(latent, 3, stride=1, padding=1)  # (N, 1, 16, 16) plus a one-latent border
    return 1.0 + weight * grown


def sample_timesteps(n: int, total: int, focus: tuple[int, int], focus_prob: float, gen: torch.Generator) -> torch.Tensor:
    """(n,) timesteps: uniform over [0, total) mixed with uniform over `focus` (with probability focus_prob).

    Why: the prompt decides the shape's class in a narrow band of noise levels (the position is already fixed
    but the corners are not yet visible), so that band gets extra samples.
    """
    uniform = torch.randint(0, total, (n,), generator=gen)
    focused = torch.randint(focus[0], focus[1], (n,), generator=gen)
    pick = torch.rand(n, generator=gen) < focus_prob
    return torch.where(pick, focused, uniform)


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warmup then cosine decay to 10% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


SHAPE_CODES: dict[str, float] = {"circle": -1.0, "triangle": 0.0, "square": 1.0}
"""Value of latent channel 3 inside a shape of each class (times its coverage); 0 on the background."""


def latent_targets(images: np.ndarray, scenes: list[Scene]) -> torch.Tensor:
    """What the encoder's latent (N, 4, 16, 16) is pulled towards: a colour thumbnail and a shape-class map.

    Channels 0..2: the image average-pooled 4x4 (in [-1, 1]). Channel 3: SHAPE_CODES[shape] x the shape's
    coverage pooled 4x4. Why: colours were learnt by the UNet within ~1000 steps because they are region-constant
    values in this latent space, while the shape class, which only bent a few edge latents, was not learnt at
    all (every prompt gave the same blob). Writing the class as a region-constant value makes it as easy as a
    colour, and the decoder (trained to be robust, see train_vae) turns a blob with a class value into the
    crisp shape.
    """
    assert len(images) == len(scenes), f"{len(images)} images vs {len(scenes)} scenes"
    thumb = F.avg_pool2d(to_model_space(images), VAE_REDUCTION)  # (N, 3, 16, 16)
    cover = np.stack([SHAPE_CODES[s.shape] * shape_coverage(s.shape, s.x, s.y, s.size) for s in scenes])  # (N, H, W)
    code = F.avg_pool2d(torch.from_numpy(cover)[:, None], VAE_REDUCTION)  # (N, 1, 16, 16)
    return torch.cat([thumb, code], dim=1)


def perturb_latents(z: torch.Tensor, prob: float, low: float, white: float, gen: torch.Generator) -> torch.Tensor:
    """Randomly disturb latents (B, 4, 16, 16), per sample with `prob`: a random blur towards the 3x3 mean,
    smooth (8x8 upsampled) noise of amplitude up to `low` and white noise up to `white`.

    Why: the UNet's samples are never exactly on the latent manifold (its shapes come out as rounded blobs);
    a decoder trained to map blurred, disturbed latents back to the clean image draws crisp shapes.
    """
    b = z.shape[0]
    alpha = torch.rand((b, 1, 1, 1), generator=gen)
    blurred = (1 - alpha) * z + alpha * F.avg_pool2d(z, 3, stride=1, padding=1, count_include_pad=False)
    smooth = F.interpolate(torch.randn((b, z.shape[1], 8, 8), generator=gen), size=z.shape[2:], mode="bilinear")
    amp_low = torch.rand((b, 1, 1, 1), generator=gen) * low
    amp_white = torch.rand((b, 1, 1, 1), generator=gen) * white
    disturbed = blurred + amp_low * smooth + amp_white * torch.randn(z.shape, generator=gen)
    on = torch.rand((b, 1, 1, 1), generator=gen) < prob
    return torch.where(on, disturbed, z)


def train_vae(
    vae: AutoencoderKL,
    images: np.ndarray,
    targets: torch.Tensor,
    *,
    steps: int,
    batch: int,
    lr: float,
    kl_weight: float,
    target_weight: float,
    perturb: tuple[float, float, float],
    seed: int,
    log: Log,
) -> list[float]:
    """Train the autoencoder so that `targets` (N, 4, 16, 16) (see latent_targets) ARE its latent space.

    - the decoder reconstructs the image (L1 + MSE) from the target latent (half of the samples) or from the
      encoder's latent (the other half), each perturbed with `perturb` (probability, smooth and white noise
      amplitudes), so it renders crisp shapes from the UNet's imperfect samples and from the encoder alike;
    - the encoder regresses the targets (`target_weight`); it is a plain autoencoder on the posterior mean (the
      log-variance starts at -12 and only the tiny KL term touches it).
    Why targets rather than whatever the encoder learns: the shape class is a global property a small conv
    encoder learns slowly (it had not learnt the class map after 800 steps), and the UNet only learns what is in
    its training latents; the UNet is therefore trained on the targets, which the decoder is guaranteed to read.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # start (almost) deterministic: std = exp(-6)
        vae.quant_conv.weight[LATENT_CHANNELS:] *= 0.01
        vae.quant_conv.bias[LATENT_CHANNELS:] = -12.0
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    vae.train()
    losses: list[float] = []
    t0 = time.time()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup=min(20, steps // 10 + 1))
        idx = torch.randint(len(images), (batch,), generator=gen)
        x = to_model_space(images[idx.numpy()])  # (B, 3, 64, 64)
        posterior = vae.encode(x).latent_dist
        target = targets[idx]  # (B, 4, 16, 16)
        use_target = torch.rand((batch, 1, 1, 1), generator=gen) < 0.5
        z = perturb_latents(torch.where(use_target, target, posterior.mean), *perturb, gen)  # (B, 4, 16, 16)
        recon = vae.decode(z).sample  # (B, 3, 64, 64)
        rec = F.l1_loss(recon, x) + F.mse_loss(recon, x)
        reg = F.mse_loss(posterior.mean, target)
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        loss = rec + target_weight * reg + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        losses.append(float(rec.detach()))
        if step % 50 == 0 or step == steps - 1:
            log(f"vae step {step:5d}/{steps} rec {np.mean(losses[-50:]):.4f} encoder-vs-target {float(reg.detach()):.4f} "
                f"{time.time() - t0:.0f}s")
    vae.eval()
    return losses


def probe_vae(vae: AutoencoderKL, n: int = 200, seed: int = 12345) -> dict:
    """Judge decodes of n fresh scenes: through the encoder ("clean"), from perturbed target latents
    ("perturbed", what the UNet's samples look like) and from exact target latents ("targets")."""
    from vdgraph_shapes.judge import judge_frame

    scenes = sample_scenes(n, seed)
    images = render_scenes(scenes)  # (N, 64, 64, 3)
    x = to_model_space(images)  # (N, 3, 64, 64)
    with torch.no_grad():
        recon = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)  # (N, 3, 64, 64)
        gen = torch.Generator().manual_seed(seed)
        target = latent_targets(images, scenes)  # (N, 4, 16, 16)
        from_target = vae.decode(target).sample.clamp(-1, 1)
        blobby = vae.decode(perturb_latents(target, 1.0, 0.3, 0.1, gen)).sample.clamp(-1, 1)

    def scores(images: torch.Tensor) -> dict[str, float]:
        judged = [judge_frame(im) for im in ((images + 1) / 2).permute(0, 2, 3, 1).numpy()]  # (N, 64, 64, 3)
        pairs = list(zip(judged, scenes, strict=True))
        return {
            "background": float(np.mean([j.background == s.background for j, s in pairs])),
            "colour": float(np.mean([j.colour == s.colour for j, s in pairs])),
            "shape": float(np.mean([j.shape == s.shape for j, s in pairs])),
        }

    return {"mae_255": float((recon - x).abs().mean()) * 127.5, "clean": scores(recon), "targets": scores(from_target),
            "perturbed": scores(blobby)}


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, images: np.ndarray, batch: int = 256) -> torch.Tensor:
    """Posterior means of the dataset, unscaled, (N, 4, 16, 16) float32."""
    chunks = [vae.encode(to_model_space(images[i : i + batch])).latent_dist.mean for i in range(0, len(images), batch)]
    return torch.cat(chunks)


def tokenize(tokenizer: PreTrainedTokenizerFast, prompts: list[str]) -> torch.Tensor:
    """Token ids exactly as StableDiffusionPipeline makes them, (N, 77) int64."""
    return tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


class Ema:
    """Exponential moving average of a module's parameters (a copy, updated in place after each step)."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))  # warm up so early weights do not dominate
        for e, p in zip(self.module.parameters(), module.parameters(), strict=True):
            e.lerp_(p, 1.0 - d)


def train_denoiser(
    unet: UNet2DConditionModel,
    text_encoder: CLIPTextModel,
    ids: torch.Tensor,
    empty_ids: torch.Tensor,
    latents: torch.Tensor,
    pixel_weights: torch.Tensor,
    *,
    steps: int,
    batch: int,
    lr: float,
    uncond_prob: float,
    snr_gamma: float,
    ema_decay: float,
    t_focus: tuple[int, int],
    t_focus_prob: float,
    seed: int,
    log: Log,
    on_snapshot: Callable[[UNet2DConditionModel, CLIPTextModel, int], None] | None = None,
    snapshot_every: int = 0,
) -> tuple[UNet2DConditionModel, CLIPTextModel, list[float]]:
    """Train UNet + text encoder jointly on scaled latents (N, 4, 16, 16) with token ids (N, 77).

    pixel_weights (N, 1, 16, 16) weight the per-latent-pixel loss (see foreground_weights).

    Returns the EMA copies (what gets shipped) and the loss curve.
    """
    assert len(ids) == len(latents), f"ids ({len(ids)}) and latents ({len(latents)}) must pair up"
    gen = torch.Generator().manual_seed(seed)
    noise_sched = DDPMScheduler.from_config(build_scheduler().config)
    alphas_cumprod = noise_sched.alphas_cumprod  # (1000,)
    params = [*unet.parameters(), *text_encoder.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    ema_unet, ema_text = Ema(unet, ema_decay), Ema(text_encoder, ema_decay)
    unet.train()
    text_encoder.train()
    losses: list[float] = []
    t0 = time.time()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup=100)
        idx = torch.randint(len(latents), (batch,), generator=gen)
        z0 = latents[idx]  # (B, 4, 16, 16)
        tok = ids[idx].clone()  # (B, 77)
        drop = torch.rand(batch, generator=gen) < uncond_prob
        tok[drop] = empty_ids
        t = sample_timesteps(batch, noise_sched.config.num_train_timesteps, t_focus, t_focus_prob, gen)
        noise = torch.randn(z0.shape, generator=gen)
        zt = noise_sched.add_noise(z0, noise, t)
        emb = text_encoder(tok)[0]  # (B, 77, D)
        pred = unet(zt, t, emb).sample  # (B, 4, 16, 16)
        ab = alphas_cumprod[t]
        snr = ab / (1 - ab)
        if noise_sched.config.prediction_type == "v_prediction":
            target = noise_sched.get_velocity(z0, noise, t)  # sqrt(ab) eps - sqrt(1 - ab) x0
            weight = torch.clamp(snr, max=snr_gamma) / (snr + 1) if snr_gamma > 0 else torch.ones_like(snr)
        else:
            target = noise
            weight = torch.clamp(snr, max=snr_gamma) / snr if snr_gamma > 0 else torch.ones_like(snr)
        w_px = pixel_weights[idx]  # (B, 1, 16, 16)
        sq = F.mse_loss(pred, target, reduction="none")  # (B, 4, 16, 16)
        per_sample = (sq * w_px).sum(dim=(1, 2, 3)) / (w_px.sum(dim=(1, 2, 3)) * sq.shape[1])  # (B,)
        loss = (weight * per_sample).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema_unet.update(unet, step)
        ema_text.update(text_encoder, step)
        losses.append(float(sq.mean().detach()))
        if step % 50 == 0 or step == steps - 1:
            log(f"unet step {step:5d}/{steps} mse {np.mean(losses[-50:]):.4f} {time.time() - t0:.0f}s")
        if on_snapshot is not None and snapshot_every and step > 0 and step % snapshot_every == 0:
            on_snapshot(ema_unet.module, ema_text.module, step)
    return ema_unet.module, ema_text.module, losses


def save_pipeline(
    out: pathlib.Path,
    vae: AutoencoderKL,
    text_encoder: CLIPTextModel,
    tokenizer: PreTrainedTokenizerFast,
    unet: UNet2DConditionModel,
) -> None:
    """Write a StableDiffusionPipeline folder (no safety checker, safetensors weights only)."""
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(out), safe_serialization=True)
    _portable_tokenizer_class(out)


def _portable_tokenizer_class(out: pathlib.Path) -> None:
    """Name the tokenizer class "PreTrainedTokenizerFast" (transformers 5 writes its alias "TokenizersBackend").

    Why: the 4.x name loads under both transformers 4 and 5, the 5.x name only under 5.
    """
    index_path, config_path = out / "model_index.json", out / "tokenizer" / "tokenizer_config.json"
    index = json.loads(index_path.read_text())
    index["tokenizer"] = ["transformers", "PreTrainedTokenizerFast"]
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def vae_stage(args: argparse.Namespace, images: np.ndarray, scenes: list[Scene], log: Log) -> tuple[AutoencoderKL, torch.Tensor, dict]:
    """Train the VAE, probe it, set scaling_factor from the target latents; returns (vae, scaled latents, info).

    Cached under --cache-dir by a key of every argument that affects it, so UNet experiments reuse one VAE;
    the cached info keeps the wall time the stage took when it really ran.
    """
    keys = ("seed", "num_images", "vae_steps", "vae_batch", "vae_lr", "kl_weight", "target_weight", "vae_groups",
            "perturb", "vae_recipe")
    key = hashlib.sha1(json.dumps({k: getattr(args, k) for k in keys}, sort_keys=True).encode()).hexdigest()[:12]
    cache = args.cache_dir / f"vae-{key}" if str(args.cache_dir) not in ("", ".") else None
    if cache is not None and (cache / "info.json").exists():
        log(f"reusing cached VAE stage {cache}")
        vae = AutoencoderKL.from_pretrained(str(cache / "vae")).eval()
        return vae, torch.load(cache / "latents.pt"), json.loads((cache / "info.json").read_text())
    t0 = time.time()
    vae = build_vae(args.vae_groups)
    targets = latent_targets(images, scenes)  # (N, 4, 16, 16)
    losses = train_vae(
        vae,
        images,
        targets,
        steps=args.vae_steps,
        batch=args.vae_batch,
        lr=args.vae_lr,
        kl_weight=args.kl_weight,
        target_weight=args.target_weight,
        perturb=tuple(args.perturb),
        seed=args.seed + 1,
        log=log,
    )
    probe = probe_vae(vae)
    log(f"vae probe (judge on reconstructions): {probe}")
    raw = targets  # (N, 4, 16, 16): the UNet learns the target latent space
    encoded = encode_latents(vae, images[:1000])  # (1000, 4, 16, 16)
    log(f"encoder vs target latents: mse {float(F.mse_loss(encoded, raw[:1000])):.4f}")
    std = float(raw.std())
    vae.register_to_config(scaling_factor=1.0 / std)
    log(f"encoded latents {tuple(raw.shape)}, mean {float(raw.mean()):.3f} std {std:.3f} -> scaling_factor {1 / std:.4f}")
    info = {"seconds": round(time.time() - t0), "final_rec": float(np.mean(losses[-50:])) if losses else None,
            "probe": probe, "scaling_factor": 1.0 / std, "latent_mean": float(raw.mean()), "latent_std": std}
    latents = raw * vae.config.scaling_factor
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        vae.save_pretrained(str(cache / "vae"), safe_serialization=True)
        torch.save(latents, cache / "latents.pt")
        (cache / "info.json").write_text(json.dumps(info, indent=2))
    return vae, latents, info


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keep the module docstring's layout and show every option's default."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vdgraph_shapes.train", description=__doc__, formatter_class=_Formatter,
                                epilog="The defaults reproduce the shipped shapes-64 byte for byte (same torch build and "
                                       "--threads); about 30 minutes on 2 CPU cores.")
    p.add_argument("--out", type=pathlib.Path, required=True, help="output pipeline folder")
    p.add_argument("--seed", type=int, default=0, help="seeds the dataset, the VAE and the UNet stages")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (results depend on it bit-wise)")
    p.add_argument("--num-images", type=int, default=16000, help="rendered training images")
    p.add_argument("--vae-steps", type=int, default=800, help="VAE optimiser steps")
    p.add_argument("--vae-batch", type=int, default=16, help="VAE batch size")
    p.add_argument("--vae-lr", type=float, default=2e-3, help="VAE peak learning rate")
    p.add_argument("--kl-weight", type=float, default=1e-6, help="weight of the VAE's KL term")
    p.add_argument("--target-weight", type=float, default=1.0,
                   help="pull the latent to (colour thumbnail, shape-class map), see latent_targets")
    p.add_argument("--perturb", type=float, nargs=3, default=[0.7, 0.3, 0.1],
                   help="decoder robustness: probability, smooth-noise and white-noise amplitude")
    p.add_argument("--vae-groups", type=int, default=2, help="GroupNorm groups in the VAE")
    p.add_argument("--vae-recipe", default="targets-v2", help=argparse.SUPPRESS)  # cache key of the VAE recipe
    p.add_argument("--cache-dir", type=pathlib.Path, default=pathlib.Path("/tmp/vdgraph_shapes_cache"),
                   help="where the VAE stage (weights + latents) is cached; '' disables")
    p.add_argument("--unet-steps", type=int, default=3000, help="UNet + text-encoder optimiser steps")
    p.add_argument("--batch", type=int, default=32, help="UNet batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="UNet peak learning rate (warmup, cosine decay)")
    p.add_argument("--uncond-prob", type=float, default=0.1, help="share of empty captions (classifier-free guidance)")
    p.add_argument("--snr-gamma", type=float, default=0.0,
                   help="min-SNR-gamma loss weighting; 0 = plain v-MSE. min-SNR-5 weights v-loss by "
                        "~snr at high noise, where the prompt decides the layout, and the shapes never formed")
    p.add_argument("--ema-decay", type=float, default=0.998, help="EMA decay of the shipped UNet and text encoder")
    p.add_argument("--fg-weight", type=float, default=4.0, help="extra loss weight on the shape's latent pixels")
    p.add_argument("--t-focus", type=int, nargs=2, default=[350, 850], help="timestep band sampled extra")
    p.add_argument("--t-focus-prob", type=float, default=0.5, help="share of timesteps drawn from --t-focus")
    p.add_argument("--text-hidden", type=int, default=64, help="text encoder width (= UNet cross-attention dim)")
    p.add_argument("--text-layers", type=int, default=2, help="text encoder layers")
    p.add_argument("--unet-channels", type=int, nargs=3, default=[32, 64, 64], help="UNet block widths at 16, 8, 4 px")
    p.add_argument("--unet-groups", type=int, default=8, help="GroupNorm groups in the UNet")
    p.add_argument("--snapshot-every", type=int, default=500, help="save the EMA model every N UNet steps (0: never)")
    return p.parse_args(argv)


def start_run(args: argparse.Namespace) -> tuple[pathlib.Path, Callable[[str], None], float]:
    """What every shapes trainer does first: torch's thread count and seed from `args`, the output folder
    `args.out` made, and a log that prefixes each line with the seconds since now; returns (the folder, the log,
    the start time)."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out: pathlib.Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - start:7.1f}s] {msg}", flush=True)

    return out, log, start


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out, log, start = start_run(args)

    scenes = sample_scenes(args.num_images, args.seed)
    images = render_scenes(scenes)  # (N, 64, 64, 3)
    captions = [caption(s) for s in scenes]
    log(f"rendered {len(images)} images")
    vae, latents, vae_info = vae_stage(args, images, scenes, log)
    log(f"vae stage: {vae_info}")

    tokenizer = build_tokenizer()
    text_encoder = build_text_encoder(tokenizer, args.text_hidden, args.text_layers)
    unet = build_unet(args.text_hidden, tuple(args.unet_channels), args.unet_groups)
    ids = tokenize(tokenizer, captions)  # (N, 77)
    empty_ids = tokenize(tokenizer, [""])[0]  # (77,)
    n_unet = sum(p.numel() for p in unet.parameters())
    n_text = sum(p.numel() for p in text_encoder.parameters())
    n_vae = sum(p.numel() for p in vae.parameters())
    log(f"params: unet {n_unet:,} text {n_text:,} vae {n_vae:,}")

    def snapshot(u: UNet2DConditionModel, te: CLIPTextModel, step: int) -> None:
        save_pipeline(out, vae, te, tokenizer, u)
        log(f"snapshot at step {step} -> {out}")

    unet_start = time.time()
    ema_unet, ema_text, unet_losses = train_denoiser(
        unet,
        text_encoder,
        ids,
        empty_ids,
        latents,
        foreground_weights(images, args.fg_weight),
        steps=args.unet_steps,
        batch=args.batch,
        lr=args.lr,
        uncond_prob=args.uncond_prob,
        snr_gamma=args.snr_gamma,
        ema_decay=args.ema_decay,
        t_focus=tuple(args.t_focus),
        t_focus_prob=args.t_focus_prob,
        seed=args.seed + 2,
        log=log,
        on_snapshot=snapshot,
        snapshot_every=args.snapshot_every,
    )
    save_pipeline(out, vae, ema_text, tokenizer, ema_unet)
    unet_s = time.time() - unet_start
    total = time.time() - start
    log(f"done: this run {total:.0f}s (denoiser stage {unet_s:.0f}s); VAE stage took {vae_info['seconds']}s -> {out}")
    report = {
        "args": {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()
                 if k not in ("out", "cache_dir")},
        "params": {"unet": n_unet, "text_encoder": n_text, "vae": n_vae},
        "scaling_factor": vae.config.scaling_factor,
        "vae_stage": vae_info,
        "wall_time_s": {"vae_stage": vae_info["seconds"], "denoiser_stage": round(unet_s),
                        "this_run_total": round(total)},
        "final_losses": {
            "unet_mse": float(np.mean(unet_losses[-100:])) if unet_losses else None,
        },
        "torch": torch.__version__,
    }
    (out / "training.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
