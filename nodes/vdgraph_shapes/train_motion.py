"""Train "shapes-64-motion": an AnimateDiff motion adapter for shapes-64, on clips of the shapes world in motion.

    python -m vdgraph_shapes.train_motion --out DIR [--seed 0] [--steps N] ...

As AnimateDiff trains its motion modules: shapes-64's UNet is inflated with a fresh diffusers `MotionAdapter`
(`UNetMotionModel.from_unet2d`, with shapes-64's text add-embedding restored as vdgraph's video.apply_motion_adapter
restores it: vdgraph_video.ops.motion_text), every image weight is frozen (`freeze_unet2d_params`) and only the temporal
motion modules learn, with v-prediction on 16-frame clips whose captions name the motion
("a red circle on a blue background moving left", "... standing still"). The clips are rendered on the fly
from a seeded generator; their latents are the exact target latents of shapes-64's latent layout
(train.latent_targets), so no VAE runs during training.

Why the text encoder gains rows: the motion modules attend over frames only (no cross-attention), so the motion
words reach them through the frozen image layers (the spatial cross-attention on the text states and the text
add-embedding of every ResNet). shapes-64's word-level tokenizer
has no motion words (they all read as <unk>), so the tokenizer is extended with MOTION_WORDS appended after the
existing vocabulary (every existing id is unchanged) and the text encoder's token-embedding table with one new
row per word. Only those new rows are trained with the motion modules (textual-inversion style); every
pre-existing weight, including the old embedding rows, is frozen and checked bit-identical at the end, so
shapes-64 renders every image caption exactly as before.

Options for the caption's direction (nodes/vdgraph_shapes/README.md has the runs): --text-route-width (a direct
text route into the motion modules, saved beside the adapter) with --route-probe-weight (the route's pooled text
must name the direction) and --motion-reward-weight (a clip drawn from pure noise with the gates' sampler must move
as its caption says: what taught the shipped adapter the direction); tried and not needed: --contrast-weight (a
hinge on the loss under other motion words) and --shared-noise (mixed noise, PYoCo's prior).

Writes DIR/config.json + DIR/diffusion_pytorch_model.safetensors (the MotionAdapter, EMA weights),
DIR/text_route.json + DIR/text_route.safetensors (with --text-route-width), DIR/training.json, and
DIR/text_encoder/ + DIR/tokenizer/ (the extended text side, which replaces shapes-64's
`model/text_encoder` and `model/tokenizer`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import re
import shlex
import time

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, MotionAdapter, UNet2DConditionModel, UNetMotionModel
from transformers import CLIPTextModel

from vdgraph_shapes.components import VAE_REDUCTION, build_scheduler, build_tokenizer
from vdgraph_shapes.models import MODEL_DIR
from vdgraph_shapes.train import (
    Ema,
    foreground_weights,
    latent_targets,
    lr_at,
    render_scenes,
    sample_timesteps,
    start_run,
    tokenize,
)
from vdgraph_shapes.world import COLOURS, IMAGE_SIZE, MARGIN, SHAPES, Scene, sample_scene
from vdgraph_video.ops.motion_text import MotionTextRoute, attach_text_route, restore_text_embedding
from vdgraph_video.ops.noise import sample_noise

MOTION_WORDS: tuple[str, ...] = ("moving", "left", "right", "up", "down", "standing", "still")
"""Words the motion captions add to shapes-64's vocabulary, appended in this order (ids 19..25)."""

DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1),
                                         "still": (0, 0)}
"""Motion name -> unit image-space direction (x right, y down)."""

SPEED: float = 1.5
"""Pixels per frame of every moving caption (the caption's speed: "moving left" means 1.5 px/frame left)."""

FRAMES: int = 16
"""Frames per training clip (the motion module's window, as AnimateDiff's)."""

_MOTION_CAPTION_RE = re.compile(
    r"^\s*an?\s+(\w+)\s+(\w+)\s+on\s+an?\s+(\w+)\s+background\s+(?:moving\s+(left|right|up|down)|standing\s+still)"
    r"\s*\.?\s*$", re.IGNORECASE)


def motion_caption(colour: str, shape: str, direction: str, background: str) -> str:
    """"a red circle on a blue background moving left", or "... standing still" for direction "still".

    Why the motion words come last: shapes-64's text encoder is causal and frozen, so with the image caption as a
    prefix its hidden states for the image words are exactly the image caption's, and the image model draws the
    colours and shape as it always did. Inserted before "on a ... background" ("a red circle moving left on a blue
    background") they move the background words to positions the encoder never saw them at: the first run (150
    steps) drew the wrong background in every frame of "a green circle moving left on a red background".
    """
    assert direction in DIRECTIONS, f"unknown direction {direction!r}; known: {list(DIRECTIONS)}"
    motion = "standing still" if direction == "still" else f"moving {direction}"
    return f"a {colour} {shape} on a {background} background {motion}"


