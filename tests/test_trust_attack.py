"""A fresh-eyes attack on issue 8 as merged: each test is an attack that broke a promise of the issue (data loss,
code run unasked, a traceback, a check validation could have made), kept so that it stays fixed.

Writers and the output folder: the claim reserved one path while the write went to another (a `::` in a name
is an fsspec chain, a leading `~` an fsspec home folder), so a user's file was replaced without --overwrite; an
unusable output folder failed only at the first write, after the work. Code execution: `python -m vdgraph`
imported modules of the working directory. Hostile files: a `checks` rule built gigabytes; a damaged explain
history crashed every later --explain run.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

import vdgraph
import vdgraph_core
from vdgraph import Executor, Registry
from vdgraph.cli import main
from vdgraph.errors import VdgraphError
from vdgraph.expressions import ExpressionError, evaluate

WORKFLOWS = REPO / "workflows"


def core_registry() -> Registry:
    registry = Registry()
    for cls in vdgraph_core.NODES:
        registry.register(cls, pack="core")
    return registry


def save_json_workflow(filename: str, text: str = "new") -> dict:
    return {"vdgraph": 1, "name": "attack", "inputs": {"text": {"type": "str", "default": text}},
            "nodes": {"save": {"type": "core.save_json", "in": {"value": "inputs.text"},
                               "params": {"filename": filename}}},
            "outputs": {"file": "save.path"}}


def listing(root: Path) -> dict[str, str]:
    """Every file under `root` with the sha256 of its bytes (links as their target), for before/after checks."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(root))] = "link:" + os.readlink(path)
        elif path.is_file():
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


# -- writers: the file written is the file reserved ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["sub/victim::/a", "sub/victim::zzz", "x::/etc/hosts", "a::b.json"])
def test_a_name_with_a_double_colon_writes_the_file_its_claim_reserved(tmp_path, name):
    # fsspec reads "out/sub/victim::/a" as a chain and wrote "out/sub/victim": a user's file, replaced without
    # --overwrite, and a 0-byte reservation left at the path that was checked
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "victim").write_text("the user's own file")
    (out / "x").write_text("another user file")
    before = listing(tmp_path)
    written = Executor(core_registry(), device="cpu").run(save_json_workflow(name), output_dir=str(out))
    path = Path(written.outputs["file"])
    assert path == out / name
    assert json.loads(path.read_text()) == "new"
    after = listing(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing that was there changed
    written_names = {str(path.relative_to(tmp_path)), str(path.relative_to(tmp_path)) + ".recipe.json"}
    assert set(after) - set(before) == written_names  # the file and its recipe beside it, nothing else


def test_a_png_folder_name_with_a_double_colon_is_written_where_it_was_reserved(tmp_path):
    import torch

    from vdgraph_video.ops.video_io import write_png_frames, to_uint8

    (tmp_path / "victim").write_text("keep")
    target = tmp_path / "victim::x"
    target.mkdir()  # what OutputFolder.claim reserves for a folder
    write_png_frames(to_uint8(torch.zeros(2, 4, 4, 3)), str(target))
    assert (tmp_path / "victim").read_text() == "keep"
    assert sorted(p.name for p in target.iterdir()) == ["frame_00000.png", "frame_00001.png"]


def test_output_dir_with_a_tilde_is_the_home_folder_and_nothing_there_is_replaced(tmp_path, monkeypatch):
    # the claim reserved ./~/out/r.json while fsspec expanded '~' and replaced $HOME/out/r.json
    home, work = tmp_path / "home", tmp_path / "work"
    (home / "out").mkdir(parents=True)
    (home / "out" / "r.json").write_text("precious")
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    written = vdgraph.run(save_json_workflow("r.json"), output_dir="~/out", registry=core_registry(), device="cpu")
    assert (home / "out" / "r.json").read_text() == "precious"
    assert Path(written["file"]) == home / "out" / "r_00001.json"
    assert list(work.iterdir()) == []  # no folder named '~', no 0-byte reservation


@pytest.mark.parametrize("output_dir, message", [
    ("a_file", "is a file"),
    ("a_file/sub", "inside the file"),
    ("bogus://out", "Protocol not known: bogus"),
    ("", "output_dir is empty"),
    ("out\udcff", "not Unicode text"),  # `--output-dir $'out\xff'`: the file was written, then the run failed
])
def test_an_unusable_output_folder_is_refused_before_any_node_runs(tmp_path, output_dir, message):
    # these failed only when the first writer ran, after the whole computation (and '' with a traceback)
    (tmp_path / "a_file").write_text("x")
    events = []
    root = output_dir if "://" in output_dir or not output_dir else str(tmp_path / output_dir)
    with pytest.raises(VdgraphError, match=message):
        Executor(core_registry(), device="cpu").run(save_json_workflow("r.json"), output_dir=root,
                                                    on_event=events.append)
    assert not any(type(e).__name__ == "NodeStarted" for e in events)
    assert os.listdir(tmp_path) == ["a_file"] and (tmp_path / "a_file").read_text() == "x"


def test_cli_empty_output_dir_and_unknown_schema_protocol_are_messages_not_tracebacks(capsys, tmp_path):
    code, text = cli(capsys, "run", str(WORKFLOWS / "hello.json"), "--output-dir", "", "-q")
    assert code == 1 and "output_dir is empty" in text and "Traceback" not in text
    code, text = cli(capsys, "schema", "-o", "bogus://schema.json")
    assert code == 1 and "Protocol not known: bogus" in text and "Traceback" not in text


# -- code execution ------------------------------------------------------------------------------------------------

def test_python_m_vdgraph_imports_no_module_of_the_working_directory(tmp_path):
    # `python -m` puts the working directory first on sys.path: a cloned folder's fsspec.py ran on `validate`
    marker = tmp_path / "ran"
    for module in ("fsspec", "networkx", "pydantic", "numpy"):
        (tmp_path / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').write('{module}')\n"
                                               "raise SystemExit('shadowed')\n")
    (tmp_path / "hello.json").write_text((WORKFLOWS / "hello.json").read_text())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "nodes")])}
    done = subprocess.run([sys.executable, "-m", "vdgraph", "validate", "hello.json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert not marker.exists(), f"{marker.read_text()}.py of the working directory was imported"
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout


# -- hostile workflows ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", ['len("x" * a) > 0', 'len("%999999999999d" % a) > 0', 'len((1,) * a) > 0',
                                  'len(s + s) > 0'])
