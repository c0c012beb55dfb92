"""Stable Video Diffusion: image2video_svd.json against diffusers' StableVideoDiffusionPipeline, one process.

    .venv/bin/python bench/svd.py [--model FOLDER] [--size small|tiny|real] [--frames 8] [--steps 10]
                                  [--height 64] [--width 64] [--rounds 3] [--threads 1]
                                  [--decode-frames 16] [--decode-size 128] [--decode-chunk 2]
                                  [--device cpu] [--dtype float32]
    .venv/bin/python bench/svd.py --train-estimate [--frames 8] [--train-batch 4] [--train-steps 4]

Without --model a random SVD model is built from configs (`tests/svd_fixtures.py`: "small" has UNet blocks
(32, 64, 128) with two layers each, a 4x temporal-decoder VAE, a 4-layer CLIP image encoder; "real" has the
configuration of stabilityai/stable-video-diffusion-img2vid with random weights, for a GPU machine) and saved to a
temporary folder; both sides load it with safetensors inside the timed region. The first frame is a seeded PNG
of another size than the video (so both resizes run).

* Time, after one untimed short run of each side (lazy imports), --rounds rounds, ours first in even rounds and
  the reference first in odd ones, medians: ours is a fresh `vdgraph.Executor` per round
  (no cache help) running the workflow up to its `frames` output; the reference loads the pipeline from the same
  folder and calls it (output_type "pt"). CPU time of the main thread (steady on a shared machine) and wall time.
  The frames must match exactly (max abs difference 0).
* Peak RSS of one run per side, each in a fresh subprocess (a thread samples /proc/self/statm every millisecond;
  the figure is the highest RSS minus the RSS after imports; weights count on both sides).
* Temporal decode with chunks against without: a fresh subprocess per setting loads only the VAE and decodes
  seeded latents of --decode-frames frames at --decode-size pixels through the workflow's decode path
  (`vdgraph_video.ops.vae.decode`), chunk size 0 (all frames in one call, the pipeline's default) or
  --decode-chunk; peak RSS growth of the decode.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
WORKFLOW = REPO / "workflows" / "image2video_svd.json"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_ours(args, model: str, image: str):
    import vdgraph

    inputs = {"model": model, "image": image, "frames": args.frames, "height": args.height, "width": args.width,
              "steps": args.steps, "seed": 0, "decode_chunk_size": 0}
    start, cpu = time.perf_counter(), time.thread_time()
    executor = vdgraph.Executor(device=args.device, dtype=DTYPES[args.dtype])
    frames = executor.run(WORKFLOW, inputs, outputs=["frames"], output_dir=tempfile.gettempdir())["frames"]
    sync(args.device)
    return frames, time.perf_counter() - start, time.thread_time() - cpu


def run_reference(args, model: str, image: str):
    from PIL import Image
    from svd_fixtures import load_svd_reference

    start, cpu = time.perf_counter(), time.thread_time()
    pipe = load_svd_reference(model).to(args.device, DTYPES[args.dtype])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pipe(Image.open(image).convert("RGB"), height=args.height, width=args.width, num_frames=args.frames,
                   num_inference_steps=args.steps, generator=torch.Generator().manual_seed(0), output_type="pt")
    frames = out.frames[0].permute(0, 2, 3, 1).float().cpu()
    sync(args.device)
    return frames, time.perf_counter() - start, time.thread_time() - cpu


def decode_child(args) -> dict:
    """Subprocess body: load the VAE, decode seeded latents with --child-chunk frames per call; peak RSS growth."""
    from diffusers import AutoencoderKLTemporalDecoder
    from text2video import PeakRSS

    from vdgraph_video.ops.vae import decode

    vae = AutoencoderKLTemporalDecoder.from_pretrained(args.model, subfolder="vae", use_safetensors=True).eval()
    vae.to(args.device, DTYPES[args.dtype])
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    side = args.decode_size // factor
    latents = torch.randn((1, 4, args.decode_frames, side, side), generator=torch.Generator().manual_seed(0))
    latents = latents.to(args.device, DTYPES[args.dtype])
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with PeakRSS() as peak:
        frames = decode(vae, latents, args.child_chunk, "reciprocal")
    sync(args.device)
    result = {"peak": peak.peak, "seconds": time.perf_counter() - start, "shape": list(frames.shape)}
    if args.device.startswith("cuda"):
        result["cuda_peak"] = torch.cuda.max_memory_allocated()
    return result


def run_child(args) -> dict:
    """Subprocess body: one run of one side; peak RSS growth (and CUDA peak memory on a GPU)."""
    warnings.filterwarnings("ignore")
    import diffusers  # noqa: F401  (imports count as baseline, not as the run's memory)
    import transformers  # noqa: F401
    from diffusers import StableVideoDiffusionPipeline  # noqa: F401
    from text2video import PeakRSS

    import vdgraph  # noqa: F401
    import vdgraph_video  # noqa: F401

    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as peak:
        _, wall, _ = (run_ours if args.child == "ours" else run_reference)(args, args.model, args.image)
    result = {"peak": peak.peak, "seconds": wall}
    if args.device.startswith("cuda"):
        result["cuda_peak"] = torch.cuda.max_memory_allocated()
    return result


def in_subprocess(args, child: str, model: str, image: str, chunk: int = 0) -> dict:
    command = [sys.executable, __file__, "--child", child, "--model", model, "--image", image, "--child-chunk",
               str(chunk)]
    for name in ("frames", "steps", "height", "width", "threads", "decode_frames", "decode_size", "device", "dtype"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    out = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if out.returncode:
        raise SystemExit(f"{child} subprocess failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def train_estimate(args) -> None:
    """Time a few training steps of a small UNetSpatioTemporalConditionModel (the "small" config: 64x64 frames,
    16x16x4 latents) with SVD's objective, to estimate what training one on the shapes world would cost here.

    One step: a batch of --train-batch clips of --frames frames; noise at a log-normal sigma (EDM, as SVD was
    trained), the clean first frame's latents (noise-augmented) concatenated on channels, a (B, 1, 32) image
    embedding, three time ids; v-prediction loss (SVD's EDM preconditioning); backward; AdamW step. Random tensors
    stand in for the data: the time per step does not depend on it.
    """
    from diffusers import UNetSpatioTemporalConditionModel
    from svd_fixtures import SIZES

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(in_channels=8, out_channels=4, **SIZES["small"]["unet"]).train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    params = sum(p.numel() for p in unet.parameters())
    b, f = args.train_batch, args.frames
    times, cpu_times = [], []
    for step in range(args.train_steps + 1):
        x0 = torch.randn(b, f, 4, 16, 16)
        first = x0[:, :1] + 0.02 * torch.randn(b, 1, 4, 16, 16)
        sigma = torch.exp(torch.randn(b) * 1.2 + 0.7).view(b, 1, 1, 1, 1)  # EDM log-normal (P_mean 0.7, P_std 1.2)
        noisy = x0 + sigma * torch.randn_like(x0)
        c_in, c_skip = 1 / (sigma**2 + 1).sqrt(), 1 / (sigma**2 + 1)
        c_out = -sigma / (sigma**2 + 1).sqrt()
        start, cpu = time.perf_counter(), time.process_time()
        sample = torch.cat([noisy * c_in, first.expand(-1, f, -1, -1, -1)], dim=2)
        out = unet(sample, (0.25 * sigma.log()).flatten(), encoder_hidden_states=torch.randn(b, 1, 32),
                   added_time_ids=torch.tensor([[6.0, 127.0, 0.02]]).repeat(b, 1)).sample
        denoised = out * c_out + noisy * c_skip
        loss = (((denoised - x0) ** 2) * (sigma**2 + 1) / sigma**2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step:  # the first step warms up the allocator
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu)
    per_step = statistics.median(times)
    cpu_step = statistics.median(cpu_times)
    print(f"training step, small SVD UNet ({params / 1e6:.1f} M parameters), batch {b} clips x {f} frames of "
          f"16x16x4 latents, {args.threads} thread(s): median {per_step:.2f} s over {len(times)} steps "
          f"({per_step / (b * f) * 1000:.1f} ms per frame); in one hour: {3600 / per_step:.0f} steps, "
          f"{3600 / per_step * b:.0f} clips; process CPU time {cpu_step:.2f} s per step (without other jobs on the "
          f"cores: {3600 / cpu_step * args.threads:.0f} steps per hour at most)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="an SVD folder (default: a random model built from configs)")
    parser.add_argument("--size", default="small", choices=["tiny", "small", "real"])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--decode-frames", type=int, default=16)
    parser.add_argument("--decode-size", type=int, default=128)
    parser.add_argument("--decode-chunk", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--train-estimate", action="store_true",
                        help="only time a few training steps of the small SVD UNet (see train_estimate)")
    parser.add_argument("--train-batch", type=int, default=4)
    parser.add_argument("--train-steps", type=int, default=4)
    parser.add_argument("--child", choices=["ours", "reference", "decode"], help=argparse.SUPPRESS)
    parser.add_argument("--child-chunk", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(decode_child(args) if args.child == "decode" else run_child(args)))
        return
    if args.train_estimate:
        train_estimate(args)
        return
    from svd_fixtures import save_svd_model, write_test_image

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or save_svd_model(os.path.join(tmp, "model"), args.size)
        image = write_test_image(os.path.join(tmp, "first.png"), args.height + 8, args.width + 16)
        warm = argparse.Namespace(**{**vars(args), "frames": 2, "steps": 1})
        run_ours(warm, model, image)  # lazy imports and first-call set-up, once per process, untimed, both sides
        run_reference(warm, model, image)
        times = {"ours": [], "reference": []}
        sides = {"ours": run_ours, "reference": run_reference}
        frames = {}
        for round_ in range(args.rounds):
            for side in (("ours", "reference") if round_ % 2 == 0 else ("reference", "ours")):  # who goes first
                frames[side], wall, cpu = sides[side](args, model, image)
                times[side].append((cpu, wall))
        ours, expected = frames["ours"], frames["reference"]
        difference = (ours - expected).abs().max().item()
        peaks = {side: in_subprocess(args, side, model, image) for side in ("ours", "reference")}
        decodes = {chunk: in_subprocess(args, "decode", model, image, chunk) for chunk in (0, args.decode_chunk)}
    cpu = {side: statistics.median(c for c, _ in t) for side, t in times.items()}
    wall = {side: statistics.median(w for _, w in t) for side, t in times.items()}
    print(f"{args.frames} frames {args.height}x{args.width}, {args.steps} Euler steps, {args.size} model, "
          f"{args.device} {args.dtype}, {args.threads} thread(s), {args.rounds} rounds (medians, load included)")
    print(f"CPU time:  ours {cpu['ours']:.2f} s, reference {cpu['reference']:.2f} s, "
          f"ratio {cpu['ours'] / cpu['reference']:.3f}")
    print(f"wall time: ours {wall['ours']:.2f} s, reference {wall['reference']:.2f} s, "
          f"ratio {wall['ours'] / wall['reference']:.3f}")
    print("peak RSS growth (fresh process each): " + ", ".join(
        f"{side} {mib(p['peak'])}" + (f" (CUDA {mib(p['cuda_peak'])})" if "cuda_peak" in p else "")
        for side, p in peaks.items()))
    print(f"temporal decode of {args.decode_frames} frames at {args.decode_size}x{args.decode_size} "
          "(fresh process each): " + ", ".join(
              f"{'all at once' if chunk == 0 else f'chunks of {chunk}'} {mib(d['peak'])} in {d['seconds']:.2f} s"
              + (f" (CUDA {mib(d['cuda_peak'])})" if "cuda_peak" in d else "") for chunk, d in decodes.items()))
    print(f"max abs difference of the frames: {difference}")
    if difference != 0.0:
        sys.exit(1)


if __name__ == "__main__":
    main()
