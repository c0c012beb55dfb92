"""Stable Video Diffusion image-to-video: workflows/image2video_svd.json against diffusers'
StableVideoDiffusionPipeline on tiny random components (max abs difference 0), its parts, its loader and its bad
inputs (validation problems naming node and port before anything runs, run-time errors naming them otherwise)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import svd_fixtures
import torch
import video_fixtures
from PIL import Image

import vdgraph
from vdgraph.errors import NodeRunError, WorkflowInvalid

WORKFLOW = Path(__file__).resolve().parent.parent / "workflows" / "image2video_svd.json"

one_thread = pytest.fixture(autouse=True)(video_fixtures.single_thread)


@pytest.fixture(scope="module")
def model() -> str:
    return svd_fixtures.svd_model_folder("tiny")


@pytest.fixture(scope="module")
def reference(model):
    return svd_fixtures.load_svd_reference(model)



@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    """A 40x48 PNG: not the video's size, so both the CLIP resize and the VAE-side Lanczos resize are exercised."""
    return svd_fixtures.write_test_image(str(tmp_path_factory.mktemp("svd") / "first.png"), 40, 48)


def run_reference(pipe, path, frames, height, width, steps, seed, fps, motion, aug, low, high, chunk):
    result = pipe(Image.open(path).convert("RGB"), height=height, width=width, num_frames=frames,
                  num_inference_steps=steps, fps=fps, motion_bucket_id=motion, noise_aug_strength=aug,
                  min_guidance_scale=low, max_guidance_scale=high, decode_chunk_size=chunk or None,
                  generator=torch.Generator().manual_seed(seed), output_type="pt")
    return result.frames[0].permute(0, 2, 3, 1)  # (F, H, W, 3)


# frames, height, width, steps, seed, fps, motion bucket, noise augmentation, min and max guidance, decode chunk
CASES = [
    (4, 32, 32, 3, 0, 7, 127, 0.02, 1.0, 3.0, 0),  # the pipeline's defaults, smaller
    (2, 32, 48, 2, 5, 6, 10, 0.0, 1.0, 1.0, 0),  # max_guidance 1: no classifier-free guidance
    (6, 16, 32, 2, 3, 12, 255, 0.5, 2.0, 2.5, 4),  # a ramp above 1, a temporal decode in chunks of 4
    (3, 32, 32, 2, 1, 7, 60, 0.1, 0.5, 0.9, 2),  # max_guidance < 1: no guidance at all
    (8, 16, 16, 2, 2, 3, 0, 1.0, 3.0, 3.0, 3),  # the model's most frames, a constant scale
]


@pytest.mark.parametrize("case", CASES, ids=[f"F{c[0]}-{c[1]}x{c[2]}-mb{c[6]}-aug{c[7]}-g{c[8]}-{c[9]}-chunk{c[10]}"
                                             for c in CASES])
def test_workflow_reproduces_the_stable_video_diffusion_pipeline_exactly(executor, reference, model, image, case,
                                                                          tmp_path):
    frames, height, width, steps, seed, fps, motion, aug, low, high, chunk = case
    expected = run_reference(reference, image, frames, height, width, steps, seed, fps, motion, aug, low, high, chunk)
    inputs = {"model": model, "image": image, "frames": frames, "height": height, "width": width, "steps": steps,
              "seed": seed, "fps": fps, "motion_bucket_id": motion, "noise_aug_strength": aug, "min_guidance": low,
              "max_guidance": high, "decode_chunk_size": chunk, "output": "svd.gif"}
    result = executor.run(WORKFLOW, inputs, output_dir=str(tmp_path))
    ours = result["frames"]
    assert ours.shape == (frames, height, width, 3) and ours.dtype == torch.float32
    assert (ours - expected).abs().max().item() == 0.0
    assert Path(result["video"]).name == "svd.gif" and Path(result["video"]).stat().st_size > 0


