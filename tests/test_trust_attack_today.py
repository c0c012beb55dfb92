"""A fresh-eyes attack on the day's changes (file contents in cache keys, recipes and `run --from`, the server's
confinement with a token): each test is an attack that broke a promise, kept so that it stays fixed.

Confinement: a list port (video.apply_lora's `lora`) fed by a gathered list of node links escaped both the
server.file-link refusal and the root checks, so a job could read any file the server can. File keys: a folder
holding a FIFO (or a device) hung the key forever, a folder linked into itself walked without end, and a file
rewritten with its size and modification time kept served its old hash. Recipes: a hand-edited recipe that is not
UTF-8 or nests too deep ended `run --from` and `inspect` in a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from vdgraph.cli import main
from vdgraph.filekeys import content_of, file_digest
from vdgraph.registry import Registry
from vdgraph.server.app import confinement_problems
from vdgraph.validate import check
from vdgraph.workflow import load_workflow


def test_a_gathered_list_of_links_into_a_file_port_is_refused_by_a_server_with_a_token(tmp_path):
    graph = {"vdgraph": 1, "nodes": {
        "model": {"type": "video.load_model", "params": {"model": "shapes-64"}},
        "name": {"type": "core.format", "params": {"template": "/etc/passwd"}},
        "lora": {"type": "video.apply_lora", "in": {"unet": "model.unet", "text_encoder": "model.text_encoder",
                                                    "lora": ["name.text"]}}},
        "outputs": {"unet": "lora.unet"}}
    registry = Registry.discover()
    workflow = load_workflow(graph)
    problems, plan = check(workflow, registry, {}, require_inputs=True)
    assert plan is not None and not [p for p in problems if p.severity == "error"]
    found = confinement_problems(workflow, registry, {}, str(tmp_path / "job"), (str(tmp_path),), (str(tmp_path),))
    assert [(p.code, p.node, p.port) for p in found] == [("server.file-link", "lora", "lora")]
    assert "name.text" in found[0].message


def test_a_folder_holding_a_fifo_is_keyed_without_reading_it(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "0000.png").write_bytes(b"png bytes")
    os.mkfifo(folder / "pipe")  # opening it for reading would block until a writer comes: never
    code = ("import sys; from vdgraph.filekeys import content_of; print(content_of(sys.argv[1])); "
            "print(content_of(sys.argv[2]))")
    done = subprocess.run([sys.executable, "-c", code, str(folder), str(folder / "pipe")], capture_output=True,
                          text=True, timeout=30)  # a hang fails here instead of stopping the suite
    folder_key, fifo_key = done.stdout.splitlines()
    assert folder_key.startswith("sha256:") and fifo_key.startswith("not a regular file"), done.stderr
    # a stream named directly (`--video <(ffmpeg ...)`) is read by the node, never hashed: never served from a cache
    assert content_of(str(folder / "pipe")) != content_of(str(folder / "pipe"))
    os.unlink(folder / "pipe")
    (folder / "pipe").write_bytes(b"")
    assert content_of(str(folder)) != folder_key  # the FIFO was keyed as one, not skipped


def test_a_folder_linked_into_itself_is_keyed_in_bounded_time(tmp_path):
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "weights.bin").write_bytes(b"w")
    os.symlink(folder, folder / "sub" / "up")  # a loop, twice: the walk doubles at every level
    os.symlink(folder, folder / "sub" / "again")
    code = "import sys; from vdgraph.filekeys import content_of; print(content_of(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=30)
    assert done.stdout.startswith("sha256:"), done.stderr


def test_a_file_rewritten_with_its_size_and_modification_time_kept_is_hashed_again(tmp_path):
    path = tmp_path / "lora.safetensors"
    path.write_bytes(b"A" * 64)
    before = os.stat(path)
    first = file_digest(str(path))
    time.sleep(0.05)  # past the file system clock's tick, so the change time moves
    path.write_bytes(b"B" * 64)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `cp -p`, `rsync -t` or `touch -r` leave it
    assert os.stat(path).st_size == before.st_size and os.stat(path).st_mtime_ns == before.st_mtime_ns
    assert file_digest(str(path)) != first
    assert content_of(str(path)) == "sha256:" + __import__("hashlib").sha256(b"B" * 64).hexdigest()


@pytest.mark.parametrize("text", [b'{"vdgraph_recipe": 1, "workflow": {}, "note": "\xff\xfe"}',
                                  b'{"vdgraph_recipe": 1, "workflow": {"a": ' + b"[" * 100_000 + b"]" * 100_000
                                  + b"}}"])
def test_a_garbled_recipe_is_a_clear_error_not_a_traceback(tmp_path, capsys, text):
    sidecar = tmp_path / "clip.gif.recipe.json"
    sidecar.write_bytes(text)
    with pytest.raises(SystemExit) as exited:  # a usage error: the message, no traceback
        main(["run", "--from", str(sidecar), "--output-dir", str(tmp_path / "out")])
    assert exited.value.code == 2
    assert main(["inspect", str(sidecar)]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("carries no vdgraph recipe") == 2


def test_a_recipe_format_must_be_the_number_1_not_true(tmp_path, capsys):
    sidecar = tmp_path / "clip.gif.recipe.json"
    sidecar.write_text(json.dumps({"vdgraph_recipe": True, "workflow": {"vdgraph": 1, "nodes": {}}}))
    assert main(["inspect", str(sidecar)]) != 0
    assert "format 1" in capsys.readouterr().err


def test_more_condition_frames_than_frames_says_to_read_fewer_not_to_ask_for_fewer_frames():
    from types import SimpleNamespace

    import torch
    from vdgraph_video.families.common import check_control_frames

    unet = SimpleNamespace(controls=[SimpleNamespace(condition=torch.zeros(8, 3, 4, 4))])
    with pytest.raises(ValueError) as caught:
        check_control_frames(unet, 4)
    assert "8 condition frames but the latents have 4" in str(caught.value)
    assert "max_frames" in str(caught.value) and "ask for fewer frames" not in str(caught.value)
    with pytest.raises(ValueError) as caught:
        check_control_frames(unet, 12)
    assert "at least as many frames" in str(caught.value)


@pytest.mark.parametrize("drop", ["model.diffusion_model.label_emb.0.0.weight", "an attention weight"])
def test_an_sdxl_checkpoint_missing_a_weight_is_refused_as_incomplete(tmp_path, drop):
    import shutil

    import sdxl_fixtures
    import torch
    from safetensors.torch import save_file
    from single_file_fixtures import sdxl_checkpoint
    from vdgraph_video.single_file import CheckpointError, load_single_file

    components = sdxl_fixtures.build_sdxl_components()
    state = sdxl_checkpoint(components["unet"], components["vae"], components["text_encoder"],
                            components["text_encoder_2"])
    if drop == "an attention weight":
        drop = next(k for k in state if k.startswith("model.diffusion_model.") and ".attn" in k)
    assert drop in state
    checkpoint = str(tmp_path / "cut.safetensors")
    save_file({k: v.contiguous() for k, v in state.items() if k != drop}, checkpoint)
    config = str(tmp_path / "config")
    shutil.copytree(sdxl_fixtures.tiny_sdxl_folder(), config, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(CheckpointError) as caught:
        load_single_file(checkpoint, torch.device("cpu"), torch.float32, config)
    message = str(caught.value)
    assert "cut.safetensors" in message and "lacks" in message and "to_empty" not in message


def test_a_job_reads_earlier_jobs_files_but_not_the_job_store_beside_them(tmp_path):
    from vdgraph.server.app import ServerConfig, readable_roots

    out = tmp_path / "out"
    (out / "jobs" / "a1").mkdir(parents=True)
    (out / "jobs.sqlite3").write_bytes(b"SQLite format 3\0")
    config = ServerConfig(output_dir=str(out), token="s3cret-token-for-tests")
    registry = Registry.discover()
    workflow = load_workflow({"vdgraph": 1, "inputs": {"image": {"type": "str"}}, "nodes": {
        "read": {"type": "video.read_image", "in": {"path": "inputs.image"}}}, "outputs": {"frames": "read.frames"}})

    def refused(path):
        found = confinement_problems(workflow, registry, {"image": path}, str(out / "jobs" / "b2"), (),
                                     readable_roots(config))
        return [(p.code, p.node, p.port) for p in found]

    assert refused(str(out / "jobs" / "a1" / "frame.png")) == []
    assert refused(str(out / "jobs.sqlite3")) == [("server.file-outside", "read", "path")]
    assert refused(str(out / "cache" / "entry")) == [("server.file-outside", "read", "path")]


def test_a_png_whose_recipe_chunk_decompresses_past_pillows_limit_is_a_clear_error(tmp_path, capsys):
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("vdgraph_recipe", json.dumps({"vdgraph_recipe": 1, "workflow": {"pad": "x" * 3_000_000}}),
                  zip=True)  # 3 MB of text in a few kB: Pillow stops at MAX_TEXT_CHUNK (1 MB)
    path = tmp_path / "bomb.png"
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    assert main(["inspect", str(path)]) != 0
    assert "Decompressed data too large" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--from", str(path), "--output-dir", str(tmp_path / "out")])


def test_a_too_long_negative_prompt_is_told_apart_from_the_prompt():
    from types import SimpleNamespace

    from vdgraph_video.ops.text import PromptTooLong, check_length

    class Words:  # a tokenizer of one token per word, plus the start and end tokens
        model_max_length = 77

        def __call__(self, text, truncation):
            return SimpleNamespace(input_ids=[0, *text.split(), 1])

    tokenizer = Words()
    check_length(tokenizer, "a red cat", truncate=False)
    with pytest.raises(PromptTooLong) as caught:
        check_length(tokenizer, "blurry " * 100, truncate=False)
    assert "102 tokens long" in str(caught.value) and "'blurry blurry" in str(caught.value)
    check_length(tokenizer, "blurry " * 100, truncate=True)


def test_a_path_with_a_nul_byte_is_a_confinement_problem_not_an_exception(tmp_path):
    registry = Registry.discover()
    workflow = load_workflow({"vdgraph": 1, "inputs": {"image": {"type": "str"}, "model": {"type": "str"}}, "nodes": {
        "read": {"type": "video.read_image", "in": {"path": "inputs.image"}},
        "load": {"type": "video.load_model", "in": {"model": "inputs.model"}}},
        "outputs": {"frames": "read.frames", "unet": "load.unet"}})
    name = str(tmp_path / "clip\0.png")
    found = confinement_problems(workflow, registry, {"image": name, "model": name}, str(tmp_path / "job"),
                                 (str(tmp_path),), (str(tmp_path),))
    assert sorted((p.code, p.node, p.port) for p in found) == [("server.file-outside", "read", "path"),
                                                              ("server.model-outside", "load", "model")]


def test_an_output_name_with_a_nul_byte_is_a_validation_problem_not_an_exception(tmp_path):
    from conftest import REPO

    registry = Registry.discover()
    workflow = load_workflow(str(REPO / "workflows" / "text2video_zero.json"))
    problems, plan = check(workflow, registry, {"output": "clip\0.mp4"}, require_inputs=True)
    found = [(p.node, p.port) for p in problems if p.severity == "error" and "NUL" in p.message]
    assert found == [("write", "path")] and plan is None
    found = confinement_problems(workflow, registry, {"output": "clip\0.mp4"}, str(tmp_path / "job"), None)
    assert found == []  # validation's problem says it; not a second one claiming the name leaves the folder


def test_a_png_frame_folder_is_keyed_by_its_frames_not_by_everything_under_it(tmp_path):
    import numpy as np
    from PIL import Image

    folder = tmp_path / "frames"
    (folder / "big" / "deep").mkdir(parents=True)
    for k in range(2):
        Image.fromarray(np.full((4, 4, 3), 40 * k, np.uint8)).save(folder / f"{k:04d}.png")
    cls = Registry.discover().get("video.read_video")

    def key():
        return cls.content_key({"path": str(folder)}, None)["path"]

    first = key()
    assert first[0].startswith("sha256:")
    (folder / "big" / "deep" / "notes.txt").write_text("not a frame")  # not read by the node: not in its key
    os.symlink(folder, folder / "big" / "loop")
    assert key() == first
    Image.fromarray(np.full((4, 4, 3), 200, np.uint8)).save(folder / "0001.png")
    assert key() != first
    assert cls.content_key({"path": str(tmp_path / "clip.mp4")}, None) == {"path": ["missing"]}


def test_an_sdxl_checkpoint_with_the_config_folder_of_a_plain_model_is_refused_at_validation(tmp_path):
    import shutil

    import sdxl_fixtures
    import vdgraph
    from safetensors.torch import save_file
    from single_file_fixtures import sdxl_checkpoint
    from video_fixtures import tiny_model_folder

    components = sdxl_fixtures.build_sdxl_components()
    state = sdxl_checkpoint(components["unet"], components["vae"], components["text_encoder"],
                            components["text_encoder_2"])
    checkpoint = str(tmp_path / "xl.safetensors")
    save_file({k: v.contiguous() for k, v in state.items()}, checkpoint)
    configs = {}
    for kind, folder in (("plain", tiny_model_folder()), ("sdxl", sdxl_fixtures.tiny_sdxl_folder())):
        configs[kind] = str(tmp_path / kind)
        shutil.copytree(folder, configs[kind], ignore=shutil.ignore_patterns("*.safetensors"))

    def problems(config):
        workflow = {"vdgraph": 1, "nodes": {"load": {"type": "video.load_model",
                                                     "params": {"model": checkpoint, "config": config}}},
                    "outputs": {"unet": "load.unet"}}
        return [(p.node, p.port, p.message) for p in vdgraph.validate(workflow) if p.severity == "error"]

    (found,) = problems(configs["plain"])  # the run failed in diffusers: "expected shape ... ignore_mismatched_sizes"
    assert found[:2] == ("load", "config") and "SDXL base" in found[2] and "a non-SDXL model" in found[2]
    assert problems(configs["sdxl"]) == [] and problems("") == []


def test_a_job_queued_before_a_restart_gets_the_restarted_servers_confinement(tmp_path):
    import numpy as np
    from PIL import Image

    from vdgraph.server.app import Server, ServerConfig
    from vdgraph.server.store import JobStore

    outside = tmp_path / "elsewhere" / "secret.png"
    outside.parent.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(outside)
    graph = {"vdgraph": 1, "nodes": {"read": {"type": "video.read_image", "params": {"path": str(outside)}}},
             "outputs": {"frames": "read.frames"}}
    out = tmp_path / "out"
    (out / "jobs").mkdir(parents=True)
    store = JobStore(str(out / "jobs.sqlite3"))  # queued by a server on 127.0.0.1 without a token, then stopped
    store.add("queued1", "read", None, json.dumps(graph), {})
    store._db.close()
    clips = tmp_path / "clips"
    clips.mkdir()
    server = Server(ServerConfig(output_dir=str(out), token="s3cret-token-for-tests", input_roots=(str(clips),)))
    server.start()
    try:
        deadline = time.time() + 120
        while server.store.get("queued1")["state"] in ("queued", "running") and time.time() < deadline:
            time.sleep(0.2)
        job = server.store.get("queued1")
    finally:
        server.stop()
    assert job["state"] == "failed" and "server.file-outside" in job["error"], job


def test_a_folder_with_a_broken_link_is_still_keyed_by_its_files(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.safetensors").write_bytes(b"one")
    os.symlink(tmp_path / "gone.bin", folder / "partial.bin")  # a download cut short
    first = content_of(str(folder))
    assert first.startswith("sha256:")  # it was 'unreadable: No such file or directory' whatever the weights held
    (folder / "weights.safetensors").write_bytes(b"two")
    assert content_of(str(folder)) != first


OUTPUT = {"video.load_model": "unet", "video.load_controlnet": "controlnet", "video.load_motion_adapter": "motion_adapter"}


@pytest.mark.parametrize("node_type", sorted(OUTPUT))
@pytest.mark.parametrize("variant", ["../../etc/x", "fp16/../x", "a b", "fp.16"])
def test_a_weights_variant_that_is_not_a_name_is_a_validation_problem(node_type, variant):
    # the variant becomes part of weight file names (*.<variant>.safetensors): a path in it is refused up front
    from vdgraph.registry import Registry
    from vdgraph.validate import validate
    from vdgraph.workflow import load_workflow

    workflow = {"vdgraph": 1, "nodes": {"load": {"type": node_type, "params": {"model": "shapes-64", "variant": variant}}},
                "outputs": {"out": "load." + OUTPUT[node_type]}}
    problems = [p for p in validate(load_workflow(workflow), Registry.discover(folders=(), env={}))
                if p.severity == "error"]
    assert [(p.node, p.port) for p in problems] == [("load", "variant")], problems
    assert "fp16" in problems[0].hint
