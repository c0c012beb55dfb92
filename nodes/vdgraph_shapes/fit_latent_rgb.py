"""Fit shapes-64's latent-to-RGB preview map: `python -m vdgraph_shapes.fit_latent_rgb [--scenes N] [--out FILE]`.

The denoiser's latents (VAE posterior means times the scaling factor, the space the loop works in) of rendered
shapes-world scenes are mapped to the colours the VAE decodes them to, averaged over each latent pixel's patch, by
least squares with a bias: RGB = latents @ factors + bias. The result (factors: latent channels x 3, bias: 3, and
the fit's error) goes to the model folder's `vae/latent_rgb.json`, where the video pack's previews read it
(vdgraph_video.previews). Deterministic: the scenes come from a seeded generator.
"""

from __future__ import annotations

import argparse
import json

import torch

from vdgraph_shapes.models import MODEL_DIR
from vdgraph_shapes.train import render_scenes, sample_scenes, to_model_space


@torch.no_grad()
def fit(scenes: int = 512, seed: int = 2024) -> dict:
    import diffusers

    vae = diffusers.AutoencoderKL.from_pretrained(str(MODEL_DIR), subfolder="vae", use_safetensors=True).eval()
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    images = render_scenes(sample_scenes(scenes, seed))
    latents = torch.cat([vae.encode(to_model_space(images[i:i + 128])).latent_dist.mean
                         for i in range(0, len(images), 128)]) * vae.config.scaling_factor
    decoded = torch.cat([vae.decode(latents[i:i + 128] / vae.config.scaling_factor).sample
                         for i in range(0, len(latents), 128)])
    rgb = (decoded / 2 + 0.5).clamp(0, 1)
    target = torch.nn.functional.avg_pool2d(rgb, factor)  # (N, 3, h, w): each latent pixel's patch
    x = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).double()
    y = target.permute(0, 2, 3, 1).reshape(-1, 3).double()
    design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    solution = torch.linalg.lstsq(design, y).solution  # (C + 1, 3)
    error = (design @ solution).clamp(0, 1) - y
    return {
        "model": "shapes-64",
        "what": "RGB in [0, 1] = latents @ factors + bias, for the denoiser's (scaled) latents; see "
                "vdgraph_shapes.fit_latent_rgb",
        "factors": [[round(float(v), 6) for v in row] for row in solution[:-1]],
        "bias": [round(float(v), 6) for v in solution[-1]],
        "fit": {"scenes": scenes, "seed": seed, "rmse": round(float(error.pow(2).mean().sqrt()), 4),
                "max_abs": round(float(error.abs().max()), 4)},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=512, help="rendered scenes to fit on")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the scene generator")
    parser.add_argument("--out", default=str(MODEL_DIR / "vae" / "latent_rgb.json"), help="where to write it")
    args = parser.parse_args(argv)
    result = fit(args.scenes, args.seed)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")
    print(f"wrote {args.out}: rmse {result['fit']['rmse']}, max abs {result['fit']['max_abs']}")


if __name__ == "__main__":
    main()
