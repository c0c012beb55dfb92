"""No code runs unasked: node packs come only from configured places and are imported only when a workflow needs
them; a pack cannot end vdgraph silently; a model folder is data, never code (issue 8)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO

from vdgraph import Registry
from vdgraph.cli import main
from vdgraph.errors import PackFolderNotFound, PackImportInterrupted
from vdgraph.packs import LOCAL_NODES_ENV, NODES_PATH_ENV

BUILTIN_MODEL = REPO / "nodes" / "vdgraph_shapes" / "model"

PACK = '''
import pathlib

pathlib.Path({marker!r}).write_text("imported")

from vdgraph import Input, Node, Output


class Shout(Node):
    """Upper-cases text."""

    id = "{pack}.shout"
    inputs = [Input("text", str)]
    outputs = [Output("text", str)]

    def run(self, ctx, text):
        return text.upper()


NODES = [Shout]
'''

CORE_FLOW = {"vdgraph": 1, "nodes": {"g": {"type": "core.int_math", "params": {"a": 6, "b": 7, "op": "mul"}}},
             "outputs": {"product": "g.result"}}


def write_pack(folder: Path, name: str, marker: Path) -> Path:
    """A pack `name` in `folder` that leaves `marker` behind when (and only when) it is imported."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(PACK.format(pack=name, marker=str(marker)))
    return path