def test_a_check_cannot_build_huge_values(rule):
    # string and tuple arithmetic let a workflow file make validation allocate gigabytes (or die of MemoryError)
    with pytest.raises(ExpressionError, match="arithmetic takes numbers"):
        evaluate(rule, {"a": 10**12, "s": "x"})
    document = {"vdgraph": 1, "inputs": {"a": {"type": "int", "default": 10**12}},
                "nodes": {"m": {"type": "core.int_math", "params": {"a": 1, "b": 1}}}, "outputs": {"r": "m.result"},
                "checks": [{"require": rule.replace("s + s", "a + a")}]}
    problems = vdgraph.validate(document, registry=core_registry())
    assert problems and all(p.severity == "error" for p in problems)


def test_arithmetic_on_numbers_still_works():
    assert evaluate("a * 2 + b % 3 == 7", {"a": 3, "b": 4})
    assert evaluate("t0 < t1 < steps and len(name) > 2", {"t0": 1, "t1": 2, "steps": 3, "name": "abc"})


def test_a_damaged_explain_history_is_forgotten_not_a_crash(tmp_path):
    # valid JSON of the wrong inner shape in the cache's explain/ folder crashed every later --explain run
    document = {"vdgraph": 1, "name": "chain", "inputs": {"a": {"type": "int", "default": 3}},
                "nodes": {"x": {"type": "core.int_math", "in": {"a": "inputs.a"}, "params": {"b": 2, "op": "mul"}},
                          "y": {"type": "core.int_math", "in": {"a": "x.result"}, "params": {"b": 2}}},
                "outputs": {"y": "y.result"}}
    cache = tmp_path / "cache"
    Executor(core_registry(), device="cpu", cache_dir=str(cache)).run(document, explain=True)
    (history,) = (cache / "explain").iterdir()
    stored = json.loads(history.read_text())
    for record in stored["nodes"].values():
        record.update(names={"inputs": 5, "links": {"a": 3}}, links={"a": 7}, inputs={"a": 1})
    history.write_text(json.dumps(stored))
    result = Executor(core_registry(), device="cpu", cache_dir=str(cache)).run(document, {"a": 4}, explain=True)
    assert result.outputs["y"] == 10
    assert [r.reason for r in result.report] == ["first run", "first run"]


