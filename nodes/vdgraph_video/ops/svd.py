"""Stable Video Diffusion's image conditioning, as diffusers' StableVideoDiffusionPipeline computes it.

- `clip_image_embedding`: the CLIP `image_embeds` of the image resized to 224x224 with the pipeline's antialiasing
  (a Gaussian blur, then bicubic interpolation with aligned corners, on the image mapped to [-1, 1]), normalised by
  the model's CLIP image processor (no resize, crop or rescale). (1, 1, D).
- `image_latents`: the VAE's posterior mode of the image (resized to the video's size) plus noise_aug_strength
  times Gaussian noise drawn from the caller's generator, unscaled: SVD's UNet takes them as they come.
- `added_time_ids`: [fps - 1, motion_bucket_id, noise_aug_strength], the micro-conditioning SVD was trained on.
- the per-frame guidance ramp is a guider: `vdgraph_video.ops.guiders.FrameRampGuidance`.

Tensor code only: no engine imports.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CLIP_SIZE = 224
"""The side of the image the pipeline's CLIP image encoder sees."""


def _gaussian_kernel(size: int, sigma: torch.Tensor) -> torch.Tensor:
    """(1, size) normalised Gaussian weights (diffusers' `_gaussian`, sigma a (1, 1) tensor)."""
    x = (torch.arange(size, device=sigma.device, dtype=sigma.dtype) - size // 2).expand(1, -1)
    if size % 2 == 0:
        x = x + 0.5
    gauss = torch.exp(-x.pow(2.0) / (2 * sigma.pow(2.0)))
    return gauss / gauss.sum(-1, keepdim=True)


def _filter2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depthwise 2-D filter with reflect padding (diffusers' `_filter2d`; kernel (1, kh, kw))."""
    b, c, h, w = x.shape
    kh, kw = kernel.shape[-2:]
    weight = kernel[:, None].to(device=x.device, dtype=x.dtype).expand(-1, c, -1, -1).reshape(-1, 1, kh, kw)
    pad = [(kw - 1) // 2, (kw - 1) - (kw - 1) // 2, (kh - 1) // 2, (kh - 1) - (kh - 1) // 2]
    x = F.pad(x, pad, mode="reflect").view(-1, weight.size(0), h + kh - 1, w + kw - 1)
    return F.conv2d(x, weight, groups=weight.size(0), padding=0, stride=1).view(b, c, h, w)


def resize_with_antialiasing(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size): the pipeline's `_resize_with_antialiasing` (Gaussian blur with sigma
    (factor - 1) / 2 per side, odd kernels of about 4 sigma, then bicubic with align_corners)."""
    h, w = x.shape[-2:]
    factors = (h / size[0], w / size[1])
    sigmas = (max((factors[0] - 1.0) / 2.0, 0.001), max((factors[1] - 1.0) / 2.0, 0.001))
    ks = [int(max(2.0 * 2 * s, 3)) for s in sigmas]
    ks = [k + 1 if k % 2 == 0 else k for k in ks]
    sigma = torch.tensor([sigmas], dtype=x.dtype)  # (1, 2): (y, x)
    kernel_x = _gaussian_kernel(ks[1], sigma[:, 1].view(1, 1))
    kernel_y = _gaussian_kernel(ks[0], sigma[:, 0].view(1, 1))
    x = _filter2d(_filter2d(x, kernel_x[..., None, :]), kernel_y[..., None])
    return F.interpolate(x, size=size, mode="bicubic", align_corners=True)


@torch.no_grad()
def clip_image_embedding(encoder: torch.nn.Module, processor, image: torch.Tensor, device: torch.device,
                         dtype: torch.dtype) -> torch.Tensor:
    """(1, H, W, 3) image in [0, 1] -> (1, 1, D) CLIP image embedding (StableVideoDiffusionPipeline._encode_image
    for a PIL image: the original size, before the video's resize)."""
    assert image.ndim == 4 and image.shape[0] == 1 and image.shape[-1] == 3, (
        f"image must be (1, H, W, 3), got {tuple(image.shape)}")
    x = image.permute(0, 3, 1, 2) * 2.0 - 1.0  # (1, 3, H, W) in [-1, 1]
    x = (resize_with_antialiasing(x, (CLIP_SIZE, CLIP_SIZE)) + 1.0) / 2.0
    pixels = processor(images=x, do_normalize=True, do_center_crop=False, do_resize=False, do_rescale=False,
                       return_tensors="pt").pixel_values
    return encoder(pixels.to(device=device, dtype=dtype)).image_embeds.unsqueeze(1)  # (1, 1, D)


@torch.no_grad()
def image_latents(vae: torch.nn.Module, image: torch.Tensor, noise_aug_strength: float,
                  generator: torch.Generator, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(1, H, W, 3) image in [0, 1] (the video's size) -> (1, C, h, w) VAE latents of the noise-augmented image.

    As the pipeline: image * 2 - 1, plus noise_aug_strength * randn (one (1, 3, H, W) draw on the CPU generator,
    then moved), the posterior mode, no scaling factor. The VAE runs in float32 when it is float16 and asks to be
    upcast (force_upcast), as the pipeline does; the latents come back in `dtype`.
    """
    x = image.permute(0, 3, 1, 2).to(device) * 2.0 - 1.0  # (1, 3, H, W), float32 as the pipeline's
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(device)
    x = x + noise_aug_strength * noise
    upcast = vae.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
    vae_dtype = torch.float32 if upcast else vae.dtype
    if upcast:
        vae = _float32_copy(vae)
    return vae.encode(x.to(dtype=vae_dtype)).latent_dist.mode().to(dtype)


def _float32_copy(vae: torch.nn.Module) -> torch.nn.Module:
    """A float32 copy of a float16 VAE (the loaded module is never changed in place, unlike the pipeline)."""
    import copy

    return copy.deepcopy(vae).float()


def added_time_ids(fps: int, motion_bucket_id: int, noise_aug_strength: float, dtype: torch.dtype,
                   device: torch.device) -> torch.Tensor:
    """(1, 3): [fps - 1, motion_bucket_id, noise_aug_strength] (SVD was conditioned on fps - 1)."""
    return torch.tensor([[fps - 1, motion_bucket_id, noise_aug_strength]], dtype=dtype).to(device)