def parse_motion_caption(text: str) -> tuple[str, str, str, str]:
    """Parse a motion caption into (colour, shape, direction, background); ValueError says why not."""
    m = _MOTION_CAPTION_RE.match(text)
    if m is None:
        raise ValueError(f"not a motion caption (expected 'a <colour> <shape> on a <colour> background moving "
                         f"<left|right|up|down>' or '... background standing still'): {text!r}")
    colour, shape, background, direction = m.group(1).lower(), m.group(2).lower(), m.group(3).lower(), m.group(4)
    direction = direction.lower() if direction else "still"
    for word, known in ((colour, COLOURS), (shape, SHAPES), (background, COLOURS)):
        if word not in known:
            raise ValueError(f"unknown word {word!r} in {text!r}; known: {sorted(known)}")
    return colour, shape, direction, background


def image_caption(text: str) -> str:
    """The motion caption without its motion words ("a red circle on a blue background"), for the image judge."""
    colour, shape, _, background = parse_motion_caption(text)
    return f"a {colour} {shape} on a {background} background"


@dataclasses.dataclass(frozen=True)
class Clip:
    """One training clip's ground truth: the per-frame scenes and the motion named by its caption."""

    scenes: tuple[Scene, ...]
    direction: str
    speed: float

    @property
    def caption(self) -> str:
        return self.caption_moving(self.direction)

    def caption_moving(self, direction: str) -> str:
        """This clip's scene captioned with `direction` (its own or another, for the motion-word diagnostics)."""
        s = self.scenes[0]
        return motion_caption(s.colour, s.shape, direction, s.background)


def sample_clip(rng: np.random.Generator, frames: int = FRAMES, speed: float = SPEED, direction: str | None = None,
                base: Scene | None = None) -> Clip:
    """A scene (sample_scene's colours, shape and size, or `base`'s) moving in a uniformly drawn direction (or
    `direction`; "still" stands still) at `speed` px/frame, placed so that the shape stays fully in view (MARGIN
    from the border) in every frame."""
    base = sample_scene(rng) if base is None else base
    if direction is None:
        direction = list(DIRECTIONS)[int(rng.integers(len(DIRECTIONS)))]
    ux, uy = DIRECTIONS[direction]
    travel = speed * (frames - 1)
    lo, hi = base.size / 2 + MARGIN, IMAGE_SIZE - base.size / 2 - MARGIN
    assert hi - lo >= travel, f"a {base.size:.1f} px shape cannot travel {travel} px in view"

    def start(u: int) -> float:  # along an axis: leave room for the travel in the direction of motion
        if u > 0:
            return float(rng.uniform(lo, hi - travel))
        if u < 0:
            return float(rng.uniform(lo + travel, hi))
        return float(rng.uniform(lo, hi))

    x0, y0 = start(ux), start(uy)
    scenes = tuple(dataclasses.replace(base, x=x0 + ux * speed * k, y=y0 + uy * speed * k) for k in range(frames))
    return Clip(scenes=scenes, direction=direction, speed=speed)


def overfit_clips(rng: np.random.Generator, frames: int, speed: float) -> list[Clip]:
    """The --overfit diagnostic's whole training set: one scene moving left, right, up and down (4 clips)."""
    base = sample_scene(rng)
    return [sample_clip(rng, frames, speed, direction, base) for direction in ("left", "right", "up", "down")]


def build_adapter(heads: int = 2, max_seq_length: int = 32) -> MotionAdapter:
    """A MotionAdapter sized to shapes-64's UNet: block_out_channels (32, 64, 64), one motion layer per block (the
    UNet's layers_per_block), one transformer layer per motion module, `heads` heads, GroupNorm of 8 groups (as
    the UNet's), a mid-block module; every module's output projection starts at zero (as AnimateDiff's
    zero_initialize), so the untrained adapter leaves every frame exactly as the image model draws it."""
    adapter = MotionAdapter(
        block_out_channels=(32, 64, 64),
        motion_layers_per_block=1,
        motion_transformer_layers_per_block=1,
        motion_mid_block_layers_per_block=1,
        motion_transformer_layers_per_mid_block=1,
        motion_num_attention_heads=heads,
        motion_norm_num_groups=8,
        motion_max_seq_length=max_seq_length,
        use_motion_mid_block=True,
    )
    with torch.no_grad():
        for name, param in adapter.named_parameters():
            if ".proj_out." in name:
                param.zero_()
    return adapter