def test_a_jpeg_of_the_videos_size_matches_too(executor, reference, model, tmp_path):
    path = svd_fixtures.write_test_image(str(tmp_path / "first.jpg"), 32, 32, seed=4)
    expected = run_reference(reference, path, 3, 32, 32, 2, 9, 7, 127, 0.02, 1.0, 3.0, 0)
    inputs = {"model": model, "image": path, "frames": 3, "height": 32, "width": 32, "steps": 2, "seed": 9,
              "output": "svd.gif"}
    ours = executor.run(WORKFLOW, inputs, outputs=["frames"], output_dir=str(tmp_path))["frames"]
    assert (ours - expected).abs().max().item() == 0.0


def test_decode_chunks_change_the_temporal_decode_but_not_the_latents(executor, model, image, tmp_path):
    base = {"model": model, "image": image, "frames": 4, "height": 16, "width": 16, "steps": 2, "output": "svd.gif"}
    whole = executor.run(WORKFLOW, {**base, "decode_chunk_size": 0}, outputs=["frames", "latents"],
                         output_dir=str(tmp_path))
    halves = executor.run(WORKFLOW, {**base, "decode_chunk_size": 2}, outputs=["frames", "latents"],
                          output_dir=str(tmp_path))
    assert torch.equal(whole["latents"], halves["latents"])
    assert not torch.equal(whole["frames"], halves["frames"]), "the temporal decoder mixes the frames of a call"


def test_every_time_id_and_the_ramp_reach_the_model(executor, model, image, tmp_path):
    """The parity cases would pass vacuously if the tiny UNet ignored an input: each one changes the latents."""
    base = {"model": model, "image": image, "frames": 3, "height": 16, "width": 16, "steps": 1, "output": "svd.gif"}
    first = executor.run(WORKFLOW, base, outputs=["latents"], output_dir=str(tmp_path))["latents"]
    for change in ({"fps": 8}, {"motion_bucket_id": 128}, {"noise_aug_strength": 0.03}, {"min_guidance": 1.5},
                   {"seed": 1}):
        other = executor.run(WORKFLOW, {**base, **change}, outputs=["latents"], output_dir=str(tmp_path))["latents"]
        assert not torch.equal(first, other), change


# ---- parts -------------------------------------------------------------------------------------------------------

def test_antialiased_resize_is_the_pipelines():
    from diffusers.pipelines.stable_video_diffusion import pipeline_stable_video_diffusion as svd_pipeline

    from vdgraph_video.ops.svd import resize_with_antialiasing

    x = torch.rand(1, 3, 37, 61, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for size in ((224, 224), (16, 24)):
        assert torch.equal(resize_with_antialiasing(x, size), svd_pipeline._resize_with_antialiasing(x, size))


def test_frame_ramp_guider_scales_each_frame():
    from vdgraph_video.ops.guiders import FrameRampGuidance, NoGuidance, frame_ramp_guider

    uncond, cond = torch.zeros(1, 5, 2, 1, 1), torch.ones(1, 5, 2, 1, 1)
    combined = FrameRampGuidance(1.0, 3.0).combine(torch.cat([uncond, cond]))
    assert combined[0, :, 0, 0, 0].tolist() == [1.0, 1.5, 2.0, 2.5, 3.0]
    assert isinstance(frame_ramp_guider(0.5, 1.0), NoGuidance)
    assert isinstance(frame_ramp_guider(1.0, 1.01), FrameRampGuidance)


def test_euler_karras_kind_builds_the_svd_schedule(model):
    from diffusers import EulerDiscreteScheduler

    from vdgraph_video.ops.schedulers import build_scheduler

    config = {k: v for k, v in svd_fixtures.SVD_SCHEDULER.items()}
    config["use_karras_sigmas"] = False
    ours = build_scheduler("EulerDiscreteScheduler", config, "euler_karras", 5, torch.device("cpu"))
    reference = EulerDiscreteScheduler.from_pretrained(model, subfolder="scheduler")
    reference.set_timesteps(5)
    assert torch.equal(ours.sigmas, reference.sigmas) and torch.equal(ours.timesteps, reference.timesteps)


def test_read_image_resizes_like_pillow_and_reads_fsspec_urls(tmp_path):
    import fsspec

    from vdgraph_video.ops.images import read_image

    path = svd_fixtures.write_test_image(str(tmp_path / "a.png"), 20, 30)
    pixels = np.asarray(Image.open(path).convert("RGB"))
    image = read_image(path)
    assert image.shape == (1, 20, 30, 3) and torch.equal(image[0], torch.from_numpy(pixels.copy()).float() / 255)
    resized = read_image(path, height=10)  # the width follows the aspect ratio
    expected = np.asarray(Image.open(path).convert("RGB").resize((15, 10), resample=Image.Resampling.LANCZOS))
    assert torch.equal(resized[0], torch.from_numpy(expected.copy()).float() / 255)
    with fsspec.open("memory://svd/a.png", "wb") as handle:
        handle.write(Path(path).read_bytes())
    assert torch.equal(read_image("memory://svd/a.png"), image)
    grey = tmp_path / "grey.png"
    Image.fromarray(pixels[..., 0]).save(grey)
    assert read_image(str(grey)).shape == (1, 20, 30, 3)
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([pixels, np.full(pixels.shape[:2], 128, np.uint8)])).save(rgba)
    with pytest.raises(ValueError, match="alpha channel"):
        read_image(str(rgba))
    assert torch.equal(read_image(str(rgba), alpha="drop"), image)


