"""The SDXL family: workflows/text2video_zero.json on tiny random SDXL components against diffusers'
TextToVideoZeroSDXLPipeline (deprecated, still the reference), the same components as a single-file checkpoint
loading bit-exact to the folder, and what the SDXL family does not take yet refused at validation.

The components are shaped as diffusers' own SDXL tests build theirs (sdxl_fixtures): a "text_time" UNet and two
CLIP text encoders. Everything runs on one torch thread (the torch_threads fixture).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import sdxl_fixtures
from single_file_fixtures import check_round_trip, sdxl_checkpoint
from vdgraph.errors import WorkflowInvalid
from video_fixtures import write_png_frames

from vdgraph_video.families.sdxl import SDXLUNet
from vdgraph_video.ops.guiders import ClassifierFreeGuidance
from vdgraph_video.ops.vae import decode
from vdgraph_video.values import Conditioning
from vdgraph_video.values_sdxl import SDXLTextEncoderHandle, SDXLUNetHandle

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
PROMPT = "a red cat on the mat"

pytestmark = pytest.mark.usefixtures("torch_threads")



@pytest.fixture(scope="module")
def folder() -> str:
    return sdxl_fixtures.tiny_sdxl_folder()


@pytest.fixture(scope="module")
def reference(folder):
    return sdxl_fixtures.load_reference_sdxl_pipeline(folder)


def run_reference(pipe, frames, steps, t0, t1, mx, my, eta, seed, guidance, negative, output_type):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pipe(prompt=PROMPT, negative_prompt=negative or None, video_length=frames, height=32, width=32,
                   num_inference_steps=steps, t0=t0, t1=t1, eta=eta, guidance_scale=guidance,
                   motion_field_strength_x=mx, motion_field_strength_y=my,
                   generator=torch.Generator().manual_seed(seed), output_type=output_type)
    return out.images if output_type == "latent" else torch.from_numpy(out.images)


CASES = [
    # frames, steps, t0, t1, motion x, motion y, eta, seed, guidance, negative prompt
    (3, 6, 1, 3, 12, 12, 0.0, 0, 7.5, ""),  # the empty negative is zeros (force_zeros_for_empty_prompt)
    (2, 8, 2, 4, 40, -24, 0.5, 1, 5.0, "a blue cat"),  # an encoded negative; DDIM draws with eta > 0
    (4, 6, 1, 3, 0, 0, 0.0, 2, 1.0, ""),  # guidance off, no motion
]


@pytest.fixture
def mended_when_unguided(monkeypatch, reference):
    """The reference builds CrossFrameAttnProcessor2_0(batch_size=2) whatever the guidance, so an unguided call's
    clip is split in halves (and frame 0's single-frame calls break); as in test_video_parity, the same processor
    class is given batch_size=1 for guidance <= 1, as its documentation asks. The pipeline's processors are
    restored afterwards (a failing reference leaves its own installed)."""
    from diffusers.pipelines.deprecated.text_to_video_synthesis import pipeline_text_to_video_zero_sdxl as zero

    processors = reference.unet.attn_processors
    original = zero.CrossFrameAttnProcessor2_0

    def mend(guidance):
        if guidance <= 1.0:
            monkeypatch.setattr(zero, "CrossFrameAttnProcessor2_0", lambda batch_size=2: original(batch_size=1))

    try:
        yield mend
    finally:
        reference.unet.set_attn_processor(processors)


@pytest.mark.parametrize("frames, steps, t0, t1, mx, my, eta, seed, guidance, negative", CASES)
def test_text2video_zero_on_sdxl_matches_the_reference(executor, folder, reference, mended_when_unguided, tmp_path,
                                                       frames, steps, t0, t1, mx, my, eta, seed, guidance,
                                                       negative):
    """The latents match exactly. The frames match to 1e-6 only: the workflow decodes as TextToVideoZeroPipeline
    does, (1 / scaling_factor) * latents, and the SDXL pipeline divides, latents / scaling_factor, which rounds
    differently in the last bit; decoding the workflow's latents the SDXL pipeline's way gives its frames exactly."""
    mended_when_unguided(guidance)
    inputs = {"model": folder, "prompt": PROMPT, "negative_prompt": negative, "frames": frames, "height": 32,
              "width": 32, "steps": steps, "t0": t0, "t1": t1, "motion_x": float(mx), "motion_y": float(my),
              "motion_mode": "reference", "alpha_mode": "reference", "eta": eta, "seed": seed, "guidance": guidance,
              "output": str(tmp_path / "out.mp4"), "contact_sheet": str(tmp_path / "sheet.png")}
    result = executor.run(WORKFLOWS / "text2video_zero.json", inputs, output_dir=str(tmp_path))
    args = (frames, steps, t0, t1, mx, my, eta, seed, guidance, negative)
    latents = run_reference(reference, *args, output_type="latent")  # (F, C, h, w)
    expected = run_reference(reference, *args, output_type="np")  # (F, H, W, 3)
    ours = result["latents"]  # (1, C, F, h, w)
    assert ours.shape == (1, 4, frames, 16, 16)
    assert (ours[0].transpose(0, 1) - latents).abs().max().item() == 0.0
    assert result["frames"].shape == expected.shape == (frames, 32, 32, 3)
    assert (result["frames"] - expected).abs().max().item() <= 1e-6
    assert torch.equal(decode(reference.vae, ours, unscale="divide"), expected)
    assert Path(result["video"]).is_file()


def test_the_long_workflow_on_sdxl_matches_the_unchunked_reference(executor, folder, reference, tmp_path):
    """UNet calls of frame 0 plus 3 others: each call's rows get their clip's pooled embedding and the time ids
    (families/sdxl.py counts the frames per call), and the latents equal the reference's unchunked ones exactly."""
    inputs = {"model": folder, "prompt": PROMPT, "frames": 7, "chunk_size": 4, "decode_chunk": 8, "height": 32,
              "width": 32, "steps": 6, "t0": 1, "t1": 3, "motion_x": 12.0, "motion_y": 12.0,
              "motion_mode": "reference", "alpha_mode": "reference", "eta": 0.5, "seed": 11, "guidance": 7.5,
              "output": str(tmp_path / "long.gif"), "contact_sheet": str(tmp_path / "sheet.png")}
    result = executor.run(WORKFLOWS / "text2video_zero_long.json", inputs, output_dir=str(tmp_path))
    latents = run_reference(reference, 7, 6, 1, 3, 12, 12, 0.5, 11, 7.5, "", output_type="latent")
    assert (result["latents"][0].transpose(0, 1) - latents).abs().max().item() == 0.0


def test_the_folder_loads_as_sdxl_values(executor, folder, reference, tmp_path):
    """Two encoders in the text-encoder value, the VAE factor in the UNet value; the conditioning is what
    StableDiffusionXLPipeline.encode_prompt computes (the empty negative as zeros, a given one encoded)."""
    workflow = load_workflow_for(folder, negative_prompt="a blue cat")
    result = executor.run(workflow, output_dir=str(tmp_path))
    assert isinstance(result["unet"], SDXLUNetHandle) and result["unet"].pixels_per_latent == 2
    assert isinstance(result["text_encoder"], SDXLTextEncoderHandle)
    conditioning = result["conditioning"]
    cond, uncond, pooled, uncond_pooled = reference.encode_prompt(PROMPT, device="cpu", negative_prompt="a blue cat")
    for ours, theirs in ((conditioning.cond, cond), (conditioning.uncond, uncond), (conditioning.pooled, pooled),
                         (conditioning.uncond_pooled, uncond_pooled)):
        assert torch.equal(ours, theirs)
    assert conditioning.cond.shape == (1, 77, 80) and conditioning.pooled.shape == (1, 40)
    zero = executor.run(load_workflow_for(folder), output_dir=str(tmp_path))["conditioning"]
    assert not zero.uncond.any() and not zero.uncond_pooled.any()


def load_workflow_for(model: str, config: str = "", negative_prompt: str = "") -> dict:
    return {"vdgraph": 1,
            "nodes": {"load": {"type": "video.load_model", "params": {"model": model, "config": config}},
                      "text": {"type": "video.encode_text", "in": {"text_encoder": "load.text_encoder"},
                               "params": {"prompt": PROMPT, "negative_prompt": negative_prompt}}},
            "outputs": {"unet": "load.unet", "vae": "load.vae", "text_encoder": "load.text_encoder",
                        "scheduler": "load.scheduler_config", "conditioning": "text.conditioning"}}


def test_an_sdxl_checkpoint_loads_bit_exact_to_its_folder(executor, folder, tmp_path):
    components = sdxl_fixtures.build_sdxl_components()  # the folder's modules (seeded alike)
    state = sdxl_checkpoint(components["unet"], components["vae"], components["text_encoder"],
                            components["text_encoder_2"])
    check_round_trip(state, components["unet"], components["vae"])
    checkpoint = str(tmp_path / "tiny-sdxl.safetensors")
    save_file({k: v.contiguous() for k, v in state.items()}, checkpoint)
    config = str(tmp_path / "config")  # the folder's JSON files and tokenizers, no weights
    shutil.copytree(folder, config, ignore=shutil.ignore_patterns("*.safetensors"))
    loaded = executor.run(load_workflow_for(checkpoint, config, "a blue cat"), output_dir=str(tmp_path))
    from_folder = executor.run(load_workflow_for(folder, negative_prompt="a blue cat"), output_dir=str(tmp_path))
    assert isinstance(loaded["unet"], SDXLUNetHandle) and loaded["unet"].pixels_per_latent == 2
    text = loaded["text_encoder"]
    assert isinstance(text, SDXLTextEncoderHandle) and text.zero_empty_negative
    for name, module in (("unet", loaded["unet"].module), ("vae", loaded["vae"].module),
                         ("text_encoder", text.module), ("text_encoder_2", text.module_2)):
        want = components[name].state_dict()
        got = module.state_dict()
        assert got.keys() == want.keys(), name
        for key, tensor in want.items():
            assert torch.equal(got[key], tensor), f"{name}.{key}"
    # The conditioning is exactly that of the original modules (with the folder's tokenizers). Against the folder's
    # own load it differs in the pooled embedding by up to 1e-6: transformers memory-maps the folder's safetensors,
    # so its text_projection weight sits at an address 36 bytes off a 64-byte boundary, and the CPU matmul kernel
    # rounds differently on unaligned memory (a copy of that same weight gives the checkpoint's result exactly).
    original = SDXLTextEncoderHandle(components["text_encoder"], text.tokenizer, module_2=components["text_encoder_2"],
                                     tokenizer_2=text.tokenizer_2).encode(PROMPT, "a blue cat", torch.device("cpu"))
    for field in ("cond", "uncond", "pooled", "uncond_pooled"):
        ours = getattr(loaded["conditioning"], field)
        assert torch.equal(ours, getattr(original, field)), field
        assert (ours - getattr(from_folder["conditioning"], field)).abs().max().item() <= 1e-6, field
    assert loaded["scheduler"] == from_folder["scheduler"]


def test_a_prompt_schedule_on_sdxl_is_refused_at_validation(executor, folder, tmp_path):
    workflow = {"vdgraph": 1,
                "nodes": {"load": {"type": "video.load_model", "params": {"model": folder}},
                          "travel": {"type": "video.prompt_travel", "in": {"text_encoder": "load.text_encoder"},
                                     "params": {"prompt": "0: a red cat | 2: a blue cat", "frames": 4}}},
                "outputs": {"conditioning": "travel.conditioning"}}
    with pytest.raises(WorkflowInvalid) as caught:
        executor.run(workflow, output_dir=str(tmp_path))
    (problem,) = caught.value.problems
    assert (problem.node, problem.port) == ("travel", "prompt") and "SDXL" in problem.message
    workflow["nodes"]["travel"]["params"]["prompt"] = PROMPT  # a plain prompt is encoded as video.encode_text does
    plain = executor.run(workflow, output_dir=str(tmp_path))["conditioning"]
    assert plain.pooled is not None and plain.cond.shape == (1, 77, 80)


def test_a_controlnet_on_sdxl_is_refused_at_validation(executor, folder, tmp_path):
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", use_safetensors=True)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16))
    controlnet.save_pretrained(str(tmp_path / "controlnet"), safe_serialization=True)
    inputs = {"model": folder, "controlnet": str(tmp_path / "controlnet"), "frames": 2, "height": 32, "width": 32,
              "steps": 4, "condition": "video",
              "control_video": write_png_frames(str(tmp_path / "video"), 2, 32)}
    problems = executor.validate(WORKFLOWS / "text2video_zero_controlnet.json", inputs)
    found = [p for p in problems if p.severity == "error"]
    assert [(p.node, p.port) for p in found] == [("denoise", "unet")], [str(p) for p in found]
    assert "SDXL" in found[0].message and "ControlNet" in found[0].message


def test_the_hierarchical_sampler_on_sdxl_is_refused_at_validation(executor, folder, tmp_path):
    workflow = json.loads((WORKFLOWS / "text2video_zero.json").read_text())
    workflow["nodes"]["plan"] = {"type": "video.hierarchical_sampler", "params": {"window": 0}}
    workflow["nodes"]["final"]["in"]["frame_plan"] = "plan.plan"
    problems = executor.validate(workflow, {"model": folder, "height": 32, "width": 32})
    found = [(p.node, p.port) for p in problems if p.severity == "error"]
    assert found == [("final", "frame_plan")]


def test_conditioning_without_a_pooled_embedding_is_refused_by_the_sdxl_family(folder, reference):
    """Conditioning from another model's single text encoder (or a LoRA-merged copy of the first encoder alone)
    says what is missing instead of failing inside the UNet; SDXL conditioning on an SD UNet likewise."""
    from vdgraph_video.families import family_for
    from vdgraph_video.values import UNetHandle

    unet = SDXLUNetHandle(reference.unet, pixels_per_latent=2)
    family = family_for(unet, 1, 2)
    assert isinstance(family, SDXLUNet)
    plain = Conditioning(cond=torch.zeros(1, 77, 80), uncond=torch.zeros(1, 77, 80))
    with pytest.raises(ValueError, match="port 'conditioning'.*pooled text embedding"):
        family.prepare(plain, ClassifierFreeGuidance(7.5))
    pooled = Conditioning(cond=torch.zeros(1, 77, 80), uncond=torch.zeros(1, 77, 80), pooled=torch.zeros(1, 40),
                          uncond_pooled=torch.zeros(1, 40))
    with pytest.raises(ValueError, match="takes SDXL's added conditions"):
        family_for(UNetHandle(reference.unet), 1, 2)  # an SDXL UNet outside its SDXL value
    import video_fixtures

    sd = video_fixtures.build_components("2d")["unet"]
    with pytest.raises(ValueError, match="SDXL model's two text encoders"):
        family_for(UNetHandle(sd), 1, 2).prepare(pooled, ClassifierFreeGuidance(7.5))


def test_a_controlnet_attached_at_run_time_is_refused_naming_the_port():
    """A ControlNet attached where validation could not see it is still refused clearly by the family."""
    from vdgraph_video.values import ControlAttachment, ControlNetHandle

    unet = SDXLUNetHandle(torch.nn.Linear(1, 1), pixels_per_latent=2)
    unet = unet.with_control(ControlAttachment(ControlNetHandle(torch.nn.Linear(1, 1)), torch.zeros(2, 3, 32, 32)))
    with pytest.raises(ValueError, match="port 'unet': ControlNets are attached to an SDXL UNet"):
        SDXLUNet(unet, 1, 2)


def test_a_motion_adapter_on_sdxl_is_refused_at_validation(executor, folder, tmp_path):
    """Even an adapter whose block layout fits the SDXL UNet: the motion family gives it no added conditions."""
    from video_fixtures import save_motion_adapter_for

    adapter = save_motion_adapter_for(str(tmp_path / "adapter"), model_folder=folder)
    problems = executor.validate(WORKFLOWS / "animatediff.json",
                                 {"model": folder, "motion_adapter": adapter, "frames": 4, "height": 32, "width": 32})
    found = [p for p in problems if p.severity == "error"]
    assert [(p.node, p.port) for p in found] == [("inflate", "unet")], [str(p) for p in found]
    assert "SDXL" in found[0].message


def test_the_second_text_encoder_is_checked_as_every_component(folder, tmp_path):
    """No custom code and no pickles in text_encoder_2/ and tokenizer_2/ either (the folder rules of loading.py)."""
    from vdgraph_video.loading import ModelFolderError, ModelNotFound, check_folder, check_model_folder

    copy = str(tmp_path / "model")
    shutil.copytree(folder, copy)
    assert set(check_model_folder(copy)) >= {"text_encoder_2", "tokenizer_2"}
    config = os.path.join(copy, "text_encoder_2", "config.json")
    with open(config) as handle:
        settings = json.load(handle)
    with open(config, "w") as handle:
        json.dump({**settings, "auto_map": {"AutoModel": "modeling.Evil"}}, handle)
    with pytest.raises(ModelFolderError, match="text_encoder_2.*auto_map"):
        check_model_folder(copy)
    with open(config, "w") as handle:
        json.dump(settings, handle)
    weights = os.path.join(copy, "text_encoder_2", "model.safetensors")
    os.rename(weights, weights.replace(".safetensors", ".bin"))
    with pytest.raises(ModelFolderError, match="text_encoder_2 has only pickle weights"):
        check_model_folder(copy)
    shutil.rmtree(os.path.join(copy, "tokenizer_2"))
    with pytest.raises(ModelNotFound, match="missing tokenizer_2/"):
        check_folder(copy)