# -- validation sees what the run would reject ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def packs() -> Registry:
    return Registry.discover(folders=(), env={})


def node_checks(registry: Registry, document: dict, inputs: dict | None = None) -> list[tuple[str, str, str]]:
    return [(p.code, p.node, p.port) for p in vdgraph.validate(document, registry=registry, inputs=inputs)
            if p.severity == "error"]


def test_a_video_name_whose_format_is_unknown_is_a_validation_problem(packs):
    # `--set output=clip.avi` passed validate, then failed in write_video after the whole denoising
    t2vz = str(WORKFLOWS / "text2video_zero.json")
    assert node_checks(packs, json.loads(Path(t2vz).read_text()), {"output": "clip.avi"}) == [
        ("node.check", "write", "path")]
    for fine in ("clip.webm", "clip.GIF", "frames", "{workflow}_{seed}.mp4", "{workflow}_{counter}"):
        assert node_checks(packs, json.loads(Path(t2vz).read_text()), {"output": fine}) == [], fine


@pytest.mark.parametrize("node, port, params", [
    ("video.translation_flow", "first_frame", {"frames": 4, "first_frame": 4}),
    ("video.translation_flow", "first_frame", {"frames": 2, "first_frame": 7}),
    ("video.read_video", "path", {"path": " "}),
])
def test_literals_the_run_would_reject_are_validation_problems(packs, node, port, params):
    document = {"vdgraph": 1, "nodes": {"n": {"type": node, "params": params}},
                "outputs": {"o": "n.flow" if node == "video.translation_flow" else "n.frames"}}
    assert node_checks(packs, document) == [("node.check", "n", port)]


def test_encoding_with_sample_and_no_rng_is_a_validation_problem(packs):
    document = {"vdgraph": 1, "inputs": {"sample": {"type": "bool", "default": True}},
                "nodes": {"model": {"type": "video.load_model", "params": {"model": "shapes-64"}},
                          "read": {"type": "video.read_video", "params": {"path": "clip.mp4"}},
                          "encode": {"type": "video.encode", "in": {"vae": "model.vae", "frames": "read.frames",
                                                                    "sample": "inputs.sample"}}},
                "outputs": {"latents": "encode.latents"}}
    assert node_checks(packs, document) == [("node.check", "encode", "rng")]
    assert node_checks(packs, document, {"sample": False}) == []


@pytest.mark.parametrize("start, end, empty", [(3, 3, True), (5, 2, True), (-1, -2, True), (-2, -1, False),
                                               (2, -1, False), (0, None, False)])
def test_a_frame_selection_that_is_always_empty_is_a_validation_problem(packs, start, end, empty):
    document = {"vdgraph": 1, "nodes": {
        "model": {"type": "video.load_model", "params": {"model": "shapes-64"}},
        "read": {"type": "video.read_video", "params": {"path": "clip.mp4"}},
        "encode": {"type": "video.encode", "in": {"vae": "model.vae", "frames": "read.frames"}},
        "pick": {"type": "video.select_latent_frames", "in": {"latents": "encode.latents"},
                 "params": {"start": start, "end": end}}}, "outputs": {"latents": "pick.latents"}}
    assert node_checks(packs, document) == ([("node.check", "pick", "end")] if empty else [])


def test_a_model_path_the_run_cannot_load_is_a_validation_problem(packs, tmp_path):
    # an absolute path that does not exist, or a folder that is not a diffusers model, passed validate
    t2vz = json.loads((WORKFLOWS / "text2video_zero.json").read_text())
    missing = str(tmp_path / "no-such-model")
    assert node_checks(packs, t2vz, {"model": missing}) == [("node.check", "model", "model")]
    assert node_checks(packs, t2vz, {"model": str(WORKFLOWS)}) == [("node.check", "model", "model")]
    shipped = str(REPO / "nodes" / "vdgraph_shapes" / "model")
    for fine in (shipped, "shapes-64", "owner/some-model", "memory://models/x"):
        assert node_checks(packs, t2vz, {"model": fine}) == [], fine


