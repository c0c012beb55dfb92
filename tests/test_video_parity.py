"""Acceptance: the shipped workflows reproduce diffusers' reference pipelines on tiny random components.

The workflows run through the engine (`vdgraph.Executor`) with `model` set to a tiny saved folder; the reference
pipelines load the same folder themselves. Frames must match exactly (max abs difference 0), except where a
case says otherwise and why. Both sides run the same kernels in the same process, so exactness does not depend
on the CPU; it is checked on one torch thread by default (steady on a shared machine, and independent of a
user's OMP_NUM_THREADS), and on N threads with `VDGRAPH_TEST_THREADS=N pytest tests/test_video_parity.py`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import video_fixtures

import vdgraph
from vdgraph.errors import Cancelled
from vdgraph.events import Progress

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
PROMPT = "a red cat on the mat"


pytestmark = pytest.mark.usefixtures("torch_threads")  # VDGRAPH_TEST_THREADS threads (default 1)


def max_difference(ours: torch.Tensor, expected: torch.Tensor) -> float:
    assert ours.shape == expected.shape, f"shapes differ: {tuple(ours.shape)} vs {tuple(expected.shape)}"
    return (ours - expected).abs().max().item()



@pytest.fixture(scope="module")
def folder_2d() -> str:
    return video_fixtures.tiny_model_folder("2d")


@pytest.fixture(scope="module")
def folder_3d() -> str:
    return video_fixtures.tiny_model_folder("3d")


def reference_zero(frames, steps, t0, t1, mx, my, eta, seed, guidance):
    pipe = video_fixtures.reference_pipeline("2d")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pipe(prompt=PROMPT, video_length=frames, height=32, width=32, num_inference_steps=steps, t0=t0, t1=t1,
                   eta=eta, guidance_scale=guidance, motion_field_strength_x=mx, motion_field_strength_y=my,
                   generator=torch.Generator().manual_seed(seed), output_type="np")
    return torch.from_numpy(out.images)


def zero_inputs(folder, tmp_path, frames, steps, t0, t1, mx, my, eta, seed, guidance, output="out.mp4"):
    return {"model": folder, "prompt": PROMPT, "frames": frames, "height": 32, "width": 32, "steps": steps,
            "t0": t0, "t1": t1, "motion_x": float(mx), "motion_y": float(my), "motion_mode": "reference",
            "alpha_mode": "reference", "eta": eta, "seed": seed, "guidance": guidance,
            "output": str(tmp_path / output), "contact_sheet": str(tmp_path / "sheet.png")}


ZERO_CASES = [
    # frames, steps, t0, t1, motion x, motion y, eta, seed, guidance
    (2, 6, 1, 3, 0, 0, 0.0, 0, 7.5),
    (3, 8, 2, 4, 12, 12, 0.0, 1, 7.5),
    (5, 10, 3, 6, 40, -24, 0.0, 2, 3.0),
    (3, 8, 2, 5, -30, 50, 0.5, 3, 7.5),
    (5, 6, 0, 2, 12, 12, 1.0, 4, 7.5),
    (2, 50, 44, 47, 12, 12, 0.0, 5, 7.5),  # the reference's defaults
]


@pytest.mark.parametrize("frames, steps, t0, t1, mx, my, eta, seed, guidance", ZERO_CASES)
def test_text2video_zero_matches_the_reference_exactly(executor, folder_2d, tmp_path, frames, steps, t0, t1, mx, my,
                                                       eta, seed, guidance):
    inputs = zero_inputs(folder_2d, tmp_path, frames, steps, t0, t1, mx, my, eta, seed, guidance)
    result = executor.run(WORKFLOWS / "text2video_zero.json", inputs, output_dir=str(tmp_path))
    expected = reference_zero(frames, steps, t0, t1, mx, my, eta, seed, guidance)
    frames_out = result["frames"]
    assert frames_out.shape == (frames, 32, 32, 3) and frames_out.dtype == torch.float32
    assert max_difference(frames_out, expected) == 0.0
    assert Path(result["video"]).is_file()


UNGUIDED_CASES = [
    # frames, steps, t0, t1, motion x, motion y, eta, seed, guidance
    # both used to fail in to_t1: "attention batch 1 is not a multiple of cfg_chunks 2"
    (4, 6, 1, 3, 12, 12, 0.0, 6, 1.0),
    (3, 8, 2, 4, -30, 50, 0.5, 7, 0.0),  # guidance < 1 is off too
]


@pytest.fixture
def unguided_reference(monkeypatch):
    """TextToVideoZeroPipeline with its two guidance <= 1 bugs mended, everything else its own code.

    Without guidance the stock pipeline cannot run: `encode_prompt` returns no negative embeddings and
    `__call__` concatenates them anyway (a TypeError, pinned below). Past that, it builds
    `CrossFrameAttnProcessor2_0(batch_size=2)`, whose docstring says batch_size is the batch other than the frames
    (2 with classifier-free guidance), so an unguided call's clip would be split in two halves attending to their
    own first frames. Mended: an empty (0, L, D) negative (the concatenation is then the prompt's embeddings
    alone) and the same processor class given batch_size=1, as its documentation asks. The backward loop's own
    unguided path (`do_classifier_free_guidance` false) runs unchanged.
    """
    from diffusers.pipelines.deprecated.text_to_video_synthesis import pipeline_text_to_video_zero as zero

    pipe = video_fixtures.reference_pipeline("2d")
    processors = pipe.unet.attn_processors
    encode_prompt = pipe.encode_prompt

    def encode_without_negative(*args, **kwargs):
        cond, uncond = encode_prompt(*args, **kwargs)
        return cond, cond[:0] if uncond is None else uncond

    original = zero.CrossFrameAttnProcessor2_0
    monkeypatch.setattr(zero, "CrossFrameAttnProcessor2_0", lambda batch_size=2: original(batch_size=1))
    monkeypatch.setattr(pipe, "encode_prompt", encode_without_negative)
    try:
        yield reference_zero
    finally:
        pipe.unet.set_attn_processor(processors)  # a failing reference leaves its processors installed


@pytest.mark.parametrize("frames, steps, t0, t1, mx, my, eta, seed, guidance", UNGUIDED_CASES)
def test_text2video_zero_without_guidance_matches_the_reference_exactly(executor, folder_2d, tmp_path,
                                                                        unguided_reference, frames, steps, t0,
                                                                        t1, mx, my, eta, seed, guidance):
    inputs = zero_inputs(folder_2d, tmp_path, frames, steps, t0, t1, mx, my, eta, seed, guidance)
    result = executor.run(WORKFLOWS / "text2video_zero.json", inputs, output_dir=str(tmp_path))
    expected = unguided_reference(frames, steps, t0, t1, mx, my, eta, seed, guidance)
    assert max_difference(result["frames"], expected) == 0.0


def test_stock_reference_cannot_run_without_guidance():
    """The reference's own flaw, pinned: TextToVideoZeroPipeline with guidance 1 concatenates negative embeddings
    it never computed (ours runs: the tests above)."""
    pipe = video_fixtures.reference_pipeline("2d")
    processors = pipe.unet.attn_processors
    try:
        with pytest.raises(TypeError, match="expected Tensor"):
            reference_zero(2, 4, 1, 2, 0, 0, 0.0, 0, 1.0)
    finally:
        pipe.unet.set_attn_processor(processors)


LONG_CASES = [
    # frames, chunk_size, decode_chunk, eta, tolerance
    (7, 4, 8, 0.5, 0.0),  # UNet chunks of 4 with the anchor: bit-identical on this CPU
    (7, 3, 2, 0.0, 1e-6),  # VAE decode in chunks of 2: its convolutions round differently at batch 2 than 7
    (9, 8, 8, 0.0, 1e-6),  # 9 frames decode as 8 + 1
]


@pytest.mark.parametrize("frames, chunk_size, decode_chunk, eta, tolerance", LONG_CASES)
def test_long_workflow_matches_the_unchunked_reference(executor, folder_2d, tmp_path, frames, chunk_size,
                                                       decode_chunk, eta, tolerance):
    inputs = zero_inputs(folder_2d, tmp_path, frames, 6, 1, 3, 12, 12, eta, 11, 7.5, output="long.gif")
    inputs.update(chunk_size=chunk_size, decode_chunk=decode_chunk)
    result = executor.run(WORKFLOWS / "text2video_zero_long.json", inputs, output_dir=str(tmp_path))
    expected = reference_zero(frames, 6, 1, 3, 12, 12, eta, 11, 7.5)
    assert max_difference(result["frames"], expected) <= tolerance


def test_long_workflow_without_guidance_matches_the_unchunked_reference(executor, folder_2d, tmp_path,
                                                                        unguided_reference):
    """UNet calls of one clip each (no CFG): every chunk's frames still attend to frame 0, the anchor.

    Tolerance 1e-6: the UNet runs on 4 frames per call where the reference runs 7, and on two threads the
    convolutions round differently at those batch sizes (0 measured on one thread, 3.0e-7 on two).
    """
    inputs = zero_inputs(folder_2d, tmp_path, 7, 6, 1, 3, 12, 12, 0.5, 12, 1.0, output="long.gif")
    inputs.update(chunk_size=4, decode_chunk=8)
    result = executor.run(WORKFLOWS / "text2video_zero_long.json", inputs, output_dir=str(tmp_path))
    expected = unguided_reference(7, 6, 1, 3, 12, 12, 0.5, 12, 1.0)
    assert max_difference(result["frames"], expected) <= 1e-6


THREE_D_CASES = [
    # frames, steps, eta, guidance, seed
    (3, 6, 0.0, 9.0, 0),
    (4, 5, 0.7, 9.0, 1),
    (2, 4, 0.0, 1.0, 2),  # guidance 1: no classifier-free guidance, as in the reference
    (3, 4, 0.5, 0.5, 3),  # guidance < 1: off too
]


@pytest.mark.parametrize("frames, steps, eta, guidance, seed", THREE_D_CASES)
def test_3d_unet_workflow_matches_text_to_video_sd_exactly(executor, folder_3d, tmp_path, frames, steps, eta,
                                                           guidance, seed):
    inputs = {"model": folder_3d, "prompt": PROMPT, "frames": frames, "height": 32, "width": 32, "steps": steps,
              "eta": eta, "guidance": guidance, "seed": seed, "output": str(tmp_path / "out.webm"),
              "contact_sheet": str(tmp_path / "sheet.png")}
    result = executor.run(WORKFLOWS / "text2video_3d_unet.json", inputs, output_dir=str(tmp_path))
    pipe = video_fixtures.reference_pipeline("3d")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pipe(prompt=PROMPT, num_frames=frames, height=32, width=32, num_inference_steps=steps, eta=eta,
                   guidance_scale=guidance, generator=torch.Generator().manual_seed(seed), output_type="np")
    expected = torch.from_numpy(out.frames[0])
    assert max_difference(result["frames"], expected) == 0.0


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_loaded_unet_computes_what_the_diffusers_loaded_unet_computes(kind):
    """Our loader leaves the parameters as diffusers' from_pretrained does (requires_grad set): PyTorch folds a
    Linear on a non-contiguous 3-D input (the 3-D UNet's temporal transformer) into one mm when the weight requires
    grad and runs a bmm when it does not, and the two round differently on some CPUs (up to 4.8e-7 in the frames
    on an AMD EPYC); the reference's UNet must meet the very same kernels."""
    from vdgraph_video.loading import load_components

    folder = video_fixtures.tiny_model_folder(kind)
    ours = load_components(folder, torch.device("cpu"), torch.float32)[0].module
    theirs = video_fixtures.reference_pipeline(kind).unet
    g = torch.Generator().manual_seed(0)
    sample = torch.randn((1, 4, 3, 16, 16) if kind == "3d" else (3, 4, 16, 16), generator=g)
    embeds = torch.randn(sample.shape[0] if kind == "2d" else 1, 77, 32, generator=g)
    with torch.no_grad():
        a = ours(sample, 501, encoder_hidden_states=embeds).sample
        b = theirs(sample, 501, encoder_hidden_states=embeds).sample
    assert max_difference(a, b) == 0.0


# -- attention patches on failure ------------------------------------------------------------------------------

def _processor_types(unet) -> set[str]:
    return {type(p).__name__ for p in unet.attn_processors.values()}


def test_reference_leaves_the_unet_patched_when_it_raises():
    pipe = video_fixtures.reference_pipeline("2d")
    original = pipe.unet.attn_processors
    assert _processor_types(pipe.unet) == {"AttnProcessor2_0"}

    def fail(step, timestep, latents):
        raise RuntimeError("interrupted")

    try:
        with pytest.raises(RuntimeError, match="interrupted"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe(prompt=PROMPT, video_length=2, height=32, width=32, num_inference_steps=4, t0=0, t1=2,
                 generator=torch.Generator().manual_seed(0), callback=fail)
        assert _processor_types(pipe.unet) == {"CrossFrameAttnProcessor2_0"}, "the reference's known flaw"
    finally:
        pipe.unet.set_attn_processor(original)  # the shared reference pipeline must stay usable


def test_ours_restores_the_unet_when_a_run_is_cancelled_mid_denoise(executor, folder_2d, tmp_path):
    token = vdgraph.CancelToken()
    seen = []

    def on_event(event):
        if isinstance(event, Progress) and event.node == "final" and event.step >= 1:
            seen.append(event.step)
            token.cancel()

    inputs = zero_inputs(folder_2d, tmp_path, 3, 8, 2, 4, 12, 12, 0.0, 21, 7.5)
    with pytest.raises(Cancelled):
        executor.run(WORKFLOWS / "text2video_zero.json", inputs, cancel=token, on_event=on_event,
                     output_dir=str(tmp_path))
    assert seen == [1]
    # The loaded model is served from the executor's cache: the very module the cancelled denoise had patched.
    loader = {"vdgraph": 1, "inputs": {"model": {"type": "str"}},
              "nodes": {"model": {"type": "video.load_model", "in": {"model": "inputs.model"}}},
              "outputs": {"unet": "model.unet"}}
    result = executor.run(loader, {"model": folder_2d})
    assert result.report[0].status == "cached-memory"
    unet = result["unet"]
    assert unet.patches == ()
    assert _processor_types(unet.module) == {"AttnProcessor2_0"}
