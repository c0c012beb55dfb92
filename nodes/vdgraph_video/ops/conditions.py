"""Condition images from an input video, as ControlNets take them: canny edges, an OpenPose-style skeleton from
MediaPipe pose landmarks, a depth map from a transformers depth model, or frames used as they are.

Every function takes frames (F, H, W, 3) float in [0, 1] on the CPU and returns condition frames of the same shape
and range. OpenCV is a dependency; MediaPipe (pose) and a depth model folder are only needed by their own function.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from vdgraph_video.ops.video_io import resize_frames

DepthNormalise = Literal["frame", "clip"]

# OpenPose's 18 body keypoints (COCO order) and where each comes from among MediaPipe's 33 pose landmarks; the
# neck, which MediaPipe lacks, is the midpoint of the shoulders (index None).
OPENPOSE_FROM_MEDIAPIPE: tuple[int | None, ...] = (
    0,     # 0 nose
    None,  # 1 neck = midpoint of the shoulders
    12,    # 2 right shoulder
    14,    # 3 right elbow
    16,    # 4 right wrist
    11,    # 5 left shoulder
    13,    # 6 left elbow
    15,    # 7 left wrist
    24,    # 8 right hip
    26,    # 9 right knee
    28,    # 10 right ankle
    23,    # 11 left hip
    25,    # 12 left knee
    27,    # 13 left ankle
    5,     # 14 right eye
    2,     # 15 left eye
    8,     # 16 right ear
    7,     # 17 left ear
)
# OpenPose's limbs (pairs of keypoint indices) and colours, as ControlNet's openpose annotator draws them.
OPENPOSE_LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
    (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)
OPENPOSE_COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
POSE_INSTALL_HINT = "pip install vdgraph[pose]"


def to_uint8_images(frames: torch.Tensor) -> np.ndarray:
    """(F, H, W, 3) float in [0, 1] -> (F, H, W, 3) uint8, C-contiguous (what OpenCV and MediaPipe take)."""
    assert frames.ndim == 4 and frames.shape[-1] == 3, f"frames must be (F, H, W, 3), got {tuple(frames.shape)}"
    return np.ascontiguousarray((frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy())


def from_uint8_images(images: np.ndarray) -> torch.Tensor:
    """(F, H, W, 3) or (F, H, W) uint8 -> (F, H, W, 3) float32 in [0, 1] (grey images repeated over RGB)."""
    out = torch.from_numpy(np.ascontiguousarray(images)).float() / 255.0
    return out if out.ndim == 4 else out[..., None].expand(*out.shape, 3).contiguous()


def canny_edges(frames: torch.Tensor, low: int = 100, high: int = 200) -> torch.Tensor:
    """Canny edges of each frame, white (1) on black (0), repeated over RGB: (F, H, W, 3).

    As ControlNet's canny annotator does, OpenCV's Canny runs on the RGB image itself (the gradient of the
    channel that changes most), with hysteresis thresholds `low` < `high` on the 0..255 gradient magnitude.
    """
    import cv2

    assert 0 <= low <= high, f"canny thresholds must satisfy 0 <= low <= high, got low {low}, high {high}"
    images = to_uint8_images(frames)  # (F, H, W, 3)
    edges = np.stack([cv2.Canny(image, low, high) for image in images])  # (F, H, W) 0 or 255
    return from_uint8_images(edges)


def draw_openpose(keypoints: np.ndarray, height: int, width: int, stick_width: float = 0.0) -> np.ndarray:
    """An OpenPose-style skeleton image (H, W, 3) uint8 on black from (P, 18, 2) keypoints of P people.

    Keypoints are (x, y) in [0, 1] of the image's width and height, NaN where a point is not seen; a limb is
    drawn only when both its ends are seen. Limbs are filled ellipses blended at 0.6 over the canvas, then every
    seen point a disc, in OpenPose's colours. stick_width 0 scales OpenPose's 4 px at 512 px to the image size.
    """
    import cv2

    keypoints = np.asarray(keypoints, dtype=np.float64).reshape(-1, len(OPENPOSE_FROM_MEDIAPIPE), 2)
    width_px = stick_width if stick_width > 0 else max(1.0, 4.0 * min(height, width) / 512.0)
    canvas = np.zeros((height, width, 3), np.uint8)
    scale = np.array([width, height], dtype=np.float64)
    for person in keypoints:
        points = person * scale  # (18, 2) in pixels
        for index, (a, b) in enumerate(OPENPOSE_LIMBS):
            if np.isnan(points[[a, b]]).any():
                continue
            (xa, ya), (xb, yb) = points[a], points[b]
            length = math.hypot(xb - xa, yb - ya) / 2
            angle = math.degrees(math.atan2(yb - ya, xb - xa))
            centre = (int(round((xa + xb) / 2)), int(round((ya + yb) / 2)))
            polygon = cv2.ellipse2Poly(centre, (int(round(length)), int(round(width_px))), int(round(angle)), 0, 360, 1)
            layer = canvas.copy()
            cv2.fillConvexPoly(layer, polygon, OPENPOSE_COLOURS[index])
            canvas = cv2.addWeighted(canvas, 0.4, layer, 0.6, 0)
        for index, point in enumerate(points):
            if np.isnan(point).any():
                continue
            centre = (int(round(point[0])), int(round(point[1])))
            cv2.circle(canvas, centre, max(1, int(round(width_px))), OPENPOSE_COLOURS[index], thickness=-1)
    return canvas


def openpose_keypoints(landmarks: Sequence, min_visibility: float = 0.5) -> np.ndarray:
    """OpenPose's (18, 2) keypoints in [0, 1] from MediaPipe's 33 pose landmarks (objects with x, y, visibility);
    a landmark seen with visibility below `min_visibility` becomes NaN. The neck is the shoulders' midpoint."""
    assert len(landmarks) == 33, f"MediaPipe pose gives 33 landmarks, got {len(landmarks)}"

    def seen(index: int) -> np.ndarray:
        mark = landmarks[index]
        if getattr(mark, "visibility", 1.0) < min_visibility:
            return np.full(2, np.nan)
        return np.array([mark.x, mark.y], dtype=np.float64)

    points = np.full((len(OPENPOSE_FROM_MEDIAPIPE), 2), np.nan)
    for index, source in enumerate(OPENPOSE_FROM_MEDIAPIPE):
        if source is not None:
            points[index] = seen(source)
    points[1] = (points[2] + points[5]) / 2  # NaN unless both shoulders are seen
    return points


