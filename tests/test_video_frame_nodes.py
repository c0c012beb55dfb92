"""Frame and clip utilities (video.concat_frames ... video.change_fps, video.rng): the ops on known clips, and a
workflow that reads, fits, stacks, retimes and writes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vdgraph
from vdgraph_shapes.world import Scene, render
from vdgraph_video.ops import frames as ops
from vdgraph_video.ops.video_io import write_png_frames


def moving_square(frames: int, speed: float, size: int = 64, start: float = 16.0) -> torch.Tensor:
    """A white square moving right at `speed` px per frame on black: (F, H, W, 3) in [0, 1], ground truth known."""
    clip = [render(Scene("black", "white", "square", start + speed * i, 32.0, 16.0), size) for i in range(frames)]
    return torch.from_numpy(np.stack(clip).astype(np.float32) / 255.0)


def numbered(frames: int, height: int = 4, width: int = 6) -> torch.Tensor:
    """Frame i is filled with i / 100, so order and selection are visible in any pixel."""
    return (torch.arange(frames, dtype=torch.float32) / 100).view(-1, 1, 1, 1).expand(frames, height, width, 3).clone()


def ids(clip: torch.Tensor) -> list[int]:
    return [round(v * 100) for v in clip[:, 0, 0, 0].tolist()]


def test_concat_joins_in_order_and_names_the_clip_of_the_wrong_size():
    assert ids(ops.concat([("first", numbered(3)), ("second", numbered(2))])) == [0, 1, 2, 0, 1]
    with pytest.raises(ValueError, match=r"port 'second': frames are 8x4 \(W x H\), but 'first' are 6x4"):
        ops.concat([("first", numbered(3)), ("second", numbered(2, width=8))])


def test_stack_side_by_side_with_a_gap_and_lengths():
    a, b = numbered(3), numbered(5) + 0.5
    out = ops.stack([("first", a), ("second", b)], "horizontal", gap=2, length="longest")
    assert out.shape == (5, 4, 6 + 2 + 6, 3)
    assert ids(out[:, :, :6]) == [0, 1, 2, 2, 2]  # the shorter clip holds its last frame
    assert torch.equal(out[:, :, 6:8], torch.ones(5, 4, 2, 3))  # the white gap
    assert torch.equal(out[:, :, 8:], b)
    assert ops.stack([("first", a), ("second", b)], "vertical", length="shortest").shape == (3, 8, 6, 3)
    with pytest.raises(ValueError, match="port 'second': stacked horizontally, clips need the same height"):
        ops.stack([("first", a), ("second", numbered(3, height=5))], "horizontal")


def test_grid_of_three_fills_the_fourth_cell_white():
    clips = [(name, numbered(2) + k / 10) for k, name in enumerate(["first", "second", "third"])]
    out = ops.stack(clips, "grid", gap=1)
    assert out.shape == (2, 4 + 1 + 4, 6 + 1 + 6, 3)
    assert torch.equal(out[:, :4, :6], clips[0][1]) and torch.equal(out[:, :4, 7:], clips[1][1])
    assert torch.equal(out[:, 5:, :6], clips[2][1]) and torch.equal(out[:, 5:, 7:], torch.ones(2, 4, 6, 3))


@pytest.mark.parametrize("mode", ["crop", "resize", "pad"])
def test_fit_gives_multiples_of_the_factor(mode):
    clip = torch.rand(2, 50, 70, 3)
    out = ops.fit(clip, 0, 0, 8, mode)
    assert out.shape == (2, 48, 64, 3) and out.min() >= 0 and out.max() <= 1
    assert ops.fit(clip, 30, 0, 4, mode).shape == (2, 28, 68, 3)


def test_fit_crop_keeps_the_centre_and_pad_adds_black_borders():
    clip = torch.zeros(1, 40, 80, 3)
    clip[:, :, 20:60] = 1.0  # a white band in the middle half
    cropped = ops.fit(clip, 40, 40, 8, "crop")
    assert cropped.shape == (1, 40, 40, 3) and torch.equal(cropped, torch.ones(1, 40, 40, 3))
    padded = ops.fit(torch.ones(1, 40, 80, 3), 80, 80, 8, "pad")
    assert padded.shape == (1, 80, 80, 3)
    assert padded[0, :20].max() == 0 and padded[0, 60:].max() == 0 and padded[0, 20:60].min() > 0.99


def test_select_reverse_loop_and_pingpong():
    clip = numbered(5)
    assert ids(ops.select(clip, 1, None, 2)) == [1, 3] and ids(ops.select(clip, -2, None, 1)) == [3, 4]
    with pytest.raises(ValueError, match="select nothing"):
        ops.select(clip, 5, None, 1)
    assert ids(ops.loop(clip, "loop", 2)) == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    assert ids(ops.loop(clip, "pingpong", 1)) == [0, 1, 2, 3, 4, 3, 2, 1]
    assert ids(ops.loop(clip, "pingpong", 2)) == [0, 1, 2, 3, 4, 3, 2, 1] * 2


def test_retime_by_repeating_frames():
    clip = numbered(8)
    assert ids(ops.retime(clip, 8, 16, "repeat")) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]
    assert ids(ops.retime(clip, 8, 4, "repeat")) == [0, 2, 4, 6]
    assert torch.equal(ops.retime(clip, 8, 8, "flow"), clip)


def test_retime_by_flow_lands_between_the_frames():
    """Doubling a clip of a square moving 6 px per frame: the flow in-between frames are close to the true
    renders at the half positions, much closer than repeating the previous frame."""
    clip = moving_square(4, 6.0)
    truth = moving_square(8, 3.0)[:7]  # ticks 0, 0.5, 1, ...: the square at 16 + 3k px
    flow, repeat = ops.retime(clip, 8, 16, "flow"), ops.retime(clip, 8, 16, "repeat")
    assert flow.shape == repeat.shape == (8, 64, 64, 3)
    between = [1, 3, 5]
    flow_error = (flow[between] - truth[between]).abs().mean().item()
    repeat_error = (repeat[between] - truth[between]).abs().mean().item()
    assert torch.equal(flow[::2], clip)  # the source frames themselves are kept
    assert flow_error < repeat_error / 3, (flow_error, repeat_error)


def test_a_workflow_reads_fits_stacks_retimes_and_writes(tmp_path):
    source = tmp_path / "clip"
    clip = (moving_square(4, 4.0, size=64)[:, :, :60] * 255).round().to(torch.uint8).numpy()  # 60 wide: not x8
    write_png_frames(clip, str(source))
    workflow = {
        "vdgraph": 1,
        "nodes": {
            "read": {"type": "video.read_video", "params": {"path": str(source)}},
            "fit": {"type": "video.fit_frames", "in": {"frames": "read.frames"}, "params": {"mode": "crop"}},
            "back": {"type": "video.reverse_frames", "in": {"frames": "fit.frames"}},
            "pair": {"type": "video.stack_frames", "in": {"first": "fit.frames", "second": "back.frames"},
                     "params": {"gap": 4}},
            "slow": {"type": "video.change_fps", "in": {"frames": "pair.frames", "fps": "read.fps"},
                     "params": {"new_fps": 16.0}},
            "rng": {"type": "video.rng", "params": {"seed": 7}},
            "write": {"type": "video.write_video", "in": {"frames": "slow.frames", "fps": "slow.fps"},
                      "params": {"path": "pair.mp4"}},
        },
        "outputs": {"frames": "slow.frames", "video": "write.file", "rng": "rng.rng"},
    }
    out = vdgraph.run(workflow, output_dir=tmp_path / "out", device="cpu")
    assert out["frames"].shape == (8, 64, 56 + 4 + 56, 3)
    assert out["video"].endswith("pair.mp4")
    assert torch.equal(out["rng"], torch.Generator().manual_seed(7).get_state())


@pytest.mark.parametrize("fmt, exact", [("png", True), ("jpg", False), ("webp", False)])
def test_write_images_writes_an_image_sequence_with_its_recipe(tmp_path, fmt, exact):
    from PIL import Image

    clip = moving_square(3, 4.0)
    write_png_frames((clip * 255).round().to(torch.uint8).numpy(), str(tmp_path / "clip"))
    workflow = {
        "vdgraph": 1,
        "nodes": {
            "src": {"type": "video.read_video", "params": {"path": str(tmp_path / "clip")}},
            "write": {"type": "video.write_images", "in": {"frames": "src.frames"},
                      "params": {"path": "seq", "format": fmt, "quality": 90}},
        },
        "outputs": {"folder": "write.folder"},
    }
    folder = vdgraph.run(workflow, output_dir=tmp_path / "out", device="cpu")["folder"]
    names = sorted(p.name for p in (tmp_path / "out" / "seq").iterdir() if p.name != ".vdgraph-output")
    assert folder.endswith("seq") and names == [f"frame_0000{i}.{fmt}" for i in range(3)] + ["recipe.json"]
    first = torch.from_numpy(np.asarray(Image.open(tmp_path / "out" / "seq" / f"frame_00000.{fmt}").convert("RGB")))
    error = (first.float() / 255 - clip[0]).abs().max().item()
    assert error == 0 if exact else error < 0.35  # lossy formats stay close to the frame
    again = vdgraph.run(workflow, output_dir=tmp_path / "out", device="cpu")["folder"]
    assert again.endswith("seq_00001")  # never replaced without overwrite
