"""shapes-64-motion: the trained AnimateDiff motion adapter for shapes-64, its captions, its trainer and its gates.

The reduced gate renders through diffusers' AnimateDiffPipeline with the shipped weights (with shapes-64's text
add-embedding restored on its UNet, as vdgraph's video.apply_motion_adapter does); the same check on an
untrained adapter (zero output projections: every frame drawn independently by the image model) must fail, so
the learned-motion test cannot pass on a model that did not learn motion.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import shlex
from importlib.metadata import entry_points

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from vdgraph_shapes import motion_gates, train_motion  # noqa: E402
from vdgraph_shapes.components import build_tokenizer  # noqa: E402
from vdgraph_shapes.models import MODEL_DIR, MOTION_DIR  # noqa: E402
from vdgraph_shapes.world import IMAGE_SIZE, MARGIN, all_prompts  # noqa: E402
from vdgraph_video.ops.motion_text import MotionTextRoute, route_mismatch  # noqa: E402

PACKAGE = MODEL_DIR.parent


def test_adapter_loads_by_name_into_diffusers() -> None:
    (entry,) = [ep for ep in entry_points(group="vdgraph.models") if ep.name == "shapes-64-motion"]
    folder = pathlib.Path(entry.load())
    assert folder == MOTION_DIR
    adapter = diffusers.MotionAdapter.from_pretrained(str(folder), use_safetensors=True)
    unet_config = json.loads((MODEL_DIR / "unet" / "config.json").read_text())
    assert list(adapter.config.block_out_channels) == unet_config["block_out_channels"]
    assert adapter.config.motion_layers_per_block == unet_config["layers_per_block"]
    assert adapter.config.motion_max_seq_length >= 32
    unet = diffusers.UNet2DConditionModel.from_pretrained(str(MODEL_DIR / "unet"))
    diffusers.UNetMotionModel.from_unet2d(unet, adapter)  # raises on a block layout that does not fit
    weights = folder / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size <= 6 * 2**20
    assert not list(folder.glob("*.bin"))
    report = json.loads((folder / "training.json").read_text())
    assert report["wall_time_s"]["training"] > 0 and report["args"]["threads"] == 1


def test_builtin_weights_stay_under_25_mb() -> None:
    total = sum(p.stat().st_size for p in PACKAGE.rglob("*.safetensors"))
    assert total < 25 * 2**20, f"{total / 2**20:.1f} MB of built-in weights"


def test_shipped_tokenizer_extends_the_image_vocabulary_without_moving_an_id() -> None:
    from transformers import AutoTokenizer

    shipped = AutoTokenizer.from_pretrained(str(MODEL_DIR), subfolder="tokenizer")
    image_only = build_tokenizer()
    assert len(shipped) == len(image_only) + len(train_motion.MOTION_WORDS)
    prompts = all_prompts()[::7]
    assert shipped(prompts).input_ids == image_only(prompts).input_ids
    caption = train_motion.motion_caption("red", "circle", "left", "blue")
    ids = shipped(caption).input_ids
    assert shipped.unk_token_id not in ids
    assert shipped.convert_ids_to_tokens(ids[8:10]) == ["moving", "left"]
    config = json.loads((MODEL_DIR / "text_encoder" / "config.json").read_text())
    assert config["vocab_size"] == len(shipped)


def test_motion_captions_round_trip_and_reject_other_text() -> None:
    for direction in train_motion.DIRECTIONS:
        text = train_motion.motion_caption("green", "triangle", direction, "black")
        assert train_motion.parse_motion_caption(text) == ("green", "triangle", direction, "black")
        assert train_motion.image_caption(text) == "a green triangle on a black background"
    assert train_motion.motion_caption("red", "square", "still", "blue") == \
        "a red square on a blue background standing still"
    for bad in ("a red circle on a blue background", "a red circle on a blue background moving sideways",
                "a purple circle on a blue background moving left", "a red circle moving left on a blue background"):
        with pytest.raises(ValueError):
            train_motion.parse_motion_caption(bad)


def test_training_clips_move_at_the_caption_speed_and_stay_in_view() -> None:
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(60):
        clip = train_motion.sample_clip(rng)
        seen.add(clip.direction)
        ux, uy = train_motion.DIRECTIONS[clip.direction]
        xs = np.array([s.x for s in clip.scenes])
        ys = np.array([s.y for s in clip.scenes])
        np.testing.assert_allclose(np.diff(xs), ux * train_motion.SPEED)
        np.testing.assert_allclose(np.diff(ys), uy * train_motion.SPEED)
        half = clip.scenes[0].size / 2
        for v in (xs, ys):
            assert v.min() - half >= MARGIN - 1e-9 and v.max() + half <= IMAGE_SIZE - MARGIN + 1e-9
        assert len({(s.colour, s.shape, s.background, s.size) for s in clip.scenes}) == 1
        assert train_motion.parse_motion_caption(clip.caption)[2] == clip.direction
    assert seen == set(train_motion.DIRECTIONS)


@pytest.mark.parametrize("extra", [[], ["--batch", "2", "--uncond-prob", "0", "--contrast-weight", "1",
                                        "--contrast-t", "0", "--route-probe-weight", "0.1", "--shared-noise", "0.5",
                                        "--text-route-width", "16", "--motion-reward-weight", "0.1",
                                        "--motion-reward-steps", "3", "--motion-reward-decided", "2",
                                        "--steps", "3", "--stop-after", "2"]],
                         ids=["plain", "route+contrast+probe+shared-noise+reward"])
def test_trainer_runs_and_keeps_every_image_weight(tmp_path, extra) -> None:
    out = tmp_path / "adapter"
    train_motion.main(["--out", str(out), "--steps", "2", "--batch", "1", "--frames", "4",
                       "--snapshot-every", "0", *extra])
    adapter = diffusers.MotionAdapter.from_pretrained(str(out), use_safetensors=True)
    assert sum(p.numel() for p in adapter.parameters()) == json.loads((out / "training.json").read_text())[
        "adapter_parameters"]
    route = MotionTextRoute.load(out)  # a text route into the motion modules is saved beside the adapter
    if "--text-route-width" in extra:
        assert route is not None and route_mismatch(route, adapter) is None and route.width == 16
    else:
        assert route is None
    routed = sum(p.numel() for p in route.parameters()) if route else 0
    assert routed == json.loads((out / "training.json").read_text())["text_route_parameters"]
    from transformers import CLIPTextModel

    trained = CLIPTextModel.from_pretrained(str(out / "text_encoder"))
    shipped = CLIPTextModel.from_pretrained(str(MODEL_DIR / "text_encoder"))
    n_old = json.loads((out / "training.json").read_text())["tokenizer_size"]["before"]
    old_t, new_t = trained.state_dict(), shipped.state_dict()
    for name, value in old_t.items():
        if name.endswith("token_embedding.weight"):
            assert torch.equal(value[:n_old], new_t[name][:n_old])
        else:
            assert torch.equal(value, new_t[name]), name


def test_trainer_warm_starts_from_an_adapter_and_its_motion_rows(tmp_path) -> None:
    """--init: the adapter starts from the given MotionAdapter and the motion words' rows from the shipped
    text encoder (with learning rate 0 nothing moves, so the saved EMA is exactly the start)."""
    out = tmp_path / "warm"
    train_motion.main(["--out", str(out), "--init", str(MOTION_DIR), "--overfit", "--steps", "1", "--batch", "1",
                       "--frames", "4", "--lr", "0", "--embedding-lr", "0", "--snapshot-every", "0",
                       "--text-route-width", "128"])
    from safetensors.torch import load_file
    from transformers import CLIPTextModel

    saved = load_file(str(out / "diffusion_pytorch_model.safetensors"))
    shipped = load_file(str(MOTION_DIR / "diffusion_pytorch_model.safetensors"))
    assert saved.keys() == shipped.keys() and all(torch.equal(saved[k], shipped[k]) for k in saved)
    shipped_route = MotionTextRoute.load(MOTION_DIR)
    assert shipped_route is not None  # the shipped adapter reads the caption through a text route
    saved_route = MotionTextRoute.load(out).state_dict()  # which the warm start starts from too
    assert all(torch.equal(saved_route[k], v) for k, v in shipped_route.state_dict().items())
    rows = CLIPTextModel.from_pretrained(str(out / "text_encoder")).get_input_embeddings().weight
    shipped_rows = CLIPTextModel.from_pretrained(str(MODEL_DIR / "text_encoder")).get_input_embeddings().weight
    assert torch.equal(rows, shipped_rows)
    report = json.loads((out / "training.json").read_text())
    # the recorded command repeats the run as typed (lists as separate words, switches without a value) ...
    typed = shlex.split(report["command"])[3:]  # after "python -m vdgraph_shapes.train_motion"
    typed[typed.index("DIR")] = str(out)
    assert vars(train_motion.parse_args(typed)) == vars(train_motion.parse_args(
        ["--out", str(out), "--init", str(MOTION_DIR), "--overfit", "--steps", "1", "--batch", "1", "--frames", "4",
         "--lr", "0", "--embedding-lr", "0", "--snapshot-every", "0", "--text-route-width", "128"]))
    # ... and the chain of warm starts it stands on ends with the shipped adapter's own run
    shipped_record = json.loads((MOTION_DIR / "training.json").read_text())
    assert report["warm_start_chain"][-1]["command"] == shipped_record["command"]
    assert report["warm_start_chain"][:-1] == shipped_record["warm_start_chain"]


@pytest.mark.parametrize("direction", list(train_motion.DIRECTIONS))
def test_the_motion_reward_reads_a_clips_velocity_from_its_latents(direction) -> None:
    """The reward's measure on a clip's exact target latents: the caption's velocity in latent pixels per frame,
    and a reward loss of 0 (what the model is pulled towards)."""
    clip = train_motion.sample_clip(np.random.default_rng(3), direction=direction)
    z0, _ = train_motion.clip_batch([clip], 1.0, 4.0)  # (1, 4, F, 16, 16) unscaled
    scene = clip.scenes[0]
    velocity = train_motion.track_velocity(train_motion.latent_centroids(z0[0], scene.colour, scene.background))
    ux, uy = train_motion.DIRECTIONS[direction]
    expected = torch.tensor([ux, uy], dtype=torch.float32) * train_motion.SPEED / 4
    assert torch.allclose(velocity, expected, atol=1e-4), (velocity, expected)
    reversed_clip = dataclasses.replace(clip, scenes=clip.scenes[::-1])  # the same frames played backwards
    backwards = train_motion.track_velocity(train_motion.latent_centroids(
        train_motion.clip_batch([reversed_clip], 1.0, 4.0)[0][0], scene.colour, scene.background))
    assert torch.allclose(backwards, -expected, atol=1e-4)


def test_overfit_clips_are_one_scene_in_four_directions() -> None:
    clips = train_motion.overfit_clips(np.random.default_rng(0), 8, train_motion.SPEED)
    assert [c.direction for c in clips] == ["left", "right", "up", "down"]
    assert len({(c.scenes[0].colour, c.scenes[0].shape, c.scenes[0].background, c.scenes[0].size)
                for c in clips}) == 1


@pytest.mark.parametrize("noise_shared", [0.0, 0.6])
def test_pipeline_and_workflow_backends_render_the_same_frames(noise_shared) -> None:
    """The gate's two backends: AnimateDiffPipeline with the add-embedding restored on its UNet, and vdgraph's
    workflow (which restores it in video.apply_motion_adapter); with mixed starting noise too (noise_shared)."""
    torch.set_num_threads(1)
    prompt = train_motion.motion_caption("red", "circle", "left", "blue")
    a = motion_gates.pipeline_renderer(MODEL_DIR, MOTION_DIR, steps=2, guidance=4.0,
                                       noise_shared=noise_shared)(prompt, 3, 4)
    b = motion_gates.workflow_renderer("shapes-64", "shapes-64-motion", steps=2, guidance=4.0,
                                       noise_shared=noise_shared)(prompt, 3, 4)
    assert a.shape == b.shape == (4, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert np.array_equal(a, b), np.abs(a - b).max()
    if noise_shared:  # the share reaches the noise: other frames than the independent draw's
        plain = motion_gates.workflow_renderer("shapes-64", "shapes-64-motion", steps=2, guidance=4.0)(prompt, 3, 4)
        assert np.abs(plain - b).max() > 1e-3


def reduced_gate(adapter: pathlib.Path | str) -> dict:
    """One moving pair per direction, 16 frames, 8 steps, through diffusers' AnimateDiffPipeline (text
    add-embedding restored)."""
    torch.set_num_threads(1)
    render = motion_gates.pipeline_renderer(MODEL_DIR, adapter, steps=8, guidance=4.0)
    rows = [motion_gates.measure(render(prompt, seed, 16), prompt)
            for prompt, seed in motion_gates.gate_pairs(4, 0)]
    return motion_gates.summarise(rows)


@pytest.fixture(scope="module")
def shipped_summary() -> dict:
    return reduced_gate(MOTION_DIR)


@pytest.fixture(scope="module")
def untrained_summary(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("untrained")
    train_motion.build_adapter().save_pretrained(str(folder), safe_serialization=True)  # zero output projections
    return reduced_gate(folder)


def learned_motion(summary: dict) -> bool:
    return summary["direction_correct"] >= 0.75 and summary["identity"] >= 0.9


def test_shipped_adapter_moves_the_shape_the_way_the_caption_says(shipped_summary) -> None:
    assert learned_motion(shipped_summary), shipped_summary


def test_the_reduced_gate_fails_an_untrained_adapter(untrained_summary) -> None:
    assert not learned_motion(untrained_summary), untrained_summary


def test_the_recorded_command_quotes_what_a_shell_would_split(tmp_path) -> None:
    odd = tmp_path / "my runs" / "run 4's"
    args = train_motion.parse_args(["--out", "x", "--init", str(odd), "--model", str(odd), "--t-focus", "0", "300",
                                    "--overfit", "--lr", "1e-05"])
    typed = shlex.split(train_motion.command_line(args))
    assert typed[:5] == ["python", "-m", "vdgraph_shapes.train_motion", "--out", "DIR"]
    again = vars(train_motion.parse_args(typed[3:]))
    assert {**again, "out": None} == {**vars(args), "out": None}


@pytest.mark.parametrize("record, note", [
    (None, "no training.json"),
    (b"{not json", "training.json unreadable (JSONDecodeError)"),
    (b"\xff\xfe", "training.json unreadable (UnicodeDecodeError)"),
    (b"[1, 2]", "training.json is not a JSON object"),
])
def test_a_warm_start_without_a_readable_record_notes_it(tmp_path, record, note) -> None:
    if record is not None:
        (tmp_path / "training.json").write_bytes(record)
    chain = train_motion.warm_start_chain(tmp_path)
    assert chain == [{"run": str(tmp_path), "note": f"{note}: how these weights were made is not recorded"}]


def test_a_chain_that_is_not_a_list_of_runs_is_left_out(tmp_path) -> None:
    (tmp_path / "training.json").write_text(json.dumps({"command": "c", "warm_start_chain": "abc"}))
    chain = train_motion.warm_start_chain(tmp_path)
    assert chain == [{"note": "the chain before this run was not a list of runs and is left out"},
                     {"run": str(tmp_path), "command": "c"}]