def mediapipe_pose_detector() -> Callable[[np.ndarray], np.ndarray]:
    """A function (H, W, 3) uint8 RGB -> (P, 18, 2) OpenPose keypoints (P = 0 or 1: MediaPipe finds one person),
    using the pose model inside the mediapipe wheel (model complexity 1, the one it ships; no download).

    Raises ImportError naming the extra to install when mediapipe is missing."""
    try:
        from mediapipe.python.solutions import pose as mp_pose
    except ImportError as exc:
        raise ImportError(f"pose conditions need MediaPipe, which is not installed: run `{POSE_INSTALL_HINT}` "
                          "(or give already-extracted skeleton frames to video.condition_video)") from exc
    detector = mp_pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=False)

    def detect(image: np.ndarray) -> np.ndarray:
        result = detector.process(image)
        if result.pose_landmarks is None:
            return np.zeros((0, len(OPENPOSE_FROM_MEDIAPIPE), 2))
        return openpose_keypoints(result.pose_landmarks.landmark)[None]

    detect.close = detector.close  # type: ignore[attr-defined]
    return detect


def pose_skeletons(frames: torch.Tensor, detect: Callable[[np.ndarray], np.ndarray] | None = None,
                   stick_width: float = 0.0) -> torch.Tensor:
    """OpenPose-style skeleton images (F, H, W, 3) in [0, 1] of the people `detect` finds in each frame (default:
    MediaPipe pose); a frame without a person gives a black image."""
    images = to_uint8_images(frames)  # (F, H, W, 3)
    own = detect is None
    detect = detect or mediapipe_pose_detector()
    try:
        drawn = [draw_openpose(detect(image), image.shape[0], image.shape[1], stick_width) for image in images]
    finally:
        if own:
            detect.close()  # type: ignore[attr-defined]
    return from_uint8_images(np.stack(drawn))


