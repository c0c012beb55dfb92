"""Measure the shapes model's gates with the judge.

    python -m vdgraph_shapes.evaluate --model DIR [--pairs 48] [--steps 20] [--guidance 4] [--t2vz-prompts 6]

Images: StableDiffusionPipeline (DDIM) on prompt/seed pairs that cover every colour as shape colour and as
background and every shape; the judge scores background / shape colour / shape class. Video: the deprecated but
stock TextToVideoZeroPipeline at 64x64 with t0/t1 scaled to the step count; the judge scores identity
consistency across frames (and, for information, prompt adherence and motion against the motion field).
Why a script and not only tests: the gates take a minute of CPU, too slow for the unit-test budget.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch

from vdgraph_shapes.judge import judge_frame, judge_video
from vdgraph_shapes.metrics import identity_consistency, motion_accuracy, prompt_adherence, temporal_consistency
from vdgraph_shapes.world import COLOURS, IMAGE_SIZE, SHAPES


def gate_prompts(n: int) -> list[str]:
    """n prompts cycling backgrounds, shape colours (every offset from the background) and shapes.

    With n >= 48 every colour appears as background and as shape colour, and every shape with every background.
    """
    names = list(COLOURS)
    k = len(names)
    prompts = []
    for i in range(n):
        bg = names[i % k]
        fg = names[(i % k + 1 + (i // k) % (k - 1)) % k]
        prompts.append(f"a {fg} {SHAPES[i % len(SHAPES)]} on a {bg} background")
    return prompts


def load_image_pipeline(model: str):  # -> StableDiffusionPipeline
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, use_safetensors=True,
                                                   trust_remote_code=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate_images(pipe, prompts: list[str], seeds: list[int], steps: int, guidance: float, batch: int = 16) -> np.ndarray:
    """(N, 64, 64, 3) float images in [0, 1], one per (prompt, seed), each with its own CPU generator."""
    out = []
    for i in range(0, len(prompts), batch):
        gens = [torch.Generator("cpu").manual_seed(s) for s in seeds[i : i + batch]]
        res = pipe(
            prompts[i : i + batch],
            num_inference_steps=steps,
            guidance_scale=guidance,
            height=IMAGE_SIZE,
            width=IMAGE_SIZE,
            generator=gens,
            output_type="np",
        )
        out.append(res.images)
    return np.concatenate(out)


def image_gates(pipe, n: int, steps: int, guidance: float, seed: int = 0) -> dict:
    """Judge accuracies on n prompt/seed pairs."""
    prompts = gate_prompts(n)
    seeds = [seed + i for i in range(n)]
    t0 = time.time()
    images = generate_images(pipe, prompts, seeds, steps, guidance)
    gen_s = time.time() - t0
    hits = {"background": [], "colour": [], "shape": []}
    failures = []
    for prompt, img in zip(prompts, images, strict=True):
        r = prompt_adherence(img[None], prompt)
        for k in hits:
            hits[k].append(r[k][0])
        if not r["all"][0]:
            j = judge_frame(img)
            failures.append(f"{prompt!r} -> {j.colour} {j.shape} on {j.background}")
    rates = {k: float(np.mean(v)) for k, v in hits.items()}
    rates["all"] = float(np.mean([a and b and c for a, b, c in zip(*hits.values(), strict=True)]))
    return {"pairs": n, "steps": steps, "guidance": guidance, "seconds": round(gen_s, 1), **rates,
            "failures": failures, "images": images, "prompts": prompts}


def video_gates(model: str, prompts: list[str], steps: int, guidance: float, t0: int, t1: int,
                frames: int, strength: float) -> dict:
    """Text2Video-Zero identity consistency (and adherence / motion for information) over several prompts."""
    from diffusers import TextToVideoZeroPipeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = TextToVideoZeroPipeline.from_pretrained(
            model, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
            use_safetensors=True, trust_remote_code=False,
        )
    pipe.set_progress_bar_config(disable=True)
    px_per_frame = strength / 512 * IMAGE_SIZE  # the motion field shifts by strength/512 of the image per frame
    rows, videos = [], []
    t_start = time.time()
    for i, prompt in enumerate(prompts):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = pipe(
                prompt=prompt,
                video_length=frames,
                num_inference_steps=steps,
                guidance_scale=guidance,
                t0=t0,
                t1=t1,
                motion_field_strength_x=strength,
                motion_field_strength_y=strength,
                height=IMAGE_SIZE,
                width=IMAGE_SIZE,
                generator=torch.Generator("cpu").manual_seed(1000 + i),
                output_type="np",
            )
        video = np.asarray(res.images, dtype=np.float32)  # (F, H, W, 3)
        videos.append(video)
        js = judge_video(video)
        adher = prompt_adherence(video, prompt, js)
        motion = motion_accuracy(video, px_per_frame, px_per_frame, js)
        rows.append({
            "prompt": prompt,
            "identity": identity_consistency(video, js),
            "adherence_all": adher["all_rate"],
            "frame0_all": adher["all"][0],
            "motion_measured": motion["measured"],
            "motion_mae": motion["mae"],
            "direction_correct": motion["direction_correct"],
            "temporal_consistency": temporal_consistency(video),
        })
    secs = time.time() - t_start
    return {
        "prompts": len(prompts), "frames": frames, "steps": steps, "t0": t0, "t1": t1, "strength": strength,
        "commanded_px_per_frame": px_per_frame, "seconds_per_video": round(secs / max(1, len(prompts)), 2),
        "identity_consistency": float(np.mean([r["identity"] for r in rows])),
        "adherence_all": float(np.mean([r["adherence_all"] for r in rows])),
        "rows": rows, "videos": videos,
    }


def save_grid(images: np.ndarray, path: str, cols: int = 16) -> None:
    """Tile (N, H, W, 3) float images into one PNG for eyeballing."""
    from PIL import Image

    n, h, w, _ = images.shape
    rows = (n + cols - 1) // cols
    grid = np.ones((rows * h, cols * w, 3), dtype=np.float32)
    for i, img in enumerate(images):
        grid[(i // cols) * h : (i // cols + 1) * h, (i % cols) * w : (i % cols + 1) * w] = img
    Image.fromarray((grid * 255).round().astype(np.uint8)).save(path)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--pairs", type=int, default=48)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--t2vz-prompts", type=int, default=6, help="0 skips Text2Video-Zero")
    p.add_argument("--t0", type=int, default=14)
    p.add_argument("--t1", type=int, default=17)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--strength", type=float, default=12.0, help="motion_field_strength_x/y")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--grid", default=None, help="write the generated images to this PNG")
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    report: dict = {}
    if args.pairs:
        pipe = load_image_pipeline(args.model)
        img = image_gates(pipe, args.pairs, args.steps, args.guidance, args.seed)
        if args.grid:
            save_grid(img["images"], args.grid)
        report["images"] = {k: v for k, v in img.items() if k not in ("images", "prompts")}
        print(
            f"images: {img['pairs']} pairs, {args.steps} DDIM steps, guidance {args.guidance}: "
            f"background {100 * img['background']:.1f}%  colour {100 * img['colour']:.1f}%  "
            f"class {100 * img['shape']:.1f}%  all {100 * img['all']:.1f}%  ({img['seconds']}s)"
        )
        for f in img["failures"]:
            print("  miss:", f)
    if args.t2vz_prompts:
        pool = gate_prompts(48)
        prompts = [pool[(13 * i) % len(pool)] for i in range(args.t2vz_prompts)]  # varied colours and shapes
        vid = video_gates(args.model, prompts, args.steps, args.guidance, args.t0, args.t1, args.frames, args.strength)
        if args.grid:
            save_grid(np.concatenate(vid["videos"]), args.grid.replace(".png", "_t2vz.png"), cols=args.frames)
        report["t2vz"] = {k: v for k, v in vid.items() if k != "videos"}
        print(
            f"t2vz: {vid['prompts']} videos x {vid['frames']} frames, t0/t1 {args.t0}/{args.t1}: identity consistency "
            f"{vid['identity_consistency']:.3f}, all-attribute adherence {vid['adherence_all']:.3f}, "
            f"{vid['seconds_per_video']}s/video"
        )
        for r in vid["rows"]:
            print(f"  {r['prompt']!r}: identity {r['identity']:.2f} adherence {r['adherence_all']:.2f} "
                  f"motion {tuple(round(m, 2) for m in r['motion_measured'])} px/frame "
                  f"(commanded {vid['commanded_px_per_frame']:.2f}) direction {r['direction_correct']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2, default=str)


if __name__ == "__main__":
    main()
