"""Packs: discovery from folders and the environment, broken packs reported (not fatal), id clashes."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import Add, workflow

from vdgraph import Executor, NodeConflictError, Registry
from vdgraph.errors import PackFolderNotFound
from vdgraph.packs import NODES_PATH_ENV, PackSource
from vdgraph.validate import validate
from vdgraph.workflow import load_workflow

GOOD_PACK = '''
from vdgraph import Input, Node, Output


class Shout(Node):
    """Upper-cases text and adds exclamation marks."""

    id = "{pack}.shout"
    inputs = [Input("text", str), Input("marks", int, default=1, ge=0)]
    outputs = [Output("text", str)]

    def run(self, ctx, text, marks):
        return text.upper() + "!" * marks


NODES = [Shout]
'''


def write_pack(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def discover(*folders: Path, env: dict | None = None, **kwargs) -> Registry:
    return Registry.discover(folders=[str(f) for f in folders], env=env or {}, cwd=folders[0] if folders else None,
                             entry_points=False, **kwargs)


def test_folder_pack_loads_and_runs(tmp_path):
    write_pack(tmp_path / "packs", "loud", GOOD_PACK.format(pack="loud"))
    registry = discover(tmp_path / "packs")
    assert registry.ids() == ["loud.shout"] and registry.problems() == []
    doc = workflow({"s": {"type": "loud.shout", "params": {"text": "hi", "marks": 2}}}, {"s": "s.text"})
    assert Executor(registry, device="cpu").run(doc)["s"] == "HI!!"


def test_folder_pack_from_the_environment_and_as_a_package(tmp_path):
    package = tmp_path / "env_packs" / "pkgpack"
    package.mkdir(parents=True)
    (package / "ops.py").write_text("def shout(text):\n    return text.upper()\n")
    (package / "__init__.py").write_text(GOOD_PACK.format(pack="pkgpack").replace(
        "from vdgraph import", "from .ops import shout\nfrom vdgraph import"))
    registry = Registry.discover(env={NODES_PATH_ENV: str(tmp_path / "env_packs")}, cwd=tmp_path,
                                 entry_points=False)
    assert registry.get("pkgpack.shout") is not None


def test_custom_nodes_folder_of_the_working_directory_after_opt_in(tmp_path):
    write_pack(tmp_path / "custom_nodes", "here", GOOD_PACK.format(pack="here"))
    assert Registry.discover(env={}, cwd=tmp_path, entry_points=False, local=True).ids() == ["here.shout"]
    assert Registry.discover(env={}, cwd=tmp_path, entry_points=False).ids() == []  # not without it


def test_folder_packs_get_private_module_names(tmp_path):
    write_pack(tmp_path / "packs", "json", GOOD_PACK.format(pack="json"))
    registry = discover(tmp_path / "packs")
    module = sys.modules[registry.get("json.shout").__module__]
    assert module.__name__.startswith("vdgraph_custom.json_")
    import json

    assert json.dumps([1]) == "[1]"  # the standard library is not shadowed


def test_packs_are_imported_only_when_needed(tmp_path):
    write_pack(tmp_path / "packs", "wanted", GOOD_PACK.format(pack="wanted"))
    write_pack(tmp_path / "packs", "other", "raise RuntimeError('must not be imported')\n")
    registry = discover(tmp_path / "packs")
    assert registry.get("wanted.shout") is not None
    assert registry.problems(load_all=False) == []
    assert [p.code for p in registry.problems()] == ["pack.import-failed"]


def test_broken_packs_are_reported_not_fatal(tmp_path):
    folder = tmp_path / "packs"
    write_pack(folder, "good", GOOD_PACK.format(pack="good"))
    syntax = write_pack(folder, "syntax", "def broken(:\n    pass\n")
    missing = write_pack(folder, "missing", "import not_a_real_module_xyz\n")
    write_pack(folder, "nonodes", "X = 1\n")
    write_pack(folder, "wrongprefix", GOOD_PACK.format(pack="elsewhere"))
    registry = discover(folder)
    assert registry.ids() == ["good.shout"]
    problems = {p.pack: p for p in registry.problems()}
    assert problems["syntax"].code == "pack.import-failed" and problems["syntax"].file == str(syntax)
    assert problems["syntax"].line == 1 and "SyntaxError" in problems["syntax"].message
    assert problems["missing"].file == str(missing) and "No module named 'not_a_real_module_xyz'" in str(
        problems["missing"])
    assert problems["nonodes"].code == "pack.bad-nodes"
    assert problems["wrongprefix"].code == "pack.wrong-prefix" and "'wrongprefix.'" in problems["wrongprefix"].message


def test_validation_names_the_failed_pack(tmp_path):
    broken = write_pack(tmp_path / "packs", "broken", "import not_a_real_module_xyz\n")
    registry = discover(tmp_path / "packs")
    doc = workflow({"a": {"type": "broken.thing"}}, {"x": "a.out"})
    problem = next(p for p in validate(load_workflow(doc), registry) if p.node == "a")
    assert problem.code == "node.pack-failed"
    assert "pack 'broken', which failed to load" in problem.message and str(broken) in problem.message
    assert "No module named 'not_a_real_module_xyz'" in problem.message


def test_same_id_in_two_packs_is_an_error_naming_both(tmp_path):
    first = write_pack(tmp_path / "one", "dup", GOOD_PACK.format(pack="dup"))
    second = write_pack(tmp_path / "two", "dup", GOOD_PACK.format(pack="dup").replace('"!"', '"?"'))
    registry = discover(tmp_path / "one", tmp_path / "two")
    clash = next(p for p in registry.problems() if p.code == "pack.duplicate-id")
    assert str(first) in clash.message and str(second) in clash.message
    doc = workflow({"s": {"type": "dup.shout", "params": {"text": "x"}}}, {"s": "s.text"})
    problem = validate(load_workflow(doc), registry)[0]
    assert problem.code == "node.conflict" and "--allow-override" in problem.hint


def test_override_opt_in_lets_the_later_pack_win(tmp_path):
    write_pack(tmp_path / "one", "dup", GOOD_PACK.format(pack="dup"))
    write_pack(tmp_path / "two", "dup", GOOD_PACK.format(pack="dup").replace('"!"', '"?"'))
    registry = discover(tmp_path / "one", tmp_path / "two", env={"VDGRAPH_ALLOW_OVERRIDE": "1"})
    notes = registry.problems()
    assert [(p.code, p.severity) for p in notes] == [("pack.override", "note")]
    doc = workflow({"s": {"type": "dup.shout", "params": {"text": "x"}}}, {"s": "s.text"})
    assert Executor(registry, device="cpu").run(doc)["s"] == "X?"


def test_register_from_python_checks_prefix_and_clashes():
    registry = Registry()
    registry.register(Add)
    registry.register(Add)  # the same class again is harmless
    with pytest.raises(NodeConflictError, match="must start with the pack name: 'other.'"):
        registry.register(Add, pack="other")

    class OtherAdd(Add):
        """Another t.add."""

        id = "t.add"

    with pytest.raises(NodeConflictError, match="defined by both"):
        registry.register(OtherAdd)
    overriding = Registry(allow_override=True)
    overriding.register(Add)
    overriding.register(OtherAdd)
    assert overriding.get("t.add") is OtherAdd


def test_missing_configured_folder_is_an_error(tmp_path):
    with pytest.raises(PackFolderNotFound, match=f"'{tmp_path / 'nope'}' \\(from --nodes\\) does not exist"):
        discover(tmp_path / "nope")


def test_entry_point_packs_are_discovered():
    assert PackSource("core", "entry-point", "vdgraph_core") in Registry.discover(env={}).sources


def test_the_documented_custom_pack_works(tmp_path):
    """The pack in docs/engine.md, copied into ./custom_nodes, runs the documented workflow."""
    from conftest import REPO

    doc = (REPO / "docs" / "engine.md").read_text()
    section = doc[doc.index("## Writing a custom node pack"):]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    flow = section.split("```json\n", 1)[1].split("```", 1)[0]
    write_pack(tmp_path / "custom_nodes", "textfx", code)
    registry = Registry.discover(env={}, cwd=tmp_path, entry_points=False, local=True)  # as with --local-nodes
    assert Executor(registry, device="cpu").run(json.loads(flow))["shout"] == "HELLO!!!"


def test_a_declaration_error_names_the_packs_line_not_the_engines(tmp_path):
    """A bad port type is raised inside vdgraph's engine; the problem must point at the pack's declaring line."""
    source = ("from vdgraph.node import Input, Node\n\n\nclass Bad(Node):\n    id = 'bad.x'\n"
              "    inputs = [Input('a', 'nonsense-type')]\n\n    def run(self, ctx, a):\n        return {}\n")
    declared = write_pack(tmp_path / "packs", "bad", source)
    registry = discover(tmp_path / "packs")
    (problem,) = registry.problems()
    assert problem.code == "pack.import-failed" and "unsupported port type" in problem.message
    assert (problem.file, problem.line) == (str(declared), 6)
