"""Port types of the video pack.

Every value here is opaque (it only travels over links). Tensor-like values are children of the engine's Tensor
type, so a generic Tensor input accepts them. Models travel as small frozen handles (see `vdgraph_video.values`):
a node never mutates a model it receives; attention patches are values carried by the handle and applied only for
the duration of a denoise call.
"""

from __future__ import annotations

from vdgraph.types import TENSOR, Opaque

LATENTS = Opaque("Latents", "(B, C, F, H, W) latents (B batch, C channels, F frames, H x W latent pixels)", parent=TENSOR)
FRAMES = Opaque("Frames", "(F, H, W, 3) float32 RGB frames in [0, 1], on the CPU ((B, F, H, W, 3) for a batch of "
                          "videos from video.decode, which the writers write as one file each)", parent=TENSOR)
RNG = Opaque(
    "RNG",
    "the state of a CPU torch.Generator (a uint8 tensor): random state travels through the graph as an immutable "
    "value, so the exact order of random draws of a reference implementation can be reproduced across nodes",
    parent=TENSOR,
)
CONDITIONING = Opaque("Conditioning", "text conditioning: (B, 77, D) embeddings of the prompt and the negative prompt")
UNET = Opaque("UNet", "a denoising UNet (diffusers UNet2DConditionModel or UNet3DConditionModel) plus attention patches")
VAE = Opaque("VAE", "a diffusers AutoencoderKL")
TEXT_ENCODER = Opaque("TextEncoder", "a CLIP-style text encoder with its tokenizer")
SCHEDULER_CONFIG = Opaque("SchedulerConfig", "a model's scheduler configuration (what its noise schedule was trained with)")
SCHEDULER = Opaque("Scheduler", "a diffusers scheduler with its timesteps set (consumers work on their own copy)")
FLOW = Opaque("Flow", "a per-frame motion field that warps latents or frames")
CONTROLNET = Opaque("ControlNet", "a diffusers ControlNetModel (attach it to a UNet with video.apply_controlnet)")
MASKS = Opaque("Masks", "(F, H, W) float32 foreground masks in {0, 1} (1: foreground), on the CPU", parent=TENSOR)
MASK_DETECTOR = Opaque("MaskDetector", "a foreground detector: called on frames (F, H, W, 3) in [0, 1], it returns "
                                       "masks (F, H, W) in {0, 1} (e.g. shapes.judge_mask_detector)")
SMOOTHER = Opaque("Smoother", "a step hook of video.denoise that smooths the clean-latent prediction at chosen steps "
                             "(ControlVideo's interleaved-frame smoother)")
FRAME_PLAN = Opaque("FramePlan", "how video.denoise splits the frames over model calls (ControlVideo's hierarchical "
                                 "sampler: key frames, then clips between them)")
IMAGE_ENCODER = Opaque("ImageEncoder", "a CLIP image encoder (transformers CLIPVisionModelWithProjection) with its image "
                                       "processor")
IMAGE_CONDITION = Opaque("ImageCondition", "Stable Video Diffusion's image condition: the VAE latents of the "
                                           "noise-augmented image and the noise_aug_strength added")
MOTION_ADAPTER = Opaque("MotionAdapter", "a diffusers MotionAdapter: AnimateDiff's temporal motion modules (inflate a 2-D UNet with video.apply_motion_adapter)")