def test_a_killed_png_folder_write_does_not_block_overwrite_of_its_name(tmp_path):
    # SIGKILL mid-write left the reserved, empty `frames/` (and a stale staging folder); afterwards
    # --overwrite refused that name forever ("not written by vdgraph"), though replacing it loses nothing
    import torch

    from vdgraph.outputs import STALE_SECONDS, OutputFolder
    from vdgraph_video.ops.video_io import to_uint8, write_png_frames

    out = tmp_path / "out"
    (out / "frames").mkdir(parents=True)
    staging = out / "frames.tmp-0123456789ab"
    staging.mkdir()
    (staging / "frame_00000.png").write_bytes(b"half")
    old = os.stat(staging).st_mtime - STALE_SECONDS - 60
    os.utime(staging, (old, old))
    with OutputFolder(out, overwrite=True, node="write").claim("frames", folder=True) as target:
        write_png_frames(to_uint8(torch.zeros(2, 4, 4, 3)), target)
    assert sorted(os.listdir(out)) == ["frames"]
    assert sorted(os.listdir(out / "frames")) == [".vdgraph-output", "frame_00000.png", "frame_00001.png"]
    (out / "mine").mkdir()
    (out / "mine" / "notes.txt").write_text("the user's")  # a folder with anything in it is still refused
    with pytest.raises(VdgraphError, match="did not write"):
        with OutputFolder(out, overwrite=True, node="write").claim("mine", folder=True):
            pass
    assert (out / "mine" / "notes.txt").read_text() == "the user's"


def test_writing_outside_the_output_folder_removes_nothing_there(tmp_path):
    # with --allow-outside-output-dir, the stale-temporary sweep ran in the user's own folder (rmtree included)
    from vdgraph.outputs import STALE_SECONDS, OutputFolder

    home = tmp_path / "home"
    (home / "backup.tmp-0123456789ab").mkdir(parents=True)
    (home / "backup.tmp-0123456789ab" / "thesis.tex").write_text("the user's")
    (home / "notes.tmp-abcdefabcdef").write_text("the user's too")
    old = os.stat(home).st_mtime - STALE_SECONDS - 60
    for path in (home / "backup.tmp-0123456789ab", home / "notes.tmp-abcdefabcdef"):
        os.utime(path, (old, old))
    before = listing(tmp_path)
    outputs = OutputFolder(tmp_path / "out", allow_outside=True, node="save")
    with outputs.claim(str(home / "result.json")) as target:
        Path(target).write_text("{}")
    after = listing(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) - set(before) == {"home/result.json"}


@pytest.mark.parametrize("option", ["--cache", "--events"])
def test_an_empty_cache_or_events_option_is_a_usage_error_not_ignored(capsys, tmp_path, monkeypatch, option):
    # `--cache "$CACHE"` with the variable unset ran without a cache and said nothing
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(["run", str(WORKFLOWS / "hello.json"), option, "", "-q"])
    assert stopped.value.code == 2
    assert f"{option} is empty" in capsys.readouterr().err


@pytest.mark.parametrize("timesteps", [10**10, 0, "1000", 1.5])
def test_a_scheduler_config_with_an_absurd_training_schedule_is_refused(tmp_path, timesteps):
    # num_train_timesteps = 10**10 made diffusers build the schedule in a Python loop: the run hung
    import shutil

    from vdgraph_video.loading import ModelFolderError, check_model_folder

    folder = tmp_path / "model"
    shutil.copytree(REPO / "nodes" / "vdgraph_shapes" / "model", folder)
    config_path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    check_model_folder(str(folder))  # the shipped config passes
    config["num_train_timesteps"] = timesteps
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match="num_train_timesteps"):
        check_model_folder(str(folder))


def test_sampler_model_with_a_scheduler_config_naming_a_non_scheduler_is_a_validation_problem(packs, tmp_path):
    # the run refused it at video.scheduler (after loading the model); validation read the same config and said ok
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(REPO / "nodes" / "vdgraph_shapes" / "model", folder)
    config_path = folder / "scheduler" / "scheduler_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "_class_name": "UNet2DConditionModel"}))
    t2vz = json.loads((WORKFLOWS / "text2video_zero.json").read_text())
    assert node_checks(packs, t2vz, {"model": str(folder), "sampler": "model"}) == [("node.check", "scheduler", "kind")]
    assert node_checks(packs, t2vz, {"model": str(folder), "sampler": "ddim"}) == []
    assert node_checks(packs, t2vz, {"sampler": "model"}) == []