def write_flow(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


def shout_flow(pack: str) -> dict:
    return {"vdgraph": 1, "nodes": {"s": {"type": f"{pack}.shout", "params": {"text": "hi"}}},
            "outputs": {"text": "s.text"}}


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh home and no pack settings, so the user's own config cannot leak into a test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CONFIG_HOME", NODES_PATH_ENV, LOCAL_NODES_ENV, "VDGRAPH_ALLOW_OVERRIDE"):
        monkeypatch.delenv(name, raising=False)
    return home


def cli_env(home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("XDG_CONFIG_HOME", NODES_PATH_ENV, LOCAL_NODES_ENV, "VDGRAPH_ALLOW_OVERRIDE")}
    return {**env, "HOME": str(home), "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "nodes")]), **extra}


# -- where pack code comes from ----------------------------------------------------------------------------------

def test_custom_nodes_of_the_working_directory_load_only_after_opt_in(tmp_path, home, monkeypatch, capsys,
                                                                      core_only):
    project = tmp_path / "cloned"
    marker = tmp_path / "ran"
    write_pack(project / "custom_nodes", "evil", marker)
    flow = write_flow(project / "flow.json", shout_flow("evil"))
    monkeypatch.chdir(project)
    assert main(["validate", str(flow)]) == 1
    assert main(["nodes"]) == 0
    assert main(["nodes", "--json"]) == 0
    assert main(["run", str(flow), "--device", "cpu", "--output-dir", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert not marker.exists(), "a ./custom_nodes pack was imported without opt-in"
    assert "[node.unknown-type] unknown node type 'evil.shout'" in captured.out
    note = f"vdgraph: note: {project / 'custom_nodes'} was not loaded: node packs in the working directory run " \
           f"only with --local-nodes (or {LOCAL_NODES_ENV}=1)"
    assert captured.err.count(note) == 4
    assert main(["validate", str(flow), "--local-nodes"]) == 0
    assert marker.exists()
    assert "note:" not in capsys.readouterr().err


def test_custom_nodes_opt_in_through_the_environment(tmp_path, home, monkeypatch, core_only):
    marker = tmp_path / "ran"
    write_pack(tmp_path / "custom_nodes", "here", marker)
    monkeypatch.chdir(tmp_path)
    assert Registry.discover(entry_points=False).get("here.shout") is None
    monkeypatch.setenv(LOCAL_NODES_ENV, "1")
    assert Registry.discover(entry_points=False).get("here.shout") is not None and marker.exists()


def test_validate_in_a_cloned_folder_runs_none_of_its_code(tmp_path, home):
    """The attack, as a user meets it: a fresh `vdgraph validate` process in someone else's folder."""
    marker = tmp_path / "ran"
    write_pack(tmp_path / "custom_nodes", "evil", marker)
    flow = write_flow(tmp_path / "flow.json", shout_flow("evil"))
    result = subprocess.run([sys.executable, "-m", "vdgraph", "validate", str(flow)], cwd=tmp_path,
                            env=cli_env(home), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 1 and "unknown node type 'evil.shout'" in result.stdout
    assert "--local-nodes" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


def test_user_config_folder_is_a_configured_place(tmp_path, home, monkeypatch):
    marker = tmp_path / "ran"
    write_pack(home / ".config" / "vdgraph" / "custom_nodes", "mine", marker)
    registry = Registry.discover(entry_points=False, cwd=tmp_path)
    assert registry.get("mine.shout") is not None
    (status,) = registry.packs()
    assert status.source.origin == "user folder" and status.imported and status.node_ids == ("mine.shout",)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))  # XDG_CONFIG_HOME wins over ~/.config
    write_pack(tmp_path / "xdg" / "vdgraph" / "custom_nodes", "xdgpack", marker)
    assert [s.name for s in Registry.discover(entry_points=False, cwd=tmp_path).sources] == ["xdgpack"]


def test_nodes_says_which_packs_were_loaded_from_where(tmp_path, home, capsys, core_only):
    folder = tmp_path / "packs"
    pack_file = write_pack(folder, "loud", tmp_path / "ran")
    assert main(["nodes", "--nodes", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "packs (where node code is loaded from):" in out
    assert "  core  entry point vdgraph_core  [imported, " in out
    assert f"  loud  folder pack {pack_file} (from --nodes)  [imported, 1 node type(s)]" in out
    assert main(["nodes", "core.*", "--nodes", str(folder)]) == 0
    assert f"  loud  folder pack {pack_file} (from --nodes)  [not imported]" in capsys.readouterr().out
    assert main(["nodes", "--json", "--nodes", str(folder)]) == 0
    packs = {p["name"]: p for p in json.loads(capsys.readouterr().out)["packs"]}
    assert packs["core"] | {"node_ids": []} == {"name": "core", "kind": "entry-point", "target": "vdgraph_core",
                                                "origin": "", "imported": True, "node_ids": []}
    assert packs["loud"] == {"name": "loud", "kind": "folder", "target": str(pack_file), "origin": "--nodes",
                             "imported": True, "node_ids": ["loud.shout"]}


def test_a_configured_folder_that_does_not_exist_is_an_error(tmp_path, home, monkeypatch, capsys, core_only):
    flow = write_flow(tmp_path / "flow.json", CORE_FLOW)
    missing = tmp_path / "nonexistent"
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", str(flow), "--nodes", str(missing)])
    assert exit_info.value.code == 2
    assert f"node pack folder '{missing}' (from --nodes) does not exist" in capsys.readouterr().err
    monkeypatch.setenv(NODES_PATH_ENV, str(missing))
    with pytest.raises(SystemExit) as exit_info:
        main(["nodes"])
    assert exit_info.value.code == 2
    assert f"'{missing}' (from {NODES_PATH_ENV}) does not exist" in capsys.readouterr().err
    with pytest.raises(PackFolderNotFound, match="does not exist"):
        Registry.discover(folders=[str(missing)], env={}, entry_points=False)


# -- packs that misbehave at import ------------------------------------------------------------------------------

@pytest.mark.parametrize("call", ["sys.exit(0)", "os._exit(0)"])
def test_a_pack_that_exits_at_import_becomes_a_load_problem(tmp_path, home, call):
    """Run in a fresh process: an unguarded os._exit(0) would end the test runner with status 0."""
    folder = tmp_path / "packs"
    folder.mkdir()
    quitter = folder / "quitter.py"
    quitter.write_text(f"import os\nimport sys\n\n{call}\n")
    listing = subprocess.run([sys.executable, "-m", "vdgraph", "nodes", "quitter.*", "--nodes", str(folder)],
                             env=cli_env(home), capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert f"pack 'quitter' ({quitter}:4): error [pack.import-failed] the pack called {call}" in listing.stderr
    flow = write_flow(tmp_path / "flow.json", shout_flow("quitter"))
    result = subprocess.run([sys.executable, "-m", "vdgraph", "validate", str(flow), "--nodes", str(folder)],
                            env=cli_env(home), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "[node.pack-failed] node type 'quitter.shout' comes from pack 'quitter'" in result.stdout
    assert f"the pack called {call} " in result.stdout


def test_os_exit_is_restored_after_a_pack_import(tmp_path):
    real_exit = os._exit
    folder = tmp_path / "packs"
    folder.mkdir()
    (folder / "quitter.py").write_text("import sys\nsys.exit(3)\n")
    registry = Registry.discover(folders=[str(folder)], env={}, entry_points=False)
    assert registry.get("quitter.x") is None
    assert "sys.exit(3)" in registry.problems()[0].message
    assert os._exit is real_exit


def test_ctrl_c_during_a_pack_import_names_the_pack_and_file(tmp_path, home, capsys, core_only):
    folder = tmp_path / "packs"
    folder.mkdir()
    stuck = folder / "stuck.py"
    stuck.write_text("import time\n\nraise KeyboardInterrupt  # what Ctrl-C raises in a pack that hangs here\n")
    flow = write_flow(tmp_path / "flow.json", shout_flow("stuck"))
    assert main(["validate", str(flow), "--nodes", str(folder)]) == 130
    assert (f"vdgraph: interrupted while importing pack 'stuck' (folder pack {stuck}), at {stuck}:3"
            in capsys.readouterr().err)
    registry = Registry.discover(folders=[str(folder)], env={}, entry_points=False)
    with pytest.raises(KeyboardInterrupt) as interrupted:  # still a KeyboardInterrupt for callers
        registry.get("stuck.shout")
    assert isinstance(interrupted.value, PackImportInterrupted)


def test_interrupting_a_pack_that_hangs_at_import_says_which_pack(tmp_path, home):
    folder = tmp_path / "packs"
    folder.mkdir()
    started = tmp_path / "started"
    hang = folder / "hang.py"
    hang.write_text(f"import pathlib\nimport time\n\npathlib.Path({str(started)!r}).touch()\nwhile True:\n"
                    "    time.sleep(0.05)\n")
    flow = write_flow(tmp_path / "flow.json", shout_flow("hang"))
    # a shell's background job inherits SIGINT ignored, and Python then keeps ignoring it: restore the default
    process = subprocess.Popen([sys.executable, "-m", "vdgraph", "validate", str(flow), "--nodes", str(folder)],
                               env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert started.exists(), "the pack was never imported"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert f"vdgraph: interrupted while importing pack 'hang' (folder pack {hang}), at {hang}:" in err
    assert "Traceback" not in err


def test_validate_and_run_of_a_core_workflow_import_no_other_pack(tmp_path, home):
    """Lazy import: not the video or shapes packs, not a folder pack, even when a node id is mistyped."""
    folder = tmp_path / "packs"
    write_pack(folder, "other", tmp_path / "other-ran")
    write_pack(folder, "cores", tmp_path / "cores-ran")  # a name close to 'core'
    flow = write_flow(tmp_path / "flow.json", CORE_FLOW)
    typo = write_flow(tmp_path / "typo.json", {**CORE_FLOW, "nodes": {"g": {**CORE_FLOW["nodes"]["g"],
                                                                              "type": "core.int_mat"}}})
    script = textwrap.dedent(f"""
        import sys
        from vdgraph.cli import main
        codes = [main(["validate", {str(flow)!r}, "--nodes", {str(folder)!r}]),
                 main(["run", {str(flow)!r}, "--nodes", {str(folder)!r}, "--device", "cpu", "-q",
                       "--output-dir", {str(tmp_path / 'out')!r}]),
                 main(["validate", {str(typo)!r}, "--nodes", {str(folder)!r}])]
        packs = sorted({{m.split(".")[0] for m in sys.modules if m.startswith(("vdgraph_", "vdgraph_custom"))}})
        print("RESULT", codes, packs)
    """)
    result = subprocess.run([sys.executable, "-c", script], env=cli_env(home), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "did you mean 'core.int_math'" in result.stdout
    assert "RESULT [0, 0, 1] ['vdgraph_core']" in result.stdout
    assert not (tmp_path / "other-ran").exists() and not (tmp_path / "cores-ran").exists()


def test_a_mistyped_pack_name_suggests_from_the_close_pack_only(tmp_path):
    folder = tmp_path / "packs"
    write_pack(folder, "video", tmp_path / "video-ran")
    write_pack(folder, "other", tmp_path / "other-ran")
    registry = Registry.discover(folders=[str(folder)], env={}, entry_points=False)
    missing = registry.missing("vidoe.shout")
    assert missing.code == "node.unknown-type" and "did you mean 'video.shout'?" in missing.hint
    assert (tmp_path / "video-ran").exists() and not (tmp_path / "other-ran").exists()


# -- model folders are data, never code --------------------------------------------------------------------------

@pytest.fixture
def model_copy(tmp_path) -> Path:
    """The built-in model folder, copied to be edited."""
    return Path(shutil.copytree(BUILTIN_MODEL, tmp_path / "model"))


def edit_json(path: Path, **changes) -> None:
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config, indent=2))


def check(folder: Path):
    from vdgraph_video.loading import check_model_folder

    return check_model_folder(str(folder))


def test_the_builtin_model_folder_passes_the_checks(model_copy):
    configs = check(model_copy)
    assert configs["unet"]["_class_name"] == "UNet2DConditionModel" and "scheduler" in configs


@pytest.mark.parametrize("sub,name", [("tokenizer", "tokenizer_config.json"), ("text_encoder", "config.json"),
                                      ("unet", "config.json")])
def test_a_config_with_auto_map_is_refused(model_copy, tmp_path, sub, name):
    from vdgraph_video.loading import ModelFolderError

    (model_copy / sub / "custom.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('ran')\n")
    edit_json(model_copy / sub / name, auto_map={"AutoTokenizer": ["custom.EvilTokenizer", None]})
    with pytest.raises(ModelFolderError) as refused:
        check(model_copy)
    assert f"{model_copy / sub / name}: 'auto_map' names custom code" in str(refused.value)
    assert "never runs code from a model folder" in str(refused.value)
    assert not (tmp_path / "ran").exists()


def test_a_custom_tokenizer_class_is_refused(model_copy):
    from vdgraph_video.loading import ModelFolderError

    edit_json(model_copy / "tokenizer" / "tokenizer_config.json", tokenizer_class="EvilTokenizer")
    with pytest.raises(ModelFolderError, match=r"tokenizer_config.json: tokenizer_class 'EvilTokenizer' is not a "
                                               r"tokenizer class of transformers"):
        check(model_copy)
    edit_json(model_copy / "tokenizer" / "tokenizer_config.json", tokenizer_class="CLIPTokenizerFast")
    check(model_copy)  # transformers' own classes stay accepted


@pytest.mark.parametrize("sub", ["unet", "vae"])
def test_an_unsupported_class_name_is_refused(model_copy, sub):
    from vdgraph_video.loading import ModelFolderError

    edit_json(model_copy / sub / "config.json", _class_name="MyCustomModel")
    with pytest.raises(ModelFolderError, match=rf"{sub}/config.json: _class_name 'MyCustomModel' is not supported"):
        check(model_copy)


def test_pickle_only_weights_are_refused(model_copy):
    from vdgraph_video.loading import ModelFolderError

    weights = model_copy / "unet" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(ModelFolderError) as refused:
        check(model_copy)
    assert (f"{model_copy / 'unet'} has only pickle weights (diffusion_pytorch_model.bin); vdgraph loads weights "
            "only from .safetensors") in str(refused.value)


def test_a_malformed_component_config_names_the_file_and_the_json_error(model_copy):
    from vdgraph_video.loading import ModelFolderError

    (model_copy / "unet" / "config.json").write_text('{"_class_name": "UNet2DConditionModel",\n  "in_channels": }')
    with pytest.raises(ModelFolderError, match=rf"{model_copy / 'unet' / 'config.json'} is not valid JSON: "
                                               r"Expecting value at line 2, column 18"):
        check(model_copy)
    (model_copy / "unet" / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelFolderError, match="must hold a JSON object, not list"):
        check(model_copy)


def test_transformers_is_told_never_to_trust_remote_code(monkeypatch):
    import torch
    import transformers

    from vdgraph_video.loading import load_components

    seen = []
    for cls in (transformers.AutoTokenizer, transformers.CLIPTextModel):
        real = cls.from_pretrained.__func__

        def spy(klass, *args, _real=real, **kwargs):
            seen.append((klass.__name__, kwargs.get("trust_remote_code", "not passed")))
            return _real(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    load_components(str(BUILTIN_MODEL), torch.device("cpu"), torch.float32)
    assert sorted(seen) == [("AutoTokenizer", False), ("CLIPTextModel", False)]


def model_flow(folder: Path) -> Path:
    return write_flow(folder / "flow.json", {
        "vdgraph": 1, "inputs": {"model": {"type": "str", "default": "shapes-64"}},
        "nodes": {"m": {"type": "video.load_model", "in": {"model": "inputs.model"}}},
        "outputs": {"unet": "m.unet"}})


def test_a_model_with_custom_code_fails_the_run_without_asking(model_copy, tmp_path, home):
    """stdin is closed: transformers must not prompt "run the custom code? [y/N]", and nothing from the folder runs."""
    marker = tmp_path / "ran"
    (model_copy / "tokenizer" / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    edit_json(model_copy / "tokenizer" / "tokenizer_config.json", tokenizer_class="EvilTokenizer",
              auto_map={"AutoTokenizer": ["evil.EvilTokenizer", None]})
    flow = model_flow(tmp_path)
    result = subprocess.run([sys.executable, "-m", "vdgraph", "run", str(flow), "--set", f"model={model_copy}",
                             "--device", "cpu", "-q", "--output-dir", str(tmp_path / "out")],
                            env=cli_env(home), capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert f"{model_copy / 'tokenizer' / 'tokenizer_config.json'}: 'auto_map' names custom code" in result.stderr
    assert "Traceback" not in result.stderr and "[y/N]" not in result.stdout + result.stderr
    assert not marker.exists()


def test_an_empty_model_name_is_an_error_not_the_workflow_folder(tmp_path, home, capsys):
    # the workflow sits in a valid model folder: an empty name used to load that folder
    model_copy = Path(shutil.copytree(BUILTIN_MODEL, tmp_path / "model"))
    flow = model_flow(model_copy)
    assert main(["run", str(flow), "--set", "model=", "--device", "cpu", "-q",
                 "--output-dir", str(tmp_path / "out")]) == 1
    assert "m.model: error [node.check] the model name is empty" in capsys.readouterr().err  # found before running
    from vdgraph_video.loading import ModelNotFound, resolve_model

    with pytest.raises(ModelNotFound, match="the model input is empty"):
        with resolve_model("  ", (str(model_copy),)):
            pass