def inflate(unet: UNet2DConditionModel, adapter: MotionAdapter,
            route: MotionTextRoute | None = None) -> UNetMotionModel:
    """shapes-64's UNet with the adapter's motion modules (and the text route into them, when given), image
    weights frozen, as video.apply_motion_adapter builds it. The model's motion modules ARE the adapter's (shared
    modules, not copies), so training the model trains the adapter that gets saved."""
    model = restore_text_embedding(UNetMotionModel.from_unet2d(unet, adapter), unet)
    model.freeze_unet2d_params()
    for block, source in zip(model.down_blocks, adapter.down_blocks, strict=True):
        block.motion_modules = source.motion_modules
    for block, source in zip(model.up_blocks, adapter.up_blocks, strict=True):
        block.motion_modules = source.motion_modules
    model.mid_block.motion_modules = adapter.mid_block.motion_modules
    if route is not None:
        attach_text_route(model, route)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    allowed = {id(p) for p in adapter.parameters()} | {id(p) for p in (route.parameters() if route else ())}
    assert trainable == allowed, "only the adapter's motion modules and the text route may train"
    return model


def extend_text_encoder(text_encoder: CLIPTextModel, n_old: int, new_vocab: int, gen: torch.Generator) -> None:
    """Make the token-embedding table the `n_old` image-vocabulary rows (kept as they are) plus
    `new_vocab - n_old` new rows starting at the mean of the word rows plus noise of their spread.

    Why the first n_old rows rather than all: the shipped shapes-64 already carries the trained motion rows, and
    a re-run must start from the image model alone to reproduce them.
    """
    old = text_encoder.get_input_embeddings()
    assert old.weight.shape[0] >= n_old, f"the text encoder has {old.weight.shape[0]} rows, fewer than {n_old}"
    dim = old.weight.shape[1]
    assert new_vocab > n_old, f"nothing to add: {new_vocab} <= {n_old}"
    kept = old.weight.detach()[:n_old]  # (n_old, D)
    words = kept[4:]  # (n_words, D) the word rows (ids 0..3 are special tokens)
    fresh = words.mean(0) + words.std(0) * torch.randn((new_vocab - n_old, dim), generator=gen)  # (new, D)
    table = torch.nn.Embedding(new_vocab, dim)
    with torch.no_grad():
        table.weight.copy_(torch.cat([kept, fresh]))
    text_encoder.set_input_embeddings(table)
    text_encoder.config.vocab_size = new_vocab


def init_rows(embedding: torch.nn.Embedding, n_old: int, init: pathlib.Path, model: pathlib.Path) -> None:
    """Warm start: the new rows (n_old onwards) from init/text_encoder, or from model/text_encoder when init has
    none (the shipped shapes-64 carries the shipped adapter's rows); the image rows stay as they are."""
    folder = init / "text_encoder" if (init / "text_encoder").is_dir() else model / "text_encoder"
    rows = CLIPTextModel.from_pretrained(str(folder)).get_input_embeddings().weight.detach()  # (V', D)
    assert rows.shape == embedding.weight.shape, (
        f"{folder}: {tuple(rows.shape)} rows vs {tuple(embedding.weight.shape)}")
    assert torch.equal(rows[:n_old], embedding.weight.detach()[:n_old]), f"{folder} has other image-word rows"
    with torch.no_grad():
        embedding.weight[n_old:] = rows[n_old:]


