"""Text2Video-Zero's background smoothing: foreground masks per frame and the blend of the background latents with
frame 0's warped background (Khachatryan et al. 2023, sec. 3.3; the authors' repository's `smooth_bg`).

After a full pass, a foreground mask M^k of every output frame k (a salient-object detector there; here a mask
video, the spectral-residual saliency below, or a pack's detector such as the shapes judge) is resized to the latent
size (nearest) and dilated with a 5x5 kernel. With M^1 warped like frame 0 was (the motion field of frame k),
the background mask is M_BG^k = (1 - M^k)(1 - warp_k(M^1)) and the latents at T1 are blended as

    x_T1^k <- (1 - M_BG^k) x_T1^k + M_BG^k (alpha x_T1^k + (1 - alpha) warp_k(x_T1^1 (1 - M^1)))

(alpha 0.4 in the reference), then every frame is denoised again from T1. Frame 0's warp is the identity, so its
blend is a no-op on its background up to alpha's rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

# warp(x (N, C, h, w)) -> x warped for frames 1..N (frame k by the motion field of frame k)
Warp = Callable[[torch.Tensor], torch.Tensor]


def spectral_residual_saliency(image: np.ndarray, size: int = 64) -> np.ndarray:
    """Saliency (H, W) in [0, 1] of an RGB image (H, W, 3) in [0, 1] by the spectral residual (Hou and Zhang 2007),
    as OpenCV's StaticSaliencySpectralResidual (opencv-contrib, not installed here): the grey image at size x size,
    log amplitude spectrum minus its 3x3 mean, back with the original phase, blurred, squared, resized. It marks
    the shape's edges and corners more than its inside; the 5x5 latent dilation covers the rest."""
    import cv2

    assert image.ndim == 3 and image.shape[-1] == 3, f"image must be (H, W, 3), got {image.shape}"
    h, w = image.shape[:2]
    grey = cv2.resize(image.astype(np.float32).mean(axis=-1), (size, size), interpolation=cv2.INTER_AREA)
    spectrum = np.fft.fft2(grey)
    amplitude = np.abs(spectrum)
    # A floor of 1% of the mean amplitude: a clean synthetic frame (a flat shape on a flat background) has exact
    # spectral zeros, whose logs would dominate the residual with a periodic pattern instead of the shape.
    log_amplitude = np.log(amplitude + 0.01 * amplitude.mean() + 1e-12).astype(np.float32)
    residual = log_amplitude - cv2.blur(log_amplitude, (3, 3), borderType=cv2.BORDER_REFLECT_101)
    back = np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))
    saliency = cv2.GaussianBlur(np.abs(back).astype(np.float32), (5, 5), 8)
    saliency = saliency * saliency
    saliency = saliency / max(float(saliency.max()), 1e-12)
    return cv2.resize(saliency, (w, h), interpolation=cv2.INTER_LINEAR).clip(0, 1)


def saliency_masks(frames: torch.Tensor) -> torch.Tensor:
    """Foreground masks (F, H, W) in {0, 1} of frames (F, H, W, 3) in [0, 1]: spectral-residual saliency of each
    frame, thresholded with Otsu's method (OpenCV's binary saliency map does the same after its k-means)."""
    import cv2

    assert frames.ndim == 4 and frames.shape[-1] == 3, f"frames must be (F, H, W, 3), got {tuple(frames.shape)}"
    masks = []
    for frame in frames.detach().float().cpu().numpy():
        saliency = (spectral_residual_saliency(frame) * 255).round().astype(np.uint8)
        _, binary = cv2.threshold(saliency, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        masks.append(binary)
    return torch.from_numpy(np.stack(masks)).float()


def masks_from_frames(frames: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Masks (F, H, W) in {0, 1} from mask-video frames (F, H, W, 3) in [0, 1]: white (mean over RGB above
    `threshold`) is foreground."""
    assert frames.ndim == 4 and frames.shape[-1] == 3, f"frames must be (F, H, W, 3), got {tuple(frames.shape)}"
    return (frames.float().mean(dim=-1) > threshold).float()


def latent_masks(masks: torch.Tensor, height: int, width: int, dilation: int = 5) -> torch.Tensor:
    """Pixel masks (F, H, W) -> latent-size masks (F, height, width): nearest resize (torchvision's NEAREST, as the
    reference), then a `dilation` x `dilation` dilation (kornia's with a ones kernel: a max over the window)."""
    assert masks.ndim == 3, f"masks must be (F, H, W), got {tuple(masks.shape)}"
    small = F.interpolate(masks[:, None].float(), size=(height, width), mode="nearest")  # (F, 1, h, w)
    grown = F.max_pool2d(small, kernel_size=dilation, stride=1, padding=dilation // 2)
    return grown[:, 0]


def blend_background(latents: torch.Tensor, masks: torch.Tensor, warp: Warp, alpha: float = 0.4) -> torch.Tensor:
    """The paper's background blend of latents (B, C, F, h, w) at T1 with frame 0's warped background.

    `masks` (F, h, w) are the dilated latent-size foreground masks; `warp` moves (F-1, C, h, w) copies of frame 0
    to frames 1..F-1 (the motion field that built the video)."""
    b, c, f, h, w = latents.shape
    assert masks.shape == (f, h, w), f"masks {tuple(masks.shape)} do not fit latents of {f} frames of {h}x{w}"
    assert 0.0 <= alpha <= 1.0, f"alpha must be in [0, 1], got {alpha}"
    masks = masks.to(latents.device, latents.dtype)
    first_fg = masks[0]  # (h, w)
    moved_masks = [first_fg[None]]
    if f > 1:
        moved_masks.append(warp(first_fg[None, None].repeat(f - 1, 1, 1, 1))[:, 0])  # (F-1, h, w)
    background = (1 - masks) * (1 - torch.cat(moved_masks))  # (F, h, w)
    out = []
    for item in range(b):
        first = latents[item, :, 0] * (1 - first_fg)  # (C, h, w): frame 0's background at T1
        moved = [first[None]]
        if f > 1:
            moved.append(warp(first[None].repeat(f - 1, 1, 1, 1)))  # (F-1, C, h, w)
        moved = torch.cat(moved).permute(1, 0, 2, 3)  # (C, F, h, w)
        x = latents[item]
        out.append((1 - background) * x + background * (alpha * x + (1 - alpha) * moved))
    return torch.stack(out)
