"""Condition frames from an input video (canny, pose, depth, frames as they are): known answers on procedural
images, the nodes through a run context, and the validation problems of a missing depth model."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

import vdgraph_video
from vdgraph.context import RunContext
from vdgraph.registry import Registry
from vdgraph.validate import validate
from vdgraph.workflow import load_workflow
from vdgraph_video.ops import conditions as ops

HAS_MEDIAPIPE = importlib.util.find_spec("mediapipe") is not None


def call(cls, **inputs):
    ctx = RunContext(node_id=cls.id, node_type=cls.id, device=torch.device("cpu"), dtype=torch.float32)
    values = {p.name: (p.default if p.has_default else None) for p in cls.inputs}
    values.update(inputs)
    return cls.normalise_outputs(cls().run(ctx, **values))["frames"]


def white_square(frames: int = 2, size: int = 64, lo: int = 16, hi: int = 48) -> torch.Tensor:
    """(F, size, size, 3): a white square [lo, hi) x [lo, hi) on black."""
    out = torch.zeros(frames, size, size, 3)
    out[:, lo:hi, lo:hi] = 1.0
    return out


def test_canny_edges_lie_on_the_border_of_a_white_square():
    edges = ops.canny_edges(white_square())
    assert edges.shape == (2, 64, 64, 3) and edges.dtype == torch.float32
    assert set(torch.unique(edges).tolist()) == {0.0, 1.0}
    on = edges[0, :, :, 0] > 0.5  # (H, W)
    assert torch.equal(edges[..., 0], edges[..., 2])  # grey, repeated over RGB
    border = torch.zeros(64, 64, dtype=torch.bool)
    border[15:49, 15:49] = True
    border[18:46, 18:46] = False  # a 3-px ring straddling the square's edge at 16 / 47
    assert on.any() and not (on & ~border).any(), "every edge pixel lies on the square's border"
    ring_rows = on.any(dim=1).nonzero().flatten()
    assert ring_rows.min() >= 15 and ring_rows.max() <= 48 and on[32].sum() == 2  # one edge left, one right


def test_canny_of_a_flat_image_is_empty_and_thresholds_matter():
    assert ops.canny_edges(torch.full((1, 32, 32, 3), 0.5)).sum() == 0
    faint = white_square(1) * 0.2  # a step of 51 grey levels: above 200 only through Sobel's gain
    strong = ops.canny_edges(faint, 100, 200).sum()
    assert ops.canny_edges(faint, 1000, 1200).sum() == 0 < strong


def test_canny_node_and_its_threshold_check():
    assert torch.equal(call(vdgraph_video.CannyCondition, frames=white_square()), ops.canny_edges(white_square()))
    problems = list(vdgraph_video.CannyCondition.check(_known(low=250, high=100)))
    assert [p.port for p in problems] == ["low"] and "above the high threshold" in problems[0].message


def _known(**values):
    from vdgraph.node import Known

    return Known(values)


def test_openpose_drawing_puts_colours_where_the_keypoints_are():
    points = np.full((1, 18, 2), np.nan)
    points[0, 2] = (0.25, 0.25)  # right shoulder
    points[0, 3] = (0.25, 0.75)  # right elbow: limb 2 (shoulder-elbow) in OpenPose's colour 2
    image = ops.draw_openpose(points, 64, 128)
    assert image.shape == (64, 128, 3) and image.dtype == np.uint8
    assert tuple(image[16, 32]) == ops.OPENPOSE_COLOURS[2]  # the shoulder's disc, drawn last, at (x 32, y 16)
    assert tuple(image[48, 32]) == ops.OPENPOSE_COLOURS[3]  # the elbow's disc
    limb = np.array(ops.OPENPOSE_COLOURS[2]) * 0.6  # limbs blend at 0.6 over black
    assert np.abs(image[32, 32].astype(float) - limb).max() <= 1  # midway along the limb
    lit = image.any(axis=2)
    assert not lit[:, 40:].any() and not lit[:, :24].any(), "nothing is drawn away from the two points"


def test_openpose_drawing_skips_limbs_with_an_unseen_end_and_empty_people():
    points = np.full((1, 18, 2), np.nan)
    points[0, 2] = (0.5, 0.5)
    lone = ops.draw_openpose(points, 32, 32)
    assert lone.any(axis=2).sum() <= 9  # only the shoulder's disc (radius 1)
    assert not ops.draw_openpose(np.zeros((0, 18, 2)), 32, 32).any()


def test_mediapipe_landmarks_map_to_openpose_keypoints():
    class Mark:
        def __init__(self, i, visibility=1.0):
            self.x, self.y, self.visibility = i / 100, i / 50, visibility

    marks = [Mark(i) for i in range(33)]
    marks[16] = Mark(16, visibility=0.1)  # the right wrist, barely seen
    points = ops.openpose_keypoints(marks)
    assert points.shape == (18, 2)
    assert tuple(points[0]) == (0.0, 0.0) and tuple(points[2]) == (0.12, 0.24)  # nose, right shoulder (12)
    assert np.allclose(points[1], ((0.11 + 0.12) / 2, (0.22 + 0.24) / 2))  # neck: between the shoulders
    assert np.isnan(points[4]).all()  # the unseen wrist


def test_pose_skeletons_draw_what_the_detector_finds():
    seen = np.full((1, 18, 2), np.nan)
    seen[0, [2, 3]] = [(0.25, 0.25), (0.25, 0.75)]
    found = iter([seen, np.zeros((0, 18, 2))])
    out = ops.pose_skeletons(torch.rand(2, 64, 64, 3), detect=lambda image: next(found))
    assert out.shape == (2, 64, 64, 3)
    assert out[0].sum() > 0 and out[1].sum() == 0  # a person in frame 0, nobody in frame 1


@pytest.mark.skipif(not HAS_MEDIAPIPE, reason="mediapipe is not installed (pip install vdgraph[pose])")
def test_mediapipe_finds_no_person_in_an_image_without_one():
    frames = white_square(2)
    frames[1] = torch.linspace(0, 1, 64)[None, :, None].expand(64, 64, 3)
    out = call(vdgraph_video.PoseCondition, frames=frames)
    assert out.shape == (2, 64, 64, 3) and out.sum() == 0


@pytest.mark.skipif(not HAS_MEDIAPIPE, reason="mediapipe is not installed (pip install vdgraph[pose])")
def test_mediapipe_finds_a_drawn_stick_figure_or_draws_nothing_off_it():
    """A thick stick figure at 256 px: whatever MediaPipe finds, every drawn pixel is near the figure."""
    import cv2

    canvas = np.full((256, 256, 3), 200, np.uint8)
    body = (60, 40, 30)
    cv2.circle(canvas, (128, 50), 22, (220, 180, 150), -1)  # head
    for a, b in [((128, 72), (128, 160)), ((128, 90), (80, 140)), ((128, 90), (176, 140)),
                 ((128, 160), (96, 240)), ((128, 160), (160, 240))]:
        cv2.line(canvas, a, b, body, 14)
    frames = torch.from_numpy(canvas).float()[None] / 255
    out = ops.pose_skeletons(frames)[0].numpy()  # (H, W, 3)
    drawn = out.any(axis=2)
    figure = cv2.dilate((canvas != 200).any(axis=2).astype(np.uint8), np.ones((41, 41), np.uint8)) > 0
    assert not (drawn & ~figure).any(), "skeleton pixels far from the figure"


def test_missing_mediapipe_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_mediapipe(name, *args, **kwargs):
        if name.startswith("mediapipe"):
            raise ImportError("No module named 'mediapipe'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mediapipe)
    with pytest.raises(ImportError, match=r"pip install vdgraph\[pose\]") as caught:
        call(vdgraph_video.PoseCondition, frames=white_square(1))
    assert caught.value.__cause__ is not None


@pytest.fixture(scope="module")
def depth_folder(tmp_path_factory):
    """A tiny random DPT depth model and its image processor, saved as safetensors."""
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    config = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37,
                       image_size=32, patch_size=8, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[16, 16, 32, 32],
                       fusion_hidden_size=16, head_in_index=-1, is_hybrid=False)
    folder = tmp_path_factory.mktemp("dpt")
    DPTForDepthEstimation(config).eval().save_pretrained(folder, safe_serialization=True)
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(folder)
    return str(folder)


def test_depth_of_a_tiny_model_has_the_frame_shape_and_unit_range(depth_folder):
    frames = white_square(3, size=48, lo=12, hi=36)
    frames[1] = 1 - frames[1]
    out = call(vdgraph_video.DepthCondition, frames=frames, depth_model=depth_folder)
    assert out.shape == (3, 48, 48, 3) and out.dtype == torch.float32
    assert torch.equal(out[..., 0], out[..., 1])
    for frame in out[..., 0]:  # each frame min-max normalised
        assert float(frame.min()) == 0.0 and float(frame.max()) == pytest.approx(1.0)
    clip = call(vdgraph_video.DepthCondition, frames=frames, depth_model=depth_folder, normalise="clip")
    assert float(clip.min()) == 0.0 and float(clip.max()) == pytest.approx(1.0)
    assert torch.equal(call(vdgraph_video.Condition, frames=frames, kind="depth", depth_model=depth_folder), out)


def test_depth_refuses_pickled_weights_and_missing_folders(depth_folder, tmp_path):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (pickled / name).write_text((__import__("pathlib").Path(depth_folder) / name).read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ValueError, match="no .safetensors weights"):
        ops.load_depth_model(str(pickled))
    with pytest.raises(FileNotFoundError, match="no depth model folder"):
        ops.load_depth_model(str(tmp_path / "absent"))


def test_a_missing_depth_model_is_a_validation_problem_naming_what_to_pass(tmp_path):
    workflow = {"vdgraph": 1, "inputs": {"condition": {"type": "str", "default": "depth",
                                             "choices": ["canny", "pose", "depth", "video"]}},
                "nodes": {"video": {"type": "video.read_video", "params": {"path": "in.mp4"}},
                          "cond": {"type": "video.condition", "in": {"frames": "video.frames",
                                                                     "kind": "inputs.condition"}}},
                "outputs": {"frames": "cond.frames"}}
    path = tmp_path / "w.json"
    path.write_text(json.dumps(workflow))
    registry = Registry.discover(folders=(), env={})
    found = [p for p in validate(load_workflow(str(path)), registry) if p.severity == "error"]
    assert [(p.node, p.port) for p in found] == [("cond", "depth_model")]
    assert "transformers depth model" in found[0].hint and "depth_model" in found[0].hint
    assert [p for p in validate(load_workflow(str(path)), registry, {"condition": "canny"})
            if p.severity == "error"] == []
    with pytest.raises(ValueError, match="no depth model given"):
        call(vdgraph_video.DepthCondition, frames=white_square(1), depth_model="")


def test_video_condition_keeps_the_frames_and_resizes_them():
    frames = torch.rand(3, 32, 48, 3)
    assert torch.equal(call(vdgraph_video.VideoCondition, frames=frames), frames)
    out = call(vdgraph_video.Condition, frames=frames, kind="video", height=16, width=24)
    assert out.shape == (3, 16, 24, 3) and 0 <= float(out.min()) and float(out.max()) <= 1
    assert torch.allclose(out.mean(), frames.mean(), atol=0.02)
    assert torch.equal(call(vdgraph_video.Condition, frames=white_square(), kind="canny"),
                       ops.canny_edges(white_square()))


def test_a_depth_model_with_a_nan_weight_is_refused(depth_folder, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    damaged = tmp_path / "damaged"
    shutil.copytree(depth_folder, damaged)
    state = load_file(str(damaged / "model.safetensors"))
    name = next(k for k in state if k.startswith("head.") and k.endswith("weight"))
    state[name].view(-1)[0] = float("nan")
    save_file(state, str(damaged / "model.safetensors"))
    with pytest.raises(ValueError, match=rf"{damaged}: the weight '{name}' holds 1 NaN"):
        ops.load_depth_model(str(damaged))
