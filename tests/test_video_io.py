"""Video writer, reader and contact sheet: round trips per format, local and through fsspec."""

from __future__ import annotations

import os

import fsspec
import numpy as np
import pytest
import torch

import vdgraph_video
from vdgraph.context import RunContext
from vdgraph_video.ops import video_io


def call(cls, ctx=None, **inputs):
    ctx = ctx or RunContext(node_id=cls.id, node_type=cls.id, device=torch.device("cpu"), dtype=torch.float32)
    values = {p.name: (p.default if p.has_default else None) for p in cls.inputs}
    values.update(inputs)
    return cls.normalise_outputs(cls().run(ctx, **values))


def moving_square(frames: int = 6, h: int = 32, w: int = 32) -> torch.Tensor:
    """(F, H, W, 3): a bright square moving right over a dark-blue background, smooth enough for lossy codecs."""
    x = torch.zeros(frames, h, w, 3)
    x[..., 2] = 0.3
    for i in range(frames):
        x[i, 8:20, 2 + 2 * i:14 + 2 * i] = torch.tensor([0.9, 0.8, 0.1])
    return x


@pytest.mark.parametrize("name, tolerance", [("clip.mp4", 0.08), ("clip.webm", 0.08), ("clip.gif", 0.02),
                                             ("frames", 0.5 / 255)])
def test_write_then_read_round_trip(tmp_path, name, tolerance):
    frames = moving_square()
    ctx = RunContext(node_id="w", node_type="video.write_video", device=torch.device("cpu"), dtype=torch.float32,
                     output_dir=str(tmp_path))
    path = call(vdgraph_video.WriteVideo, ctx, frames=frames, path=name, fps=10.0)["file"]
    assert path == os.path.join(str(tmp_path), name)
    sidecar = [name + ".recipe.json"] if name.endswith(".gif") else []  # a GIF's recipe goes beside it
    assert sorted(os.listdir(tmp_path)) == [name, *sidecar], "no temporary files may remain"
    back = call(vdgraph_video.ReadVideo, path=path)
    assert back["frames"].shape == frames.shape
    assert (back["frames"] - frames).abs().mean().item() <= tolerance
    if name != "frames":
        assert back["fps"] == pytest.approx(10.0, rel=0.01)
    if name == "frames":  # PNG frames are lossless up to the 8-bit rounding
        assert torch.equal(back["frames"], torch.from_numpy(video_io.to_uint8(frames)).float() / 255)


def test_mp4_pads_odd_sizes(tmp_path):
    path = video_io.write_video(moving_square(3, 31, 33), str(tmp_path / "odd.mp4"), fps=8)
    frames, _ = video_io.read_video(path)
    assert frames.shape == (3, 32, 34, 3)


def test_format_follows_the_extension_or_is_explicit(tmp_path):
    assert video_io.format_for("a/b.webm", "auto") == "webm"
    assert video_io.format_for("a/frames/", "auto") == "png"
    assert video_io.format_for("a/b.bin", "gif") == "gif"
    with pytest.raises(ValueError, match="cannot tell the video format"):
        video_io.format_for("a/b.avi", "auto")


def test_writer_targets_fsspec_urls_atomically():
    fs = fsspec.filesystem("memory")
    try:
        video_io.write_video(moving_square(), "memory://out/clip.mp4", fps=8)
        video_io.write_video(moving_square(), "memory://out/frames", fps=8)
        assert sorted(p.rsplit("/", 1)[1] for p in fs.ls("/out", detail=False)) == ["clip.mp4", "frames"]
        assert len(fs.ls("/out/frames")) == 6
        frames, _ = video_io.read_video("memory://out/clip.mp4")
        assert frames.shape == (6, 32, 32, 3)
    finally:
        fs.rm("/out", recursive=True)


def test_failed_write_leaves_the_previous_file(tmp_path):
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"old")
    with pytest.raises(AssertionError):
        video_io.write_video(torch.zeros(2, 8, 8), str(target), fps=8)  # not (F, H, W, 3)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["clip.mp4"]


def test_reader_selects_resamples_and_resizes(tmp_path):
    frames = torch.stack([torch.full((16, 16, 3), i / 20) for i in range(20)])
    path = video_io.write_video(frames, str(tmp_path / "f"), fps=8)  # PNG folder: exact values
    out, fps = video_io.read_video(path, start=2, stride=3, max_frames=4)
    assert [round(float(f[0, 0, 0]) * 20) for f in out] == [2, 5, 8, 11] and fps == pytest.approx(8 / 3)
    out, fps = video_io.read_video(path, fps=4)  # 8 -> 4 fps: every other frame
    assert [round(float(f[0, 0, 0]) * 20) for f in out] == list(range(0, 20, 2)) and fps == 4
    out, _ = video_io.read_video(path, height=8)
    assert out.shape == (20, 8, 8, 3)


def test_contact_sheet_lays_frames_out_in_a_grid(tmp_path):
    frames = torch.stack([torch.full((4, 6, 3), i / 4) for i in range(5)])
    sheet = video_io.contact_sheet(frames, columns=0, gap=2)
    assert sheet.shape == (2 * 4 + 2, 3 * 6 + 2 * 2, 3)  # 5 frames -> 3 columns, 2 rows
    assert (sheet[5:, 8:14] == round(255 * 4 / 4)).all()  # frame 4: row 1, column 1
    assert (sheet[4:6] == 255).all()  # the gap between rows
    ctx = RunContext(node_id="s", node_type="video.contact_sheet", device=torch.device("cpu"), dtype=torch.float32,
                     output_dir=str(tmp_path))
    path = call(vdgraph_video.ContactSheet, ctx, frames=frames, path="sheet.png", columns=5)["file"]
    from PIL import Image

    assert np.asarray(Image.open(path)).shape == (4, 5 * 6 + 4 * 2, 3)


def test_writer_and_sheet_are_side_effects():
    for writer in (vdgraph_video.WriteVideo, vdgraph_video.ContactSheet):
        assert writer.side_effects is True, "file writers run every time (their file may be gone)"
        assert writer.deterministic is True, "their output (the path) is a function of their inputs"