def load_depth_model(folder: str):
    """A transformers depth-estimation model (DPT-style) and its image processor from a local folder.

    Data, never code: trust_remote_code=False, and weights only from safetensors (a folder with only pickled
    weights is refused). The folder needs config.json, model.safetensors and preprocessor_config.json, as
    `save_pretrained` writes them for a model and its image processor."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"no depth model folder at {folder!r}: give a local folder holding a transformers "
                                "depth model (config.json, model.safetensors, preprocessor_config.json)")
    names = set(os.listdir(folder))
    missing = [name for name in ("config.json", "preprocessor_config.json") if name not in names]
    if missing:
        raise FileNotFoundError(f"depth model folder {folder!r} lacks {', '.join(missing)}: save the model and its "
                                "image processor there with save_pretrained")
    if not any(name.endswith(".safetensors") for name in names):
        raise ValueError(f"depth model folder {folder!r} has no .safetensors weights: vdgraph loads weights only "
                         "from safetensors (pickled .bin weights can run code); convert them first")
    try:
        model = AutoModelForDepthEstimation.from_pretrained(folder, use_safetensors=True, trust_remote_code=False)
        processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"cannot load a depth model from {folder!r}: {type(exc).__name__}: {exc}") from exc
    from vdgraph_video.loading import finite

    finite(model, folder)  # a NaN weight would give a flat (all-zero) depth condition, silently
    return model.eval(), processor


@torch.no_grad()
def depth_maps(frames: torch.Tensor, model, processor, normalise: DepthNormalise = "frame",
               batch_size: int = 4) -> torch.Tensor:
    """Relative depth (near = bright, as DPT/MiDaS predict inverse depth) of each frame, (F, H, W, 3) in [0, 1].

    The processor prepares each frame as the model was trained; the prediction is resized bicubically to the
    frame size and min-max normalised per frame (as ControlNet's depth annotator does) or over the whole clip
    (steadier over time). A flat prediction maps to zeros."""
    images = list(to_uint8_images(frames))  # F x (H, W, 3)
    height, width = frames.shape[1:3]
    device = next(model.parameters()).device
    predictions = []
    for start in range(0, len(images), max(1, batch_size)):
        inputs = processor(images=images[start:start + batch_size], return_tensors="pt")
        depth = model(pixel_values=inputs["pixel_values"].to(device)).predicted_depth  # (n, h, w)
        depth = F.interpolate(depth[:, None].float(), size=(height, width), mode="bicubic", align_corners=False)
        predictions.append(depth[:, 0].cpu())  # (n, H, W)
    depth = torch.cat(predictions)  # (F, H, W)
    dims = (1, 2) if normalise == "frame" else (0, 1, 2)
    low = depth.amin(dim=dims, keepdim=True)
    span = depth.amax(dim=dims, keepdim=True) - low
    depth = torch.where(span > 0, (depth - low) / span.clamp_min(1e-12), torch.zeros_like(depth))
    return depth[..., None].expand(*depth.shape, 3).contiguous()  # (F, H, W, 3)


def frames_as_condition(frames: torch.Tensor, height: int = 0, width: int = 0) -> torch.Tensor:
    """Frames used as condition images as they are (already-extracted pose or depth videos), resized to
    height x width (0 for one side keeps the aspect ratio; both 0 keeps the size)."""
    return resize_frames(frames.float().clamp(0, 1), height, width).contiguous()