def clip_batch(clips: list[Clip], scaling_factor: float, fg_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled target latents (B, 4, F, 16, 16) and per-latent-pixel loss weights (B, 1, F, 16, 16) of the clips."""
    scenes = [s for c in clips for s in c.scenes]
    images = render_scenes(scenes)  # (B*F, 64, 64, 3)
    b, f = len(clips), len(clips[0].scenes)
    z = latent_targets(images, scenes) * scaling_factor  # (B*F, 4, 16, 16)
    w = foreground_weights(images, fg_weight)  # (B*F, 1, 16, 16)
    return (z.reshape(b, f, *z.shape[1:]).permute(0, 2, 1, 3, 4).contiguous(),
            w.reshape(b, f, *w.shape[1:]).permute(0, 2, 1, 3, 4).contiguous())


def save_text_side(out: pathlib.Path, text_encoder: CLIPTextModel, tokenizer) -> None:
    """Write DIR/text_encoder (safetensors) and DIR/tokenizer with the class name train._portable_tokenizer_class
    uses (the 4.x name loads under transformers 4 and 5)."""
    text_encoder.save_pretrained(str(out / "text_encoder"), safe_serialization=True)
    tokenizer.save_pretrained(str(out / "tokenizer"))
    config_path = out / "tokenizer" / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def clip_losses(sq: torch.Tensor, w_px: torch.Tensor) -> torch.Tensor:
    """Per-clip loss (B,): squared errors (B, 4, F, 16, 16) weighted by the latent pixels' weights (B, 1, F, 16, 16),
    normalised by the weights' sum and the channels."""
    return (sq * w_px).sum(dim=(1, 2, 3, 4)) / (w_px.sum(dim=(1, 2, 3, 4)) * sq.shape[1])


OTHER_DIRECTION = {"left": "right", "right": "left", "up": "down", "down": "up", "still": "left"}


@torch.no_grad()
def wrong_words_ratio(model, text_encoder, tokenizer, clips: list[Clip], zt: torch.Tensor, t: torch.Tensor,
                      target: torch.Tensor, frames: int) -> float:
    """How much worse the model predicts `clips` with the opposite motion words (same noisy latents, same
    timesteps): the loss with the wrong captions over the loss with the right ones, both by the model as it is now.
    1.0 means the motion words are not used at all; the higher, the more the model reads them."""
    losses = []
    for captions in ([c.caption for c in clips], [c.caption_moving(OTHER_DIRECTION[c.direction]) for c in clips]):
        emb = text_encoder(tokenize(tokenizer, captions))[0].repeat_interleave(frames, dim=0)
        losses.append(F.mse_loss(model(zt, t, emb).sample, target))
    return float(losses[1] / losses[0])


def contrast_term(model, text_encoder, tokenizer, clips: list[Clip], zt: torch.Tensor, t: torch.Tensor,
                  target: torch.Tensor, w_px: torch.Tensor, right: torch.Tensor, use: torch.Tensor, margin: float,
                  frames: int, rng: np.random.Generator) -> torch.Tensor:
    """A hinge that asks the clips' loss under other motion words (another direction, drawn from `rng`) to exceed
    their loss under their own by `margin` (relative), on the clips selected by `use` (captioned, noisy enough that
    the words carry information the latents do not). The plain loss barely rewards reading the motion words (with
    the right ones it is within 1.5% of the wrong ones'), so this term rewards it directly; past the margin it asks
    nothing more."""
    if not bool(use.any()):
        return zt.new_zeros(())
    others = {d: [o for o in DIRECTIONS if o != d] for d in DIRECTIONS}
    wrong = [c.caption_moving(others[c.direction][int(rng.integers(4))]) for c, k in zip(clips, use.tolist()) if k]
    emb = text_encoder(tokenize(tokenizer, wrong))[0].repeat_interleave(frames, dim=0)
    sq = F.mse_loss(model(zt[use], t[use], emb).sample, target[use], reduction="none")
    wrong_loss = clip_losses(sq, w_px[use])  # (U,)
    return F.relu(margin - (wrong_loss - right[use]) / right[use].detach()).mean()


def latent_centroids(x0: torch.Tensor, colour: str, background: str) -> torch.Tensor:
    """Where the shape is in every frame of unscaled latents (4, F, 16, 16) of shapes-64's layout (channels 0..2
    the colour thumbnail in [-1, 1], train.latent_targets): each latent pixel's share of the shape's colour
    against the background's (clamped to [0, 1]) weighs its position. (F, 2) in latent pixels (x right, y down);
    differentiable, so a loss on it reaches the model that drew the latents."""
    fg, bg = (torch.tensor(COLOURS[c], dtype=x0.dtype) / 127.5 - 1.0 for c in (colour, background))  # (3,)
    axis = (fg - bg) / (fg - bg).pow(2).sum()  # (3,)
    share = torch.einsum("cfhw,c->fhw", x0[:3] - bg[:, None, None, None], axis).clamp(0, 1)  # (F, H, W)
    h, w = share.shape[1:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=x0.dtype), torch.arange(w, dtype=x0.dtype), indexing="ij")
    mass = share.sum(dim=(1, 2)) + 1e-3  # (F,)
    return torch.stack([(share * xs).sum(dim=(1, 2)) / mass, (share * ys).sum(dim=(1, 2)) / mass], dim=1)


def track_velocity(centroids: torch.Tensor) -> torch.Tensor:
    """Least-squares velocity (2,) of a track (F, 2): the slope of each coordinate over the frame index."""
    f = torch.arange(centroids.shape[0], dtype=centroids.dtype)
    f = f - f.mean()
    return (f[:, None] * (centroids - centroids.mean(0))).sum(0) / f.pow(2).sum()