# ---- loading -----------------------------------------------------------------------------------------------------

def test_load_model_gives_the_image_encoder_of_an_svd_folder(executor, model):
    workflow = {"vdgraph": 1, "nodes": {"m": {"type": "video.load_model", "params": {"model": model}}},
                "outputs": {"unet": "m.unet", "image_encoder": "m.image_encoder", "text_encoder": "m.text_encoder"}}
    result = executor.run(workflow)
    assert type(result["unet"].module).__name__ == "UNetSpatioTemporalConditionModel"
    assert type(result["image_encoder"].module).__name__ == "CLIPVisionModelWithProjection"
    assert result["text_encoder"] is None


def copy_model(model: str, tmp_path) -> Path:
    folder = tmp_path / "svd"
    shutil.copytree(model, folder)
    return folder


def edit_json(path: Path, **changes) -> None:
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_svd_folders_are_checked_like_every_model_folder(model, tmp_path):
    from vdgraph_video.loading import ModelFolderError, ModelNotFound, check_folder, check_model_folder

    assert set(check_model_folder(model)) == {"unet", "vae", "image_encoder", "feature_extractor", "scheduler"}
    folder = copy_model(model, tmp_path)
    edit_json(folder / "image_encoder" / "config.json", auto_map={"AutoModel": "evil.Model"})
    with pytest.raises(ModelFolderError, match="auto_map"):
        check_model_folder(str(folder))
    shutil.rmtree(folder)
    folder = copy_model(model, tmp_path)
    edit_json(folder / "feature_extractor" / "preprocessor_config.json", image_processor_type="EvilProcessor")
    with pytest.raises(ModelFolderError, match="image_processor_type"):
        check_model_folder(str(folder))
    shutil.rmtree(folder)
    folder = copy_model(model, tmp_path)
    os.rename(folder / "image_encoder" / "model.safetensors", folder / "image_encoder" / "pytorch_model.bin")
    with pytest.raises(ModelFolderError, match="only pickle weights"):
        check_model_folder(str(folder))
    shutil.rmtree(folder / "feature_extractor")
    with pytest.raises(ModelNotFound, match="feature_extractor/"):
        check_folder(str(folder))


def test_video_denoise_refuses_an_svd_unet(executor, model):
    from vdgraph_video.families import family_for
    from vdgraph_video.loading_svd import load_svd_components

    unet = load_svd_components(model, torch.device("cpu"), torch.float32)[0]
    with pytest.raises(ValueError, match="video.svd_denoise"):
        family_for(unet, 1, 2)


# ---- bad input ---------------------------------------------------------------------------------------------------

def problems(model, image, **inputs):
    found = vdgraph.validate(WORKFLOW, {"model": model, "image": image, "frames": 4, "height": 32, "width": 32,
                                        **inputs})
    return sorted((p.node, p.port, p.message) for p in found if p.severity == "error")


