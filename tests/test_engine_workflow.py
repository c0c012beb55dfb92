"""Workflow files: loading through fsspec, structural problems, typed --set overrides."""

from __future__ import annotations

import json

import fsspec
import pytest
from conftest import workflow

from vdgraph import Executor, WorkflowInvalid, WorkflowNotFound, load_workflow
from vdgraph.workflow import parse_assignment, parse_override, parse_text

DOC = workflow({"a": {"type": "t.const", "in": {"value": "inputs.n"}}}, {"a": "a.value"},
               inputs={"n": {"type": "int", "default": 2}, "on": {"type": "bool", "default": False},
                       "x": {"type": "float", "default": 0.5}, "sizes": {"type": "list[int]", "default": []},
                       "name": {"type": "str", "default": ""}})


def test_load_from_a_local_path_and_an_fsspec_url(tmp_path, registry):
    path = tmp_path / "w.json"
    path.write_text(json.dumps(DOC))
    assert load_workflow(str(path)).source == str(path)
    with fsspec.open("memory://flows/w.json", "w") as handle:
        handle.write(json.dumps(DOC))
    loaded = load_workflow("memory://flows/w.json")
    assert loaded.directory == "memory://flows"
    assert Executor(registry, device="cpu").run(loaded)["a"] == 2


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(WorkflowNotFound, match="cannot read workflow"):
        load_workflow(str(tmp_path / "absent.json"))


def test_top_level_must_be_an_object():
    with pytest.raises(WorkflowInvalid, match="must be a JSON object"):
        parse_text("[1, 2]")


def test_structural_problems_are_collected_not_raised():
    loaded = load_workflow({"vdgraph": 1, "nodes": [], "outputs": "a.b", "colour": 1, "name": 3})
    messages = [p.message for p in loaded.load_problems]
    assert len(messages) == 4
    assert any("'nodes' must be an object" in m for m in messages)
    assert any("unknown top-level key 'colour'" in m for m in messages)


@pytest.mark.parametrize("name, text, value", [
    ("n", " 42", 42), ("x", "1e-3", 0.001), ("name", "a=b", "a=b"), ("sizes", "[1, 2]", [1, 2]),
    ("on", "TRUE", True), ("on", "off", False), ("on", "0", False), ("on", "Yes", True),
])
def test_set_parses_by_declared_type(name, text, value):
    parsed, problem = parse_override(load_workflow(DOC), name, text)
    assert problem is None and parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("name, text, words", [
    ("on", "false-ish", "expected true/false"), ("n", "2.5", "expected an integer"), ("x", "nan", "finite"),
    ("sizes", "[1, 'a']", "expected a JSON list"), ("sizes", '[1, "a"]', "item 1"),
])
def test_set_rejects_bad_values(name, text, words):
    _, problem = parse_override(load_workflow(DOC), name, text)
    assert problem.code == "input.type" and words in problem.message


def test_set_unknown_name_lists_declared_inputs():
    _, problem = parse_override(load_workflow(DOC), "m", "1")
    assert problem.code == "input.unknown" and problem.hint == "declared inputs: n, on, x, sizes, name"


def test_assignment_syntax():
    assert parse_assignment("a=b=c") == ("a", "b=c")
    with pytest.raises(ValueError, match="name=value"):
        parse_assignment("novalue")


def test_display_name_falls_back_to_the_file_stem(tmp_path):
    path = tmp_path / "my-flow.json"
    path.write_text(json.dumps({**DOC, "name": ""}))
    assert load_workflow(str(path)).display_name == "my-flow"


def test_schema_reference_key_is_allowed():
    assert load_workflow({**DOC, "$schema": "./vdgraph.schema.json"}).load_problems == []
