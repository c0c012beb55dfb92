"""ControlVideo's attention memory: peak RSS growth of one denoising step on the built-in shapes-64 model.

    .venv/bin/python bench/controlvideo_memory.py [--frames 16 32 64] [--size 64]

Each case runs in a fresh subprocess (so no allocator memory is carried over) that loads shapes-64, makes same-frame
noise and text conditioning, and then samples its RSS every millisecond around one DDIM step (one UNet call with
classifier-free guidance: 2 x F frames) - the figure is the highest RSS minus the RSS before the step. Cases:
- full: fully cross-frame attention as video.cross_frame_attention mode "full" installs it (one SDPA call over
  the F*T tokens of each clip);
- naive: the same attention written out with the (F*T)^2 score matrix materialised (softmax(q k^T) v), what a
  processor without a fused kernel costs;
- hierarchical: video.hierarchical_sampler's plan (key frames with full attention, then clips with their two key
  frames as references; window int(sqrt(F))).
It prints each figure, the 32/16-frame ratios against the linear (2x) and quadratic (4x) expectations, and the
size of the score matrix a naive kernel would hold at the model's largest attention level.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
MODEL = REPO / "nodes" / "vdgraph_shapes" / "model"
PROMPT = "a red circle on a blue background"


class NaiveFullAttention:
    """An attention patch: fully cross-frame attention with the score matrix materialised (for comparison only)."""

    def processors(self, module, current, batch_chunks):
        import torch

        def naive(attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
            if encoder_hidden_states is not None:  # text cross-attention: the default processor
                return current_processors[id(attn)](attn, hidden_states, encoder_hidden_states, attention_mask)
            n, tokens, width = hidden_states.shape
            heads, d = attn.heads, width // attn.heads
            q, k, v = (m(hidden_states).reshape(batch_chunks, n // batch_chunks * tokens, heads, d).transpose(1, 2)
                       for m in (attn.to_q, attn.to_k, attn.to_v))  # (chunks, heads, F*T, d)
            scores = torch.softmax(q @ k.transpose(-1, -2) * d ** -0.5, dim=-1)  # (chunks, heads, F*T, F*T)
            out = (scores @ v).transpose(1, 2).reshape(n, tokens, width)
            return attn.to_out[1](attn.to_out[0](out))

        from vdgraph_video.values import attention_layers

        layers = attention_layers(module)
        current_processors = {id(layers[name]): processor for name, processor in current.items()}
        return {name: naive for name in current}


def child(mode: str, frames: int, size: int) -> None:
    """Subprocess body: one DDIM step of `mode` on `frames` frames; prints its peak RSS growth as JSON."""
    import torch
    from text2video import PeakRSS

    from vdgraph_video.families.hierarchical import HierarchicalPlan
    from vdgraph_video.loading import load_components
    from vdgraph_video.ops.attention import CrossFrameAttention
    from vdgraph_video.ops.denoise import denoise
    from vdgraph_video.ops.schedulers import build_scheduler
    from vdgraph_video.ops.text import encode_text
    from vdgraph_video.values import Conditioning

    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    unet, vae, text, scheduler_config = load_components(str(MODEL), cpu, torch.float32)
    conditioning = Conditioning(cond=encode_text(text.module, text.tokenizer, PROMPT, cpu),
                                uncond=encode_text(text.module, text.tokenizer, "", cpu))
    scheduler = build_scheduler(scheduler_config.class_name, scheduler_config.config, "ddim", 20, cpu)
    side = size // vae.scale_factor
    latents = torch.randn(1, 4, 1, side, side, generator=torch.Generator().manual_seed(0)).repeat(1, 1, frames, 1, 1)
    plan = None
    if mode == "full":
        unet = unet.with_patch(CrossFrameAttention("full"))
    elif mode == "naive":
        unet = unet.with_patch(NaiveFullAttention())
    else:
        plan = HierarchicalPlan()
    start = time.perf_counter()
    with PeakRSS() as peak:
        denoise(unet, scheduler, conditioning, latents, 7.5, 0, 1, plan=plan)
    print(json.dumps({"peak": peak.peak, "seconds": time.perf_counter() - start}))


def measure(mode: str, frames: int, size: int) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, str(frames), "--size", str(size)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def attention_tokens(size: int) -> int:
    """Tokens per frame at shapes-64's largest self-attention level (the first CrossAttn block, one downsample)."""
    config = json.loads((MODEL / "unet" / "config.json").read_text())
    vae = json.loads((MODEL / "vae" / "config.json").read_text())
    side = size // 2 ** (len(vae["block_out_channels"]) - 1)
    first = config["down_block_types"].index("CrossAttnDownBlock2D")
    return (side // 2 ** first) ** 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FRAMES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.size)
        return
    from text2video import mib

    tokens = attention_tokens(args.size)
    heads = json.loads((MODEL / "unet" / "config.json").read_text())["attention_head_dim"]
    results: dict[tuple[str, int], dict] = {}
    print(f"shapes-64, {args.size}x{args.size} frames, one DDIM step with guidance (2 x F frames per UNet call), "
          f"{tokens} tokens per frame at the largest attention level; peak RSS growth in a fresh process")
    for mode in ("full", "naive", "hierarchical"):
        for frames in args.frames:
            if mode == "naive" and frames > 32:
                continue  # 4x the score matrix again: not worth the machine's memory to show it
            results[mode, frames] = r = measure(mode, frames, args.size)
            score = 2 * heads * (frames * tokens) ** 2 * 4  # bytes of one (chunks, heads, F*T, F*T) fp32 matrix
            print(f"  {mode:12s} {frames:3d} frames: peak RSS growth {mib(r['peak']):>10s}   ({r['seconds']:.2f} s; "
                  f"a materialised score matrix would be {mib(score)})")
    for mode in ("full", "naive", "hierarchical"):
        for a, b in zip(args.frames, args.frames[1:]):
            if (mode, a) in results and (mode, b) in results:
                ratio = results[mode, b]["peak"] / max(results[mode, a]["peak"], 1)
                print(f"  {mode:12s} {b}/{a} frames: x{ratio:.2f}   (linear x{b / a:.0f}, quadratic x{(b / a) ** 2:.0f})")


if __name__ == "__main__":
    main()