def motion_reward_term(model, text_encoder, tokenizer, clip: Clip, scaling_factor: float, gen: torch.Generator,
                       guidance: float, steps: int, decided: int) -> torch.Tensor:
    """The motion of a video the model draws from pure noise, against its caption's (reward fine-tuning, as VADER
    aligns AnimateDiff with reward gradients). The first `decided` steps of the sampler the gates use (DDIM,
    `steps` trailing steps, classifier-free guidance `guidance`) run with gradients; the x0 the last of them
    predicts gives every frame's shape centroid (latent_centroids), and the loss is the squared distance between
    the track's velocity and the caption's, in units of the caption's speed (0 for "standing still": then in
    latent pixels per frame). Why: the diffusion loss is taken at one noise level on a clip's own noisy latents,
    whose noise already tells where the shape goes; the gate samples from noise that tells nothing, and there the
    caption must decide. This term asks for exactly that."""
    scene = clip.scenes[0]
    states = text_encoder(tokenize(tokenizer, ["", clip.caption]))[0]  # (2, 77, D)
    frames = len(clip.scenes)
    emb = states.repeat_interleave(frames, dim=0)  # (2F, 77, D): unconditional clip first, as the pipelines
    sched = build_scheduler()  # the gates' DDIM; its step is differentiable
    sched.set_timesteps(steps)
    x = torch.randn((1, 4, frames, 16, 16), generator=gen)
    assert decided >= 1, "the reward judges the x0 of at least one sampler step"
    for t in sched.timesteps[:decided]:
        v_u, v_c = model(torch.cat([x, x]), t, emb).sample.chunk(2)
        out = sched.step(v_u + guidance * (v_c - v_u), t, x)  # eta 0
        x = out.prev_sample
    x0 = out.pred_original_sample
    velocity = track_velocity(latent_centroids(x0[0] / scaling_factor, scene.colour, scene.background))  # (2,)
    ux, uy = DIRECTIONS[clip.direction]
    per_latent_px = clip.speed / VAE_REDUCTION  # the caption's speed in latent pixels per frame
    target = torch.tensor([ux, uy], dtype=velocity.dtype) * per_latent_px
    return (velocity - target).pow(2).sum() / (per_latent_px ** 2 if clip.direction != "still" else 1.0)


def command_line(args: argparse.Namespace) -> str:
    """The command that repeats this run, as a shell takes it: every option that differs from its default (the
    output folder as DIR)."""
    defaults = vars(parse_args(["--out", "x"]))
    words = ["python", "-m", "vdgraph_shapes.train_motion", "--out", "DIR"]
    for key, value in vars(args).items():
        if key == "out" or value == defaults[key]:
            continue
        words.append("--" + key.replace("_", "-"))
        if value is not True:
            words += [str(v) for v in (value if isinstance(value, list) else [value])]
    return shlex.join(words)


def warm_start_chain(init: pathlib.Path) -> list[dict]:
    """The runs a warm start stands on, oldest first: the --init folder's own chain, then that folder's run (its
    command, time and final loss, from its training.json). A folder without a readable training.json ends the
    chain with a note saying so (read at the warm start, so a bad record never costs a finished run its own)."""
    record = init / "training.json"
    try:
        before = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        why = "no training.json" if not record.is_file() else f"training.json unreadable ({type(exc).__name__})"
        return [{"run": str(init), "note": f"{why}: how these weights were made is not recorded"}]
    if not isinstance(before, dict):
        return [{"run": str(init), "note": "training.json is not a JSON object: how these weights were made is not "
                                           "recorded"}]
    chain = before.get("warm_start_chain", [])
    if not (isinstance(chain, list) and all(isinstance(entry, dict) for entry in chain)):
        chain = [{"note": "the chain before this run was not a list of runs and is left out"}]
    run = {"run": str(init), **{k: before[k] for k in ("command", "wall_time_s", "final_mse") if k in before}}
    return [*chain, run]


