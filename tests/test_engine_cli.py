"""The command line: exit codes, readable problems without tracebacks, packs from folders, the persistent cache
across two processes, Ctrl-C, the JSON Schema and the graph views."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from vdgraph.cli import main

HELLO = str(REPO / "workflows" / "hello.json")

TENSOR_PACK = '''
import time

import torch

from vdgraph import Input, Node, Output
from vdgraph.types import TENSOR, Opaque

WEIGHTS = Opaque("CliTestWeights", "fake model weights")


class Load(Node):
    """A fake model (never persisted: only tensors and JSON values are)."""

    id = "tens.load"
    inputs = [Input("size", int, default=4)]
    outputs = [Output("model", WEIGHTS)]

    def run(self, ctx, size):
        return torch.nn.Linear(size, size)


class Apply(Node):
    """Runs the fake model on ones, reporting progress; `delay` seconds per step."""

    id = "tens.apply"
    inputs = [Input("model", WEIGHTS), Input("steps", int, default=3), Input("delay", float, default=0.0)]
    outputs = [Output("out", TENSOR)]

    def run(self, ctx, model, steps, delay):
        x = torch.ones(1, model.in_features)
        with torch.no_grad():
            for step in range(1, steps + 1):
                time.sleep(delay)
                x = model(x)
                ctx.progress(step, steps)
        return x


class Boom(Node):
    """Always fails."""

    id = "tens.boom"
    inputs = [Input("x", int, default=0)]
    outputs = [Output("x", int)]

    def run(self, ctx, x):
        raise ZeroDivisionError("nope")


NODES = [Load, Apply, Boom]
'''

TENSOR_FLOW = {"vdgraph": 1, "name": "tens", "inputs": {"steps": {"type": "int", "default": 3},
                                                       "delay": {"type": "float", "default": 0.0}},
               "nodes": {"load": {"type": "tens.load"},
                         "apply": {"type": "tens.apply", "in": {"model": "load.model", "steps": "inputs.steps",
                                                               "delay": "inputs.delay"}}},
               "outputs": {"out": "apply.out"}}


@pytest.fixture
def pack_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "packs"
    folder.mkdir()
    (folder / "tens.py").write_text(TENSOR_PACK)
    return folder


@pytest.fixture
def tensor_flow(tmp_path: Path) -> Path:
    path = tmp_path / "tens.json"
    path.write_text(json.dumps(TENSOR_FLOW, indent=2))
    return path


def test_run_hello_end_to_end(tmp_path):
    done = run_cli("run", HELLO, "--set", "name=Ada", "--output-dir", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["outputs"]["greeting"] == "Hello, Ada! A 64x48 frame has 3072 pixels."
    assert json.loads((tmp_path / "hello.json").read_text()) == result["outputs"]["greeting"]


def test_persistent_cache_across_two_processes(tmp_path, capsys, pack_dir, tensor_flow, core_only):
    cache = str(tmp_path / "cache")
    args = ("run", str(tensor_flow), "--nodes", str(pack_dir), "--cache", cache, "--json", "--device", "cpu")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    second = run_cli(*args, "--explain")
    assert second.returncode == 0, second.stderr
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert [(r["id"], r["status"]) for r in one["report"]] == [("load", "ran"), ("apply", "ran")]
    # the final tensor comes from disk, so the model is not even loaded in the second process
    assert [(r["id"], r["status"]) for r in two["report"]] == [("apply", "cached-disk")]
    assert one["outputs"] == two["outputs"] and two["outputs"]["out"]["tensor"]["shape"] == [1, 4]
    capsys.readouterr()
    assert main([*args, "--explain", "--set", "steps=4"]) == 0  # a third run, in this process: explained from disk
    reasons = {r["id"]: r.get("reason") for r in json.loads(capsys.readouterr().out)["report"]}
    assert reasons == {"load": "not stored: output 'model' holds a model (Linear)",  # the true reason, not a guess
                       "apply": "workflow input steps changed 3 -> 4"}


def test_ctrl_c_cancels_cleanly(tmp_path, pack_dir, tensor_flow):
    events = tmp_path / "events.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "vdgraph", "run", str(tensor_flow), "--nodes", str(pack_dir), "--device", "cpu",
         "--set", "steps=200", "--set", "delay=0.05", "--events", str(events)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if events.exists() and '"progress"' in events.read_text():
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "cancelled inside node 'apply'" in stderr and "Traceback" not in stderr
    assert "completed nodes are not kept" in stderr  # this run had no --cache
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert lines[0]["kind"] == "run_started" and lines[-1]["kind"] == "run_finished" and lines[-1]["cancelled"]


def test_validate_exit_codes_and_readable_problems(tmp_path, capsys, core_only):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"vdgraph": 1, "nodes": {"m": {"type": "core.math", "params": {"a": "x", "op": "mod"}}},
                               "outputs": {"r": "m.result"}}, indent=2))
    assert main(["validate", HELLO]) == 0
    assert main(["validate", HELLO, str(bad)]) == 1
    out = capsys.readouterr().out
    assert "hello.json: ok (0 error(s), 0 warning(s))" in out
    assert f"{bad}:7:9: m.a: error [param.type] expected a number, got str 'x'" in out
    assert "[param.choice] 'mod' is not one of" in out and "Traceback" not in out
    assert main(["validate", str(bad), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report[0]["valid"] is False and {p["code"] for p in report[0]["problems"]} == {"param.type", "param.choice"}


def test_user_errors_never_show_a_traceback(tmp_path, capsys, core_only):
    malformed = tmp_path / "m.json"
    malformed.write_text('{"vdgraph": 1,\n "nodes": }')
    assert main(["run", str(malformed)]) == 1
    assert "m.json:2:11: error [json.malformed]" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "absent.json")]) == 1
    assert "[file.unreadable] cannot read workflow" in capsys.readouterr().err
    assert main(["run", HELLO, "--set", "width=tiny"]) == 1
    assert "[input.type] --set width='tiny': expected an integer" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["run", HELLO, "--set", "novalue"])
    assert usage.value.code == 2 and "--set expects name=value" in capsys.readouterr().err
    if not _cuda():
        assert main(["run", HELLO, "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


def test_failed_node_exit_code_and_message(tmp_path, capsys, pack_dir, core_only):
    flow = tmp_path / "boom.json"
    flow.write_text(json.dumps({"vdgraph": 1, "nodes": {"b": {"type": "tens.boom"}}, "outputs": {"x": "b.x"}}))
    assert main(["run", str(flow), "--nodes", str(pack_dir), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "node 'b' (tens.boom) failed: ZeroDivisionError: nope" in err and "Traceback" not in err
    assert "completed nodes are not kept (pass --cache DIR" in err  # no claim of a cache that does not exist
    assert main(["run", str(flow), "--nodes", str(pack_dir), "--device", "cpu", "--cache", str(tmp_path / "c")]) == 1
    assert "completed nodes stay in the --cache folder" in capsys.readouterr().err
    assert main(["run", str(flow), "--nodes", str(pack_dir), "--device", "cpu", "--traceback"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_custom_pack_through_nodes_option_and_environment(tmp_path, capsys, pack_dir, tensor_flow, monkeypatch,
                                                          core_only):
    assert main(["run", str(tensor_flow), "--nodes", str(pack_dir), "--device", "cpu", "-q"]) == 0
    assert "out  Tensor (1, 4) float32 on cpu" in capsys.readouterr().out
    monkeypatch.setenv("VDGRAPH_NODES_PATH", str(pack_dir))
    assert main(["nodes", "tens.*"]) == 0
    out = capsys.readouterr().out
    assert "tens.apply  (v1, misc)  from pack 'tens' (folder pack" in out
    assert "model: CliTestWeights (required, link only)" in out


def test_broken_pack_reported_by_nodes_and_validation(tmp_path, capsys, core_only):
    folder = tmp_path / "packs"
    folder.mkdir()
    (folder / "broken.py").write_text("import not_a_real_module_xyz\n")
    (folder / "typo.py").write_text("def f(:\n")
    assert main(["nodes", "--nodes", str(folder)]) == 0
    captured = capsys.readouterr()
    assert "core.math" in captured.out
    assert f"pack 'broken' ({folder / 'broken.py'}:1): error [pack.import-failed]" in captured.err
    assert "No module named 'not_a_real_module_xyz'" in captured.err
    assert f"pack 'typo' ({folder / 'typo.py'}:1): error [pack.import-failed] failed to import: SyntaxError" in (
        captured.err)
    flow = tmp_path / "uses.json"
    flow.write_text(json.dumps({"vdgraph": 1, "nodes": {"x": {"type": "broken.node"}}, "outputs": {"x": "x.out"}}))
    assert main(["validate", str(flow), "--nodes", str(folder)]) == 1
    assert "[node.pack-failed] node type 'broken.node' comes from pack 'broken'" in capsys.readouterr().out
    assert main(["nodes", "--json", "--nodes", str(folder)]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert {p["pack"] for p in listing["problems"]} == {"broken", "typo"}
    assert any(n["id"] == "core.float_to_int" for n in listing["nodes"])


def test_schema_validates_hello_and_rejects_mistakes(tmp_path, core_only):
    jsonschema = pytest.importorskip("jsonschema")
    target = tmp_path / "schema.json"
    assert main(["schema", "-o", str(target)]) == 0
    schema = json.loads(target.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    jsonschema.Draft202012Validator.check_schema(schema)
    hello = json.loads(Path(HELLO).read_text())
    assert list(validator.iter_errors(hello)) == []

    def errors(node: dict) -> list:
        return list(validator.iter_errors({**hello, "nodes": {**hello["nodes"], "x": node}}))

    assert errors({"type": "core.math", "params": {"a": 1.0, "op": "mod"}})  # not in the enumeration
    assert errors({"type": "core.math", "params": {"a": "1"}})  # wrong literal type
    assert errors({"type": "core.math", "params": {"a": 1.0, "bogus": 1}})  # unknown port
    assert errors({"type": "core.math"})  # required port a missing
    assert errors({"type": "core.save_json", "params": {"value": 1}})  # link-only port as a literal
    assert errors({"type": "core.save_json", "in": {"value": "pixels.result"}, "params": {"indent": 9}})  # range
    assert not errors({"type": "core.math", "in": {"a": "pixels.result"}})
    assert errors({"type": "core.nope"})


def test_graph_as_dot_and_mermaid(capsys):
    assert main(["graph", HELLO]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith('digraph "hello" {') and '"pixels" -> "greeting" [label="result → d"];' in dot
    assert '"inputs.width" -> "pixels" [label="a"];' in dot
    assert main(["graph", HELLO, "--format", "mermaid"]) == 0
    mermaid = capsys.readouterr().out
    assert mermaid.startswith("flowchart LR") and 'n0 -->|"result → d"| n2' in mermaid


def test_help_has_examples():
    with pytest.raises(SystemExit):
        main(["run", "--help"])


def test_python_module_entry_point():
    done = run_cli("--help")
    assert done.returncode == 0 and "examples:" in done.stdout


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_quiet_silences_per_node_lines_and_library_progress_bars(tmp_path):
    """-q: the outputs and a one-line summary; a library's tqdm bar inside a node (as diffusers' and transformers'
    loading bars) prints nothing."""
    pack = tmp_path / "packs" / "bars.py"
    pack.parent.mkdir()
    pack.write_text(textwrap.dedent("""
        from tqdm.auto import tqdm
        from vdgraph import Node, Output

        class Loading(Node):
            '''Counts with a progress bar, as a library's loader does.'''

            id = "bars.loading"
            outputs = [Output("n", int)]

            def run(self, ctx):
                return sum(1 for _ in tqdm(range(5), desc="Loading weights"))

        NODES = [Loading]
    """))
    flow = tmp_path / "bars.json"
    flow.write_text(json.dumps({"vdgraph": 1, "nodes": {"load": {"type": "bars.loading"}}, "outputs": {"n": "load.n"}}))
    args = ("run", str(flow), "--nodes", str(pack.parent), "--device", "cpu", "--output-dir", str(tmp_path / "out"))
    loud = run_cli(*args)
    assert loud.returncode == 0, loud.stderr
    assert "Loading weights" in loud.stderr and "bars.loading" in loud.stdout  # the control: both do print
    quiet = run_cli(*args, "-q")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and "bars.loading" not in quiet.stdout
    assert "n  5" in quiet.stdout and "report: 1 ran, 0 cached" in quiet.stdout
