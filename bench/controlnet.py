"""Text2Video-Zero ControlNet: text2video_zero_controlnet.json against diffusers' documented recipe, one process.

    .venv/bin/python bench/controlnet.py [--frames 8] [--steps 20] [--rounds 3] [--threads 1]

A random "small" model (64x64 images, three UNet levels, from tests/video_fixtures.py) and a ControlNetModel made
from its UNet are saved to a temporary folder; both sides load them from there with safetensors, inside the timed
region. The condition images are seeded random 64x64 PNG frames. Reference: StableDiffusionControlNetPipeline with
CrossFrameAttnProcessor2_0(batch_size=2) on unet and controlnet, latents randn(1, 4, h, w) repeated over the
frames, the prompt repeated, DDIM. Ours: a fresh vdgraph.Executor per round (no cache help) up to `frames`.
Rounds alternate ours / reference; medians of the main thread's CPU time (steady on a shared machine) and wall
time. Peak RSS growth is sampled every millisecond around one more run per side in this same process (ours
first), so the second side may reuse memory the allocator kept from the first: read it as an upper bound on the
difference. The frames must match exactly.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
WORKFLOW = REPO / "workflows" / "text2video_zero_controlnet.json"
PROMPT = "a red circle on a blue background"


def run_ours(args, model: str, controlnet: str, video: str):
    import vdgraph

    inputs = {"model": model, "controlnet": controlnet, "control_video": video, "condition": "video", "prompt": PROMPT,
              "frames": args.frames, "height": 64, "width": 64, "steps": args.steps, "guidance": 7.5, "seed": 0}
    start, cpu = time.perf_counter(), time.thread_time()
    frames = vdgraph.Executor(device="cpu").run(WORKFLOW, inputs, outputs=["frames"])["frames"]
    return frames, time.perf_counter() - start, time.thread_time() - cpu


def run_reference(args, model: str, controlnet: str, video: str):
    import importlib

    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, TextToVideoZeroPipeline
    from PIL import Image
    from video_fixtures import load_reference_pipeline

    start, cpu = time.perf_counter(), time.thread_time()
    zero = load_reference_pipeline(model)
    net = ControlNetModel.from_pretrained(controlnet, use_safetensors=True).eval()
    pipe = StableDiffusionControlNetPipeline(
        vae=zero.vae, text_encoder=zero.text_encoder, tokenizer=zero.tokenizer, unet=zero.unet, controlnet=net,
        scheduler=zero.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    processor = importlib.import_module(TextToVideoZeroPipeline.__module__).CrossFrameAttnProcessor2_0
    pipe.unet.set_attn_processor(processor(batch_size=2))
    pipe.controlnet.set_attn_processor(processor(batch_size=2))
    pipe.set_progress_bar_config(disable=True)
    images = [Image.open(os.path.join(video, n)).convert("RGB") for n in sorted(os.listdir(video))][:args.frames]
    latents = torch.randn((1, 4, 16, 16), generator=torch.Generator().manual_seed(0)).repeat(args.frames, 1, 1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pipe(prompt=[PROMPT] * args.frames, image=images, latents=latents, height=64, width=64,
                   num_inference_steps=args.steps, guidance_scale=7.5, output_type="np")
    return torch.from_numpy(out.images), time.perf_counter() - start, time.thread_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from text2video import PeakRSS
    from video_fixtures import save_controlnet_for, save_tiny_model, write_png_frames

    with tempfile.TemporaryDirectory() as tmp:
        model = save_tiny_model(os.path.join(tmp, "model"), "2d", size="small")
        controlnet = save_controlnet_for(model, os.path.join(tmp, "controlnet"))
        video = write_png_frames(os.path.join(tmp, "video"), args.frames, 64)
        times = {"ours": [], "reference": []}
        for _ in range(args.rounds):
            ours, wall, cpu = run_ours(args, model, controlnet, video)
            times["ours"].append((cpu, wall))
            expected, wall, cpu = run_reference(args, model, controlnet, video)
            times["reference"].append((cpu, wall))
        difference = (ours - expected).abs().max().item()
        peaks = {}
        for side, run in (("ours", run_ours), ("reference", run_reference)):
            with PeakRSS() as peak:
                run(args, model, controlnet, video)
            peaks[side] = peak.peak
    cpu = {side: statistics.median(c for c, _ in t) for side, t in times.items()}
    wall = {side: statistics.median(w for _, w in t) for side, t in times.items()}
    print(f"{args.frames} frames, {args.steps} DDIM steps, small model, {args.threads} thread(s), "
          f"{args.rounds} rounds (medians)")
    print(f"CPU time:  ours {cpu['ours']:.2f} s, reference {cpu['reference']:.2f} s, "
          f"ratio {cpu['ours'] / cpu['reference']:.3f}")
    print(f"wall time: ours {wall['ours']:.2f} s, reference {wall['reference']:.2f} s, "
          f"ratio {wall['ours'] / wall['reference']:.3f}")
    print(f"peak RSS growth (same process, ours first): ours {peaks['ours'] / 2**20:.1f} MiB, "
          f"reference {peaks['reference'] / 2**20:.1f} MiB")
    print(f"max abs difference of the frames: {difference}")
    if difference != 0.0:
        sys.exit(1)


if __name__ == "__main__":
    main()