def test_the_judge_workflow_reads_what_a_default_text2video_zero_run_wrote(tmp_path, monkeypatch):
    # since outputs go to ./out, the judge's default video ('text2video_zero.mp4') named a file no run writes
    monkeypatch.chdir(tmp_path)
    executor = Executor(device="cpu")
    short = {"frames": 4, "steps": 8, "t0": 4, "t1": 6}
    made = executor.run(WORKFLOWS / "text2video_zero.json", short, outputs=["video"])  # default output folder
    judged = executor.run(WORKFLOWS / "judge_shapes_video.json")  # every input at its default
    assert Path(made.outputs["video"]).resolve() == (tmp_path / "out" / "text2video_zero.mp4").resolve()
    assert 0.0 <= judged.outputs["identity"] <= 1.0


def test_schema_says_which_packs_failed_and_are_missing_from_it(tmp_path, capsys):
    # a broken pack's node types were silently left out of the schema an editor then checks workflows against
    folder = tmp_path / "packs"
    folder.mkdir()
    (folder / "broken.py").write_text("raise RuntimeError('boom')\n")
    code, text = cli(capsys, "schema", "--nodes", str(folder))
    assert code == 0
    assert "not in the schema" in text and "pack 'broken'" in text and "RuntimeError: boom" in text


@pytest.mark.parametrize("component, index", [("text_encoder", "model.safetensors.index.json"),
                                              ("unet", "diffusion_pytorch_model.safetensors.index.json")])
def test_a_safetensors_index_naming_a_pickle_shard_is_refused(tmp_path, component, index):
    # transformers followed model.safetensors.index.json to pytorch_model-00001.bin and unpickled it (torch's
    # weights-only unpickler happened to stop the payload): weights must come only from safetensors files
    import shutil

    from safetensors import safe_open

    from vdgraph_video.loading import ModelFolderError, check_model_folder

    folder = tmp_path / "model"
    shutil.copytree(REPO / "nodes" / "vdgraph_shapes" / "model", folder)
    weights = next((folder / component).glob("*.safetensors"))
    with safe_open(str(weights), "pt") as handle:
        names = list(handle.keys())
    weights.rename(weights.with_name("unrelated.safetensors"))  # a safetensors file is still there
    (folder / component / index).write_text(json.dumps({"metadata": {}, "weight_map": dict.fromkeys(
        names, "pytorch_model-00001.bin")}))
    (folder / component / "pytorch_model-00001.bin").write_bytes(b"\x80\x04N.")  # a pickle
    with pytest.raises(ModelFolderError, match="pytorch_model-00001.bin.*not a .safetensors file"):
        check_model_folder(str(folder))
    (folder / component / index).write_text(json.dumps({"weight_map": dict.fromkeys(names, "../x.safetensors")}))
    with pytest.raises(ModelFolderError, match="not a .safetensors file beside it"):
        check_model_folder(str(folder))


def test_an_absurd_thread_count_is_a_usage_error_not_a_crash(capsys):
    # `--threads 100000` made torch's first matmul die of SIGSEGV, with no message
    with pytest.raises(SystemExit) as stopped:
        main(["run", str(WORKFLOWS / "hello.json"), "--threads", "100000", "-q"])
    assert stopped.value.code == 2
    assert "--threads must be from 1 to" in capsys.readouterr().err


def test_overwrite_never_replaces_a_pipe_or_device_with_a_file(tmp_path):
    # `--output-dir /dev --overwrite` with the name 'null' replaced /dev/null with a regular file; a FIFO a user
    # keeps in the output folder was replaced the same way
    from vdgraph.outputs import OutputFolder, OutputRefused

    os.mkfifo(tmp_path / "result.json")
    with pytest.raises(OutputRefused, match="not a regular file"):
        with OutputFolder(tmp_path, overwrite=True, node="save").claim("result.json"):
            pass
    assert (tmp_path / "result.json").is_fifo()
    (tmp_path / "plain.json").write_text("old")  # a plain file is still replaced with --overwrite
    with OutputFolder(tmp_path, overwrite=True, node="save").claim("plain.json") as target:
        assert target == str(tmp_path / "plain.json")