class _Trainable(torch.nn.Module):
    """What trains (and what the EMA follows): the adapter, its text route (when there is one) and the text
    encoder's token-embedding table."""

    def __init__(self, adapter: MotionAdapter, embedding: torch.nn.Embedding,
                 route: MotionTextRoute | None) -> None:
        super().__init__()
        self.adapter, self.embedding, self.route = adapter, embedding, route


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keep the module docstring's layout and show every option's default."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vdgraph_shapes.train_motion", description=__doc__,
                                formatter_class=_Formatter)
    p.add_argument("--out", type=pathlib.Path, required=True, help="output folder (MotionAdapter layout)")
    p.add_argument("--model", type=pathlib.Path, default=MODEL_DIR,
                   help="the shapes-64 folder whose UNet, text encoder and VAE scaling factor are used")
    p.add_argument("--seed", type=int, default=0, help="seeds the clips, the noise and the new embedding rows")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (results depend on it bit-wise)")
    p.add_argument("--steps", type=int, default=600, help="optimiser steps")
    p.add_argument("--stop-after", type=int, default=None,
                   help="end after this many steps of a --steps schedule (its learning rates), saving as at the end: "
                        "a snapshot of a longer run, reproduced")
    p.add_argument("--batch", type=int, default=2, help="clips per step")
    p.add_argument("--frames", type=int, default=FRAMES, help="frames per clip")
    p.add_argument("--speed", type=float, default=SPEED, help="px/frame of every moving clip")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (warmup, cosine decay)")
    p.add_argument("--embedding-lr", type=float, default=None,
                   help="peak learning rate of the new token-embedding rows (default: --lr)")
    p.add_argument("--uncond-prob", type=float, default=0.1, help="share of empty captions (classifier-free guidance)")
    p.add_argument("--ema-decay", type=float, default=0.995, help="EMA decay of the saved weights")
    p.add_argument("--fg-weight", type=float, default=4.0, help="extra loss weight on the shape's latent pixels")
    p.add_argument("--t-focus", type=int, nargs=2, default=[400, 1000],
                   help="timestep band sampled extra (where the layout, hence the motion, is decided)")
    p.add_argument("--t-focus-prob", type=float, default=0.5, help="share of timesteps drawn from --t-focus")
    p.add_argument("--contrast-weight", type=float, default=0.0,
                   help="weight of the motion-word hinge (contrast_term; 0: off): the loss under the opposite motion "
                        "words must exceed the loss under the right ones by --contrast-margin")
    p.add_argument("--contrast-margin", type=float, default=0.1, help="relative margin of the hinge")
    p.add_argument("--contrast-t", type=int, default=700, help="the hinge applies to timesteps >= this")
    p.add_argument("--shared-noise", type=float, default=0.0,
                   help="share of the noise's variance common to every frame of a clip (video.noise's input "
                        "'shared', PYoCo's mixed noise prior): frames then disagree less by chance, so the motion "
                        "must come from the caption; sample with the same share")
    p.add_argument("--route-probe-weight", type=float, default=0.0,
                   help="weight of an auxiliary loss that asks a linear probe to name the caption's direction from "
                        "the text route's pooled features (training only; the probe is not saved): the plain loss "
                        "rewards reading the motion words so little that the route otherwise stays a constant")
    p.add_argument("--motion-reward-weight", type=float, default=0.0,
                   help="weight of the motion reward (motion_reward_term; 0: off): a video drawn from pure noise "
                        "with the gates' sampler must move as its caption says; its first --motion-reward-decided "
                        "steps run with gradients")
    p.add_argument("--motion-reward-every", type=int, default=1, help="take the motion reward every N steps")
    p.add_argument("--motion-reward-steps", type=int, default=10, help="the reward's sampler: DDIM steps")
    p.add_argument("--motion-reward-decided", type=int, default=3,
                   help="sampler steps run with gradients; the x0 predicted at the last of them is judged")
    p.add_argument("--motion-reward-guidance", type=float, default=4.0, help="the reward's sampler: guidance")
    p.add_argument("--heads", type=int, default=2, help="attention heads of every motion module")
    p.add_argument("--max-seq-length", type=int, default=32, help="frames the motion modules' positions cover")
    p.add_argument("--text-route-width", type=int, default=0,
                   help="width of a text route into the motion modules (vdgraph_video.ops.motion_text."
                        "MotionTextRoute, e.g. 128); 0: none, the motion words reach the modules only through the "
                        "image layers (as for the shipped adapter)")
    p.add_argument("--snapshot-every", type=int, default=100, help="save the EMA weights every N steps (0: never)")
    p.add_argument("--init", type=pathlib.Path, default=None,
                   help="warm start: a MotionAdapter folder (e.g. the shipped motion/) whose weights the adapter "
                        "(and its text route, when the folder has one) starts from, and whose text_encoder/ (or, "
                        "when it has none, --model's) gives the motion words' embedding rows")
    p.add_argument("--overfit", action="store_true",
                   help="diagnostic: train on 4 fixed clips only (one scene moving left, right, up, down)")
    args = p.parse_args(argv)
    if args.route_probe_weight and not args.text_route_width:
        p.error("--route-probe-weight probes the text route's features: give --text-route-width too")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out, log, start = start_run(args)

    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)
    unet = UNet2DConditionModel.from_pretrained(str(args.model / "unet")).eval()
    scaling_factor = float(json.loads((args.model / "vae" / "config.json").read_text())["scaling_factor"])
    text_encoder = CLIPTextModel.from_pretrained(str(args.model / "text_encoder")).eval().requires_grad_(False)
    tokenizer = build_tokenizer(MOTION_WORDS)
    n_old = len(build_tokenizer())  # the image vocabulary: shapes-64's ids, unchanged
    extend_text_encoder(text_encoder, n_old, len(tokenizer), gen)
    embedding = text_encoder.get_input_embeddings()
    old_rows = embedding.weight.detach()[:n_old].clone()  # (n_old, D)
    embedding.weight.requires_grad_(True)
    row_mask = (torch.arange(len(tokenizer)) >= n_old).float()[:, None]  # (V, 1): only new rows learn
    embedding.weight.register_hook(lambda g: g * row_mask)

    adapter = build_adapter(args.heads, args.max_seq_length)
    route = (MotionTextRoute.for_motion_modules(adapter, text_encoder.config.hidden_size, args.text_route_width)
             if args.text_route_width else None)
    if args.init is not None:
        init_rows(embedding, n_old, args.init, args.model)
        adapter.load_state_dict(MotionAdapter.from_pretrained(str(args.init), use_safetensors=True).state_dict())
        saved_route = MotionTextRoute.load(args.init)
        if route is not None and saved_route is not None:
            route.load_state_dict(saved_route.state_dict())
        log(f"warm start from {args.init}" + (" (its text route too)" if route and saved_route else ""))
    chain = warm_start_chain(args.init) if args.init is not None else None
    fixed = overfit_clips(rng, args.frames, args.speed) if args.overfit else None
    model = inflate(unet, adapter, route)
    route_probe = (torch.nn.Linear(route.width, len(DIRECTIONS)) if route is not None and args.route_probe_weight
                   else None)
    trainable = _Trainable(adapter, embedding, route)
    n_adapter = sum(p.numel() for p in adapter.parameters())
    n_route = sum(p.numel() for p in route.parameters()) if route else 0
    log(f"adapter {n_adapter:,} parameters, text route {n_route:,}; tokenizer {n_old} -> {len(tokenizer)} tokens; "
        f"frozen UNet {sum(p.numel() for p in unet.parameters()):,}")

    noise_sched = DDPMScheduler.from_config(build_scheduler().config)
    assert noise_sched.config.prediction_type == "v_prediction"
    # weight decay 0 on the embedding table: AdamW's decay would shrink the frozen rows even with a zero gradient
    embedding_lr = args.lr if args.embedding_lr is None else args.embedding_lr
    opt = torch.optim.AdamW([{"params": [*adapter.parameters(), *(route.parameters() if route else ()),
                                         *(route_probe.parameters() if route_probe else ())],
                              "weight_decay": 1e-4, "peak": args.lr},
                             {"params": [embedding.weight], "weight_decay": 0.0, "peak": embedding_lr}], lr=args.lr)
    ema = Ema(trainable, args.ema_decay)
    empty_ids = tokenize(tokenizer, [""])[0]  # (77,)
    model.train()
    losses: list[float] = []
    wrong_ratios: list[float] = []
    contrast_rng = np.random.default_rng(args.seed + 2)  # its own stream: the clips stay those of a run without it
    reward_rng, reward_gen = np.random.default_rng(args.seed + 3), torch.Generator().manual_seed(args.seed + 4)
    rewards: list[float] = []
    t0 = time.time()

    def save(module: _Trainable) -> None:
        module.adapter.save_pretrained(str(out), safe_serialization=True)
        if module.route is not None:
            module.route.save(out)
        te = CLIPTextModel(text_encoder.config)
        te.load_state_dict(text_encoder.state_dict())
        te.set_input_embeddings(module.embedding)
        save_text_side(out, te, tokenizer)

    run_steps = args.steps if args.stop_after is None else min(args.steps, args.stop_after)
    for step in range(run_steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, group["peak"], warmup=50)
        clips = ([fixed[(step * args.batch + i) % len(fixed)] for i in range(args.batch)] if fixed else
                 [sample_clip(rng, args.frames, args.speed) for _ in range(args.batch)])
        z0, w_px = clip_batch(clips, scaling_factor, args.fg_weight)  # (B, 4, F, 16, 16), (B, 1, F, 16, 16)
        tok = tokenize(tokenizer, [c.caption for c in clips])  # (B, 77)
        drop = torch.rand(args.batch, generator=gen) < args.uncond_prob
        tok[drop] = empty_ids
        t = sample_timesteps(args.batch, noise_sched.config.num_train_timesteps, tuple(args.t_focus),
                             args.t_focus_prob, gen)  # (B,)
        # video.noise's draw (shared 0: exactly torch.randn(z0.shape)); sample with the same share
        noise = sample_noise(tuple(z0.shape), "independent", gen, z0.device, z0.dtype, shared=args.shared_noise)
        zt = noise_sched.add_noise(z0, noise, t)
        target = noise_sched.get_velocity(z0, noise, t)  # sqrt(ab) eps - sqrt(1 - ab) x0
        states = text_encoder(tok)[0]  # (B, 77, D)
        emb = states.repeat_interleave(args.frames, dim=0)  # (B*F, 77, D) as AnimateDiffPipeline
        pred = model(zt, t, emb).sample  # (B, 4, F, 16, 16)
        sq = F.mse_loss(pred, target, reduction="none")  # (B, 4, F, 16, 16)
        per_clip = clip_losses(sq, w_px)  # (B,)
        loss = per_clip.mean()
        if route_probe is not None and bool((~drop).any()):  # the route's pooled text must tell the directions apart
            labels = torch.tensor([list(DIRECTIONS).index(c.direction) for c in clips])[~drop]
            loss = loss + args.route_probe_weight * F.cross_entropy(
                route_probe(route.pooled(states[~drop])), labels)
        if args.contrast_weight:
            loss = loss + args.contrast_weight * contrast_term(model, text_encoder, tokenizer, clips, zt, t, target,
                                                               w_px, per_clip, ~drop & (t >= args.contrast_t),
                                                               args.contrast_margin, args.frames, contrast_rng)
        if args.motion_reward_weight and step % args.motion_reward_every == 0:
            clip = sample_clip(reward_rng, args.frames, args.speed)
            reward = motion_reward_term(model, text_encoder, tokenizer, clip, scaling_factor, reward_gen,
                                        args.motion_reward_guidance, args.motion_reward_steps,
                                        args.motion_reward_decided)
            rewards.append(float(reward.detach()))
            loss = loss + args.motion_reward_weight * reward
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*trainable.parameters()], 1.0)
        opt.step()
        ema.update(trainable, step)
        losses.append(float(sq.mean().detach()))
        if step % 25 == 0 or step == run_steps - 1:
            wrong_ratios.append(wrong_words_ratio(model, text_encoder, tokenizer, clips, zt, t, target, args.frames))
            log(f"step {step:5d}/{args.steps} mse {np.mean(losses[-50:]):.4f} wrong/right motion words "
                f"{np.nanmean(wrong_ratios[-8:]):.3f}"
                + (f" motion reward loss {np.mean(rewards[-25:]):.3f}" if rewards else "")
                + f" {(time.time() - t0) / (step + 1):.2f}s/step")
        if args.snapshot_every and step > 0 and step % args.snapshot_every == 0:
            save(ema.module)
            log(f"snapshot at step {step} -> {out}")
    assert torch.equal(embedding.weight.detach()[:n_old], old_rows), "a frozen embedding row changed"
    assert torch.equal(ema.module.embedding.weight.detach()[:n_old], old_rows), "a frozen EMA embedding row changed"
    save(ema.module)
    seconds = time.time() - t0
    log(f"done: {seconds:.0f}s training, {time.time() - start:.0f}s in all -> {out}")
    report = {
        "command": command_line(args),
        "args": {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()
                 if k not in ("out", "model")},
        "adapter_parameters": n_adapter,
        "new_words": list(MOTION_WORDS),
        "tokenizer_size": {"before": n_old, "after": len(tokenizer)},
        "wall_time_s": {"training": round(seconds), "total": round(time.time() - start)},
        "seconds_per_step": round(seconds / max(1, run_steps), 3),
        "final_mse": float(np.mean(losses[-100:])) if losses else math.nan,
        "final_wrong_words_loss_ratio": float(np.nanmean(wrong_ratios[-8:])) if wrong_ratios else math.nan,
        "text_route_parameters": n_route,
        "machine": "this project's 2-core machine, shared with other work; 1 torch thread",
        "torch": torch.__version__,
    }
    if chain is not None:
        report["warm_start_chain"] = chain
    (out / "training.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
