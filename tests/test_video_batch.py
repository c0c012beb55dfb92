"""A batch of videos (latents with B > 1) decodes to (B, F, H, W, 3) and writes one file per video."""

from __future__ import annotations

import torch

import vdgraph
from vdgraph_video.ops.video_io import read_video
from vdgraph_video.video_io import batch_item_name


def test_batch_item_names_keep_the_extension_and_folder():
    assert batch_item_name("clip.mp4", 0) == "clip_b0.mp4"
    assert batch_item_name("runs/{seed}/clip_{counter}.webm", 2) == "runs/{seed}/clip_{counter}_b2.webm"
    assert batch_item_name("frames/", 1) == "frames_b1"


def test_a_batch_of_two_videos_decodes_and_writes_two_files(tmp_path):
    workflow = {
        "vdgraph": 1,
        "nodes": {
            "model": {"type": "video.load_model", "params": {"model": "shapes-64"}},
            "text": {"type": "video.encode_text", "in": {"text_encoder": "model.text_encoder"},
                     "params": {"prompt": "a red circle on a blue background"}},
            "scheduler": {"type": "video.scheduler", "in": {"scheduler_config": "model.scheduler_config"},
                          "params": {"steps": 3}},
            "noise": {"type": "video.noise", "in": {"unet": "model.unet", "vae": "model.vae"},
                      "params": {"frames": 2, "height": 64, "width": 64, "batch": 2, "seed": 1}},
            "cross": {"type": "video.cross_frame_attention", "in": {"unet": "model.unet"}},
            "denoise": {"type": "video.denoise", "in": {"unet": "cross.unet", "scheduler": "scheduler.scheduler",
                                                        "conditioning": "text.conditioning", "latents": "noise.latents"},
                        "params": {"guidance": 5.0}},
            "decode": {"type": "video.decode", "in": {"vae": "model.vae", "latents": "denoise.latents"}},
            "write": {"type": "video.write_video", "in": {"frames": "decode.frames"}, "params": {"path": "clip"}},
            "sheet": {"type": "video.contact_sheet", "in": {"frames": "decode.frames"}},
        },
        "outputs": {"frames": "decode.frames", "file": "write.file", "files": "write.files", "sheet": "sheet.file"},
    }
    out = vdgraph.run(workflow, output_dir=tmp_path, device="cpu")
    frames = out["frames"]
    assert frames.shape == (2, 2, 64, 64, 3)
    assert [p.rsplit("/", 1)[-1] for p in out["files"]] == ["clip_b0", "clip_b1"] and out["file"] == out["files"][0]
    for item, folder in enumerate(out["files"]):  # PNG frames are lossless: each folder holds its own video
        written, _ = read_video(folder)
        assert torch.equal((written * 255).round(), (frames[item] * 255).round())
    assert not torch.equal(frames[0], frames[1])  # two different noises, two different videos
    from PIL import Image

    sheet = Image.open(out["sheet"])
    assert sheet.size == (2 * 64 + 2, 2 * 64 + 2)  # a row per video, a column per frame
