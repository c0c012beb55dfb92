"""Outputs carry their recipe (PNG chunk, MP4/WebM tag, folder recipe.json, sidecar), `vdgraph inspect` prints
it, `vdgraph run --from` runs it again; video.write_video's audio_from remuxes (or re-encodes) a sound track."""

from __future__ import annotations

import json
import os

import av
import numpy as np
import pytest
import torch

from vdgraph.cli import main
from vdgraph.executor import Executor
from vdgraph.recipe import RECIPE_KEY, RecipeNotFound, read_recipe
from vdgraph.registry import Registry
from vdgraph.validate import validate
from vdgraph.workflow import load_workflow

from vdgraph_video.ops.video_io import read_video, write_video

HELLO = os.path.join(os.path.dirname(__file__), "..", "workflows", "hello.json")


@pytest.fixture(scope="module")
def registry():
    return Registry.discover()


def clip_with_sound(path: str, seconds: float = 2.0, fps: int = 8, rate: int = 48000) -> str:
    """An mp4 with an H.264 video stream and an AAC sine tone of `seconds` (made with PyAV)."""
    with av.open(path, "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width = video.height = 16
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=rate)
        audio.layout = "mono"
        t = np.arange(int(seconds * rate)) / rate
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="flt", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
        for i in range(int(seconds * fps)):
            image = np.full((16, 16, 3), 20 * i % 255, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
    return path


def writer_workflow(tmp_path) -> dict:
    return {
        "vdgraph": 1, "name": "rewrite",
        "inputs": {"source": {"type": "str"}, "target": {"type": "str", "default": "clip.mp4"},
                   "sound": {"type": "str", "default": ""}, "seed": {"type": "int", "default": 3}},
        "nodes": {
            "read": {"type": "video.read_video", "in": {"path": "inputs.source"}, "params": {"max_frames": 8}},
            "write": {"type": "video.write_video", "in": {"frames": "read.frames", "path": "inputs.target"},
                      "params": {"fps": 8.0, "quality": 0}},
            "sheet": {"type": "video.contact_sheet", "in": {"frames": "read.frames"}},
            "noise": {"type": "core.int_math", "in": {"a": "inputs.seed"}, "params": {"b": 1, "op": "add"}},
        },
        "outputs": {"file": "write.file", "sheet": "sheet.file", "n": "noise.result"},
    }


def frames_file(tmp_path) -> str:
    frames = torch.rand(8, 16, 16, 3)
    return write_video(frames, str(tmp_path / "source"), "png")


@pytest.mark.parametrize("target, where", [("clip.mp4", "tag"), ("clip.webm", "tag"), ("clip.gif", "sidecar"),
                                           ("frames", "folder")])
def test_every_video_output_carries_the_recipe(tmp_path, registry, target, where):
    source = frames_file(tmp_path)
    workflow = writer_workflow(tmp_path)
    result = Executor(registry, device="cpu").run(workflow, {"source": source, "target": target},
                                                  output_dir=str(tmp_path / "out"))
    for path in (result["file"], result["sheet"]):
        recipe = read_recipe(path)
        assert recipe["workflow"] == workflow
        assert recipe["inputs"] == {"source": source, "target": target, "sound": "", "seed": 3}
        assert set(recipe["versions"]) == {"vdgraph", "torch", "diffusers"}
        assert recipe["versions"]["torch"] == torch.__version__
    assert read_recipe(result["file"])["node"] == "write" and read_recipe(result["sheet"])["node"] == "sheet"
    listed = sorted(os.listdir(tmp_path / "out"))
    if where == "sidecar":
        assert target + ".recipe.json" in listed
    elif where == "folder":
        assert "recipe.json" in os.listdir(result["file"])
    else:  # embedded: nothing beside the file
        assert listed == sorted([target, "contact_sheet.png"])
        with av.open(result["file"]) as container:
            assert any(key.lower() == RECIPE_KEY for key in container.metadata)


def test_seeds_are_recorded_from_literals_and_inputs(tmp_path, registry):
    workflow = {"vdgraph": 1, "inputs": {"seed": {"type": "int", "default": 5}},
                "nodes": {"a": {"type": "core.int_math", "in": {"a": "inputs.seed"}, "params": {"b": 2}},
                          "save": {"type": "core.save_json", "in": {"value": "a.result"}}},
                "outputs": {"file": "save.path"}}
    from vdgraph.recipe import seeds_of

    assert seeds_of({"nodes": {"n": {"type": "video.noise", "in": {"seed": "inputs.seed"}},
                               "m": {"type": "video.noise", "params": {"seed": 9}},
                               "k": {"type": "video.noise", "in": {"seed": "rng.seed"}}}}, {"seed": 7}) == \
        {"n.seed": 7, "m.seed": 9, "k.seed": "rng.seed"}
    result = Executor(registry, device="cpu").run(workflow, {"seed": 11}, output_dir=str(tmp_path))
    recipe = read_recipe(result["file"])
    assert recipe["inputs"] == {"seed": 11} and recipe["workflow"] == workflow
    assert json.loads((tmp_path / "result.json").read_text()) == 13  # the JSON itself is unchanged


def test_inspect_prints_and_run_from_reruns_the_recipe(tmp_path, capsys, registry, monkeypatch):
    source = frames_file(tmp_path)
    path = str(tmp_path / "wf.json")
    with open(path, "w") as handle:
        json.dump(writer_workflow(tmp_path), handle)
    assert main(["run", path, "--set", f"source={source}", "--set", "target=a.mp4", "--output-dir",
                 str(tmp_path / "out"), "-q"]) == 0
    first = str(tmp_path / "out" / "a.mp4")
    capsys.readouterr()
    assert main(["inspect", first]) == 0
    shown = capsys.readouterr().out
    assert "written by node: write" in shown and f"source = {json.dumps(source)}" in shown
    assert main(["inspect", first, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == read_recipe(first)
    # the recipe runs again, from another working directory, and makes the same video
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--from", first, "--output-dir", str(tmp_path / "again"), "-q"]) == 0
    again = str(tmp_path / "again" / "a.mp4")
    assert torch.equal(read_video(first)[0], read_video(again)[0])
    assert read_recipe(again)["inputs"] == read_recipe(first)["inputs"]
    # --set changes a recorded input
    assert main(["run", "--from", first, "--set", "target=b.mp4", "--output-dir", str(tmp_path / "again"),
                 "-q"]) == 0
    assert os.path.exists(tmp_path / "again" / "b.mp4")


def test_inspect_and_run_from_a_file_without_recipe(tmp_path, capsys):
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    assert main(["inspect", str(plain)]) == 1
    assert "carries no vdgraph recipe" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["run", "--from", str(plain)])
    assert stop.value.code == 2
    with pytest.raises(SystemExit):
        main(["run", HELLO, "--from", str(plain)])
    assert "not both" in capsys.readouterr().err
    with pytest.raises(RecipeNotFound):
        read_recipe(str(tmp_path / "missing.mp4"))


def audio_seconds(path: str) -> tuple[str, float]:
    """(codec, seconds of decoded sound) of a file's first audio stream."""
    with av.open(path) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return stream.codec_context.name, samples / stream.codec_context.sample_rate


def test_audio_from_is_remuxed_into_mp4_and_cut_to_the_clip(tmp_path, registry):
    sound = clip_with_sound(str(tmp_path / "talk.mp4"), seconds=2.0)
    workflow = writer_workflow(tmp_path)
    workflow["nodes"]["write"]["in"]["audio_from"] = "inputs.sound"
    result = Executor(registry, device="cpu").run(workflow, {"source": frames_file(tmp_path), "sound": sound},
                                                  output_dir=str(tmp_path / "out"))
    codec, seconds = audio_seconds(result["file"])
    assert codec == "aac"  # copied, not re-encoded
    assert abs(seconds - 1.0) <= 1024 / 48000 + 1e-9, seconds  # 8 frames at 8 fps; whole AAC packets
    with av.open(sound) as container:  # the copied packets are the source's own bytes
        source_packets = [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]
    with av.open(result["file"]) as container:
        written = [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]
    assert written == source_packets[:len(written)] and len(written) < len(source_packets)


def test_audio_from_is_reencoded_for_webm_and_cut_to_the_sample(tmp_path):
    sound = clip_with_sound(str(tmp_path / "talk.mp4"), seconds=2.0)
    path = str(tmp_path / "clip.webm")
    from vdgraph_video.ops.video_io import encode_video, write_bytes

    write_bytes(encode_video(torch.rand(6, 16, 16, 3), "webm", 4.0, 30, audio_from=sound), path)
    codec, seconds = audio_seconds(path)
    assert codec == "opus"
    assert abs(seconds - 1.5) <= 960 / 48000, seconds  # Opus decodes in 20 ms frames


def test_audio_from_problems(tmp_path, registry):
    workflow = writer_workflow(tmp_path)
    workflow["nodes"]["write"]["params"]["audio_from"] = "talk.mp4"
    problems = validate(load_workflow(workflow), registry, {"source": "x", "target": "clip.gif"})
    assert [(p.node, p.port) for p in problems if p.severity == "error"] == [("write", "audio_from")]
    assert "gif output has no sound track" in problems[0].message
    silent = write_video(torch.rand(4, 16, 16, 3), str(tmp_path / "silent.mp4"))
    from vdgraph.errors import NodeRunError

    workflow["nodes"]["write"]["params"]["audio_from"] = silent
    with pytest.raises(NodeRunError, match="has no audio stream"):
        Executor(registry, device="cpu").run(workflow, {"source": frames_file(tmp_path)},
                                             output_dir=str(tmp_path / "out"))


def test_a_workflow_built_in_python_records_a_document_that_runs_again(tmp_path, registry):
    from vdgraph.workflow import Workflow, parse_workflow

    built = Workflow(inputs={"x": {"type": "int", "default": 2}},
                     nodes={"a": {"type": "core.int_math", "in": {"a": "inputs.x"}, "params": {"b": 1}},
                            "save": {"type": "core.save_json", "in": {"value": "a.result"}}},
                     outputs={"file": "save.path", "n": "a.result"})
    result = Executor(registry, device="cpu").run(built, {"x": 4}, output_dir=str(tmp_path))
    recipe = read_recipe(result["file"])
    assert recipe["workflow_source"] is None and recipe["inputs"] == {"x": 4}
    again = Executor(registry, device="cpu").run(parse_workflow(recipe["workflow"]), recipe["inputs"],
                                                 output_dir=str(tmp_path))
    assert again["n"] == result["n"] == 5


def drawn_seed_workflow(model: str) -> dict:
    """Noise whose seed another node computes from a seed drawn afresh on every run (core.random_seed)."""
    return {
        "vdgraph": 1, "name": "drawn",
        "inputs": {"offset": {"type": "int", "default": 5}},
        "nodes": {
            "draw": {"type": "core.random_seed", "params": {"high": 2**31}},
            "seed": {"type": "core.int_math", "in": {"a": "draw.seed", "b": "inputs.offset"}, "params": {"op": "add"}},
            "load": {"type": "video.load_model", "params": {"model": model}},
            "noise": {"type": "video.noise", "in": {"unet": "load.unet", "vae": "load.vae", "seed": "seed.result"},
                      "params": {"frames": 2, "height": 16, "width": 16}},
            "decode": {"type": "video.decode", "in": {"vae": "load.vae", "latents": "noise.latents"}},
            "write": {"type": "video.write_images", "in": {"frames": "decode.frames"}, "params": {"path": "frames"}},
        },
        "outputs": {"folder": "write.folder", "seed": "seed.result"},
    }


def test_run_from_replays_a_seed_that_a_node_drew(tmp_path, registry, monkeypatch):
    """The recipe holds the values the run used for ports that links fed (the seed drawn, the seed computed from
    it), not the link text, and `run --from` feeds the drawn ones back: the same frames, byte for byte."""
    from video_fixtures import tiny_model_folder

    path = str(tmp_path / "drawn.json")
    with open(path, "w") as handle:
        json.dump(drawn_seed_workflow(tiny_model_folder("2d")), handle)
    assert main(["run", path, "--output-dir", str(tmp_path / "first"), "-q"]) == 0
    first = tmp_path / "first" / "frames"
    recipe = read_recipe(str(first))
    drawn = recipe["drawn"]
    assert set(drawn) == {"seed.a"}  # with it put back, everything downstream is the same again
    assert recipe["seeds"] == {"noise.seed": drawn["seed.a"] + 5}  # the value, not the link text "seed.result"
    assert recipe["workflow"]["nodes"]["noise"]["in"]["seed"] == "seed.result"  # the document is as it was run

    monkeypatch.chdir(tmp_path)
    assert main(["run", "--from", str(first), "--output-dir", str(tmp_path / "again"), "-q"]) == 0
    again = tmp_path / "again" / "frames"
    names = sorted(os.listdir(first))
    assert names == sorted(os.listdir(again)) and any(n.endswith(".png") for n in names)
    for name in names:
        if name.endswith(".png"):
            assert (first / name).read_bytes() == (again / name).read_bytes(), name
    replayed = read_recipe(str(again))
    assert replayed["seeds"] == recipe["seeds"] and "drawn" not in replayed  # nothing was drawn the second time
    assert replayed["workflow"]["nodes"]["seed"]["params"]["a"] == drawn["seed.a"]

    # a plain re-run of the workflow draws another seed, so it makes other frames (what --from must not do)
    assert main(["run", path, "--output-dir", str(tmp_path / "fresh"), "-q"]) == 0
    fresh = read_recipe(str(tmp_path / "fresh" / "frames"))
    assert fresh["drawn"]["seed.a"] != drawn["seed.a"]  # 1 in 2**31 to fail by chance


def test_replay_document_leaves_links_it_could_not_record():
    from vdgraph.recipe import replay_document, unreplayable

    recipe = {"workflow": {"nodes": {"n": {"type": "video.noise", "in": {"seed": "s.seed", "rng": "r.rng"}}}},
              "drawn": {"n.seed": 9, "n.rng": None}}
    assert replay_document(recipe)["nodes"]["n"] == {"type": "video.noise", "in": {"rng": "r.rng"},
                                                     "params": {"seed": 9}}
    assert unreplayable(recipe) == ["n.rng"]
    assert recipe["workflow"]["nodes"]["n"]["in"] == {"seed": "s.seed", "rng": "r.rng"}  # not changed
