"""Previews while sampling (the events `vdgraph serve` streams and `vdgraph run --previews DIR` saves): they show
the denoiser's x0, change no result, and shapes-64's shipped latent-to-RGB map reproduces its colours."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from vdgraph.events import Preview
from vdgraph.executor import Executor
from vdgraph.previews import PreviewSettings, preview_png
from vdgraph_shapes.models import MODEL_DIR
from vdgraph_video.previews import latent_to_rgb, read_latent_rgb, shown_frames

from server_fixtures import FAST_DEMO, REPO

WORKFLOW = str(REPO / "workflows" / "text2video_zero.json")


def test_previews_show_x0_every_n_steps_and_change_no_result(tmp_path):
    torch.set_num_threads(1)
    events: list = []
    with_previews = Executor(device="cpu").run(
        WORKFLOW, {**FAST_DEMO, "steps": 6, "t0": 2, "t1": 3}, outputs=["latents"], output_dir=str(tmp_path / "a"),
        on_event=events.append, previews=PreviewSettings(every=2))
    plain = Executor(device="cpu").run(WORKFLOW, {**FAST_DEMO, "steps": 6, "t0": 2, "t1": 3}, outputs=["latents"],
                                       output_dir=str(tmp_path / "b"))
    assert torch.equal(with_previews["latents"], plain["latents"])  # bit for bit
    previews = [e for e in events if isinstance(e, Preview)]
    final = [(p.step, p.total) for p in previews if p.node == "final"]
    assert final == [(2, 4), (4, 4)]  # every 2nd step of the final node's 4, the last included
    assert {p.node for p in previews} == {"to_t1", "to_t0", "final"}
    last = previews[-1]
    image = np.asarray(Image.open(io.BytesIO(preview_png(last))).convert("RGB"))
    assert image.shape == (last.height, last.width, 3) == (64, 128, 3) and last.frames == 2
    # the preview is the last step's x0 coloured by the map; that x0 is the output latents up to the last DDIM
    # step's small remaining noise term (the final alpha is not exactly 1), so a few pixels differ by a level or two
    factors, bias = read_latent_rgb(str(MODEL_DIR))
    expected = latent_to_rgb(plain["latents"][0].transpose(0, 1), factors, bias)  # (F, 16, 16, 3)
    expected = (expected.repeat_interleave(4, 1).repeat_interleave(4, 2) * 255).round().to(torch.uint8)
    difference = np.abs(image.astype(int) - torch.cat(list(expected), dim=1).numpy().astype(int))
    assert difference.mean() < 0.5 and difference.max() <= 8
    # a frame of the video: a red circle on blue (the default prompt), recognisable in the preview
    centre, corner = image[32, 32].astype(int), image[2, 2].astype(int)
    assert centre[0] > 150 and centre[2] < 100 and corner[2] > 150 and corner[0] < 100


def test_the_shipped_latent_to_rgb_map_reproduces_the_vae_colours():
    import diffusers

    from vdgraph_shapes.train import render_scenes, sample_scenes, to_model_space

    vae = diffusers.AutoencoderKL.from_pretrained(str(MODEL_DIR), subfolder="vae").eval()
    images = render_scenes(sample_scenes(16, seed=7))  # other scenes than the fit's
    with torch.no_grad():
        latents = vae.encode(to_model_space(images)).latent_dist.mean * vae.config.scaling_factor
    factors, bias = read_latent_rgb(str(MODEL_DIR))
    rgb = latent_to_rgb(latents, factors, bias)  # (N, 16, 16, 3)
    target = torch.nn.functional.avg_pool2d(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, 4)
    error = (rgb - target.permute(0, 2, 3, 1)).abs()
    assert error.mean() < 0.03 and error.max() < 0.5


def test_preview_settings_and_frame_choice():
    settings = PreviewSettings(every=3)
    assert [s for s in range(1, 8) if settings.wants(s, 7)] == [3, 6, 7]
    for bad in ({"every": 0}, {"source": "magic"}, {"frames": 0}, {"size": 4}, {"every": True}):
        with pytest.raises(ValueError):
            PreviewSettings(**bad)
    assert shown_frames(8, 4) == [0, 2, 5, 7] and shown_frames(3, 4) == [0, 1, 2] and shown_frames(9, 1) == [0]


def test_run_previews_dir_saves_pngs_named_by_node_and_step(tmp_path, capsys):
    from vdgraph.cli import main

    code = main(["run", WORKFLOW, "--output-dir", str(tmp_path / "out"), "--previews", str(tmp_path / "previews"),
                 "--preview-every", "2", "--quiet", "--output", "latents",
                 *[f"--set={k}={v}" for k, v in FAST_DEMO.items()]])
    assert code == 0, capsys.readouterr().err
    names = sorted(p.name for p in (tmp_path / "previews").iterdir())
    assert names == ["final_0002.png", "final_0003.png", "to_t0_0001.png", "to_t1_0001.png"]
    with pytest.raises(SystemExit) as stopped:
        main(["run", WORKFLOW, "--previews", str(tmp_path / "p"), "--preview-every", "0"])
    assert stopped.value.code == 2 and "N must be an int >= 1" in capsys.readouterr().err