def test_shipped_workflow_validates_cleanly_with_a_model_and_an_image(model, image):
    assert problems(model, image) == []


def test_min_guidance_above_max_guidance_is_a_validation_problem(model, image):
    assert problems(model, image, min_guidance=3.0, max_guidance=2.0) == [
        ("denoise", "min_guidance", "min_guidance (3.0) is larger than max_guidance (2.0); the ramp goes from min at "
                                    "the first frame to max at the last")]


def test_more_frames_than_the_model_supports_is_a_validation_problem(model, image):
    assert problems(model, image, frames=9) == [
        ("noise", "frames", "9 frames is more than the model's 8 (its UNet config's num_frames, what it was trained "
                            "for)")]


def test_a_size_off_the_vae_factor_is_a_validation_problem(model, image):
    found = problems(model, image, height=33)
    assert [(node, port) for node, port, _ in found] == [("condition", "height"), ("noise", "height")]
    assert "33 is not a multiple of the VAE factor 2" in found[0][2]


def test_an_image_with_alpha_is_a_validation_problem(model, tmp_path):
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (32, 32), (10, 20, 30, 40)).save(path)
    found = problems(model, str(path))
    assert [(node, port) for node, port, _ in found] == [("image", "path")]
    assert "alpha channel" in found[0][2]


def test_an_image_size_off_the_vae_factor_is_found_from_its_header(model, tmp_path):
    """With height and width empty the video takes the image's size: an odd one is found before running."""
    import vdgraph_video.svd  # noqa: F401

    path = svd_fixtures.write_test_image(str(tmp_path / "odd.png"), 33, 32)
    workflow = json.loads(WORKFLOW.read_text())
    workflow["nodes"]["condition"]["in"].pop("height")
    found = vdgraph.validate(workflow, {"model": model, "image": path, "frames": 4, "height": 32, "width": 32})
    assert [(p.node, p.port) for p in found if p.severity == "error"] == [("condition", "height")]


def test_bad_images_at_run_time_name_the_node_and_port(executor, model, tmp_path):
    """An image of several frames or of four channels, only known at run time, is an error naming node and port."""
    import vdgraph_video.svd as svd
    from vdgraph_video.loading_svd import load_svd_components

    _, vae, encoder, _ = load_svd_components(model, torch.device("cpu"), torch.float32)

    class Context:
        device, dtype = torch.device("cpu"), torch.float32

    node = svd.SVDEncodeImage()
    for bad, port in ((torch.rand(2, 32, 32, 3), "image"), (torch.rand(1, 32, 32, 4), "image"),
                      (torch.rand(1, 31, 32, 3), "height")):
        with pytest.raises(ValueError, match=f"port '{port}'"):
            node.run(Context(), encoder, vae, bad, None, None, 0.02, 0, None)
    video = video_fixtures.write_png_frames(str(tmp_path / "clip"), 2, 32)
    workflow = json.loads(WORKFLOW.read_text())
    workflow["nodes"]["image"] = {"type": "video.read_video", "in": {"path": "inputs.image"}}
    with pytest.raises(NodeRunError, match=r"condition.*port 'image': expected one image, got 2 frames"):
        executor.run(workflow, {"model": model, "image": video, "frames": 2, "height": 32, "width": 32, "steps": 1},
                     outputs=["latents"], output_dir=str(tmp_path))


def test_svd_workflow_without_a_model_is_refused_before_running(executor, image, tmp_path):
    with pytest.raises(WorkflowInvalid, match="model"):
        executor.run(WORKFLOW, {"image": image}, output_dir=str(tmp_path))


def test_encoding_text_for_an_svd_model_is_a_validation_problem(model):
    workflow = {"vdgraph": 1, "nodes": {
        "m": {"type": "video.load_model", "params": {"model": model}},
        "t": {"type": "video.encode_text", "in": {"text_encoder": "m.text_encoder"}, "params": {"prompt": "a cat"}}},
        "outputs": {"c": "t.conditioning"}}
    found = [(p.node, p.port) for p in vdgraph.validate(workflow) if p.severity == "error"]
    assert found == [("t", "text_encoder")]
