"""One test per validation code, asserting its message; plus "every problem in one pass"."""

from __future__ import annotations

import json

import pytest
from conftest import workflow

from vdgraph.errors import Problem, WorkflowInvalid
from vdgraph.registry import Registry
from vdgraph.validate import check, validate
from vdgraph.workflow import load_workflow, parse_text


def problems_of(registry: Registry, doc: dict, inputs: dict | None = None, require_inputs: bool = False,
                ) -> list[Problem]:
    return validate(load_workflow(doc), registry, inputs, require_inputs)


def one(problems: list[Problem], code: str) -> Problem:
    found = [p for p in problems if p.code == code]
    assert len(found) == 1, f"expected one {code}, got {[str(p) for p in problems]}"
    return found[0]


def const(value: int = 1) -> dict:
    return {"type": "t.const", "params": {"value": value}}


def test_valid_workflow_has_no_problems(registry):
    doc = workflow({"a": const(2), "b": {"type": "t.add", "in": {"a": "a.value"}, "params": {"b": 3}}},
                   {"sum": "b.sum"})
    assert problems_of(registry, doc) == []


def test_json_malformed_gives_line_and_column():
    with pytest.raises(WorkflowInvalid) as info:
        parse_text('{\n  "vdgraph": 1,\n  "nodes": {,}\n}', "bad.json")
    problem = one(info.value.problems, "json.malformed")
    assert (problem.line, problem.column) == (3, 13)
    assert "malformed JSON" in problem.message and problem.file == "bad.json"


def test_format_version_lists_supported_versions():
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow({"vdgraph": 7, "nodes": {}, "outputs": {}})
    problem = one(info.value.problems, "format.version")
    assert "format version 7" in problem.message and "reads 1" in problem.message


def test_missing_format_version():
    with pytest.raises(WorkflowInvalid) as info:
        load_workflow({"nodes": {}})
    assert "has no format version" in one(info.value.problems, "format.version").message


def test_schema_invalid_per_node_with_location(registry):
    text = json.dumps(workflow({"a": {"params": {}}, "b": {"type": "t.const", "colour": "red"}, "c": const()},
                               {"x": "c.value"}), indent=2)
    problems = validate(parse_text(text, "w.json"), registry)
    schema = [p for p in problems if p.code == "schema.invalid"]
    assert {p.node for p in schema} == {"a", "b"}
    missing_type = next(p for p in schema if p.node == "a")
    assert "type: Field required" in missing_type.message and missing_type.line is not None
    assert "unknown key 'colour'" in next(p.message for p in schema if p.node == "b")


def test_reserved_node_id(registry):
    problems = problems_of(registry, workflow({"inputs": const()}, {"x": "inputs.value"}))
    assert "reserved" in next(p for p in problems if p.code == "schema.invalid").message


def test_unknown_node_types_all_reported_with_suggestions(registry):
    doc = workflow({"a": {"type": "t.cosnt"}, "b": {"type": "t.ad", "in": {"a": "a.value"}}}, {"x": "b.sum"})
    problems = problems_of(registry, doc)
    unknown = [p for p in problems if p.code == "node.unknown-type"]
    assert [p.node for p in unknown] == ["a", "b"]
    assert "unknown node type 't.cosnt'" in unknown[0].message and "'t.const'" in unknown[0].hint
    assert "'t.add'" in unknown[1].hint
    assert not [p for p in problems if p.code.startswith("link.")]  # no cascade from the unknown types


def test_port_unknown_suggests_close_name(registry):
    problem = one(problems_of(registry, workflow({"a": {"type": "t.const", "params": {"valeu": 1}}},
                                                 {"x": "a.value"})), "port.unknown")
    assert problem.port == "valeu" and "t.const has no input 'valeu'" in problem.message
    assert "did you mean 'value'" in problem.hint


def test_port_missing(registry):
    problem = one(problems_of(registry, workflow({"b": {"type": "t.add"}}, {"x": "b.sum"})), "port.missing")
    assert (problem.node, problem.port) == ("b", "a") and "required input 'a' (int) is not set" in problem.message


def test_port_both(registry):
    doc = workflow({"a": const(), "b": {"type": "t.add", "in": {"a": "a.value"}, "params": {"a": 1}}}, {"x": "b.sum"})
    problem = one(problems_of(registry, doc), "port.both")
    assert "both as a link (in) and as a literal (params)" in problem.message


@pytest.mark.parametrize("link", ["a", "a.", "a.value.more", 3])
def test_link_malformed(registry, link):
    doc = workflow({"a": const(), "b": {"type": "t.add", "in": {"a": link}}}, {"x": "b.sum"})
    problem = one(problems_of(registry, doc), "link.malformed")
    assert "is not a link" in problem.message
    assert ("params" in problem.hint) if link == 3 else ("<node id>.<output>" in problem.hint)


def test_link_unknown_node(registry):
    doc = workflow({"alpha": const(), "b": {"type": "t.add", "in": {"a": "alpah.value"}}}, {"x": "b.sum"})
    problem = one(problems_of(registry, doc), "link.unknown-node")
    assert "unknown node 'alpah'" in problem.message and "did you mean 'alpha'" in problem.hint


def test_link_unknown_output(registry):
    doc = workflow({"a": const(), "b": {"type": "t.add", "in": {"a": "a.val"}}}, {"x": "b.sum"})
    problem = one(problems_of(registry, doc), "link.unknown-output")
    assert "t.const has no output 'val'" in problem.message and "outputs of t.const: value" in problem.hint


def test_link_unknown_input(registry):
    doc = workflow({"b": {"type": "t.add", "in": {"a": "inputs.seed"}}}, {"x": "b.sum"},
                   inputs={"steps": {"type": "int", "default": 1}})
    problem = one(problems_of(registry, doc), "link.unknown-input")
    assert "'inputs.seed' names an undeclared workflow input" in problem.message and "steps" in problem.hint


def test_param_link_only(registry):
    doc = workflow({"m": {"type": "t.describe_model", "params": {"model": "sd15"}}}, {"x": "m.text"})
    problem = one(problems_of(registry, doc), "param.link-only")
    assert "can only be linked" in problem.message and "TestModel" in problem.hint


@pytest.mark.parametrize("value, words", [("false", "expected true or false, got str 'false'"),
                                          (1, "expected true or false, got int 1")])
def test_param_type_no_bool_surprises(registry, value, words):
    doc = workflow({"s": {"type": "t.scale", "params": {"x": 1.0, "flag": value}}}, {"y": "s.y"})
    problem = one(problems_of(registry, doc), "param.type")
    assert problem.port == "flag" and words in problem.message


def test_param_type_int(registry):
    problem = one(problems_of(registry, workflow({"a": {"type": "t.const", "params": {"value": 1.5}}},
                                                 {"x": "a.value"})), "param.type")
    assert "expected an integer, got 1.5" in problem.message


def test_param_range(registry):
    doc = workflow({"s": {"type": "t.scale", "params": {"x": 1.0, "factor": 11}}}, {"y": "s.y"})
    problem = one(problems_of(registry, doc), "param.range")
    assert "11.0 is out of range: must be <= 10.0" in problem.message and "ge 0.0, le 10.0" in problem.hint


def test_param_choice(registry):
    doc = workflow({"s": {"type": "t.scale", "params": {"x": 1.0, "mode": "pow"}}}, {"y": "s.y"})
    problem = one(problems_of(registry, doc), "param.choice")
    assert "'pow' is not one of 'mul', 'div'" in problem.message and "choose one of" in problem.hint


def test_link_type_mismatch_hints_a_converting_node(registry):
    doc = workflow({"s": {"type": "t.scale", "params": {"x": 1.5}}, "a": {"type": "t.add", "in": {"a": "s.y"}}},
                   {"x": "a.sum"})
    problem = one(problems_of(registry, doc), "link.type-mismatch")
    assert "'s.y' gives float, but input 'a' takes int" in problem.message
    assert "core.float_to_int" in problem.hint


def test_link_type_mismatch_without_converter_says_what_connects(registry):
    doc = workflow({"a": {"type": "t.tensor"}, "m": {"type": "t.describe_model", "in": {"model": "a.tensor"}}},
                   {"x": "m.text"})
    problem = one(problems_of(registry, doc), "link.type-mismatch")
    assert "'a.tensor' gives Tensor, but input 'model' takes TestModel" in problem.message
    assert problem.hint == "only TestModel values connect to it, and no installed node converts Tensor to it"


def test_int_output_links_to_float_input(registry):
    doc = workflow({"a": const(), "s": {"type": "t.scale", "in": {"x": "a.value"}}}, {"y": "s.y"})
    assert problems_of(registry, doc) == []


def test_graph_cycle_names_nodes_in_order(registry):
    doc = workflow({"a": {"type": "t.add", "in": {"a": "c.sum"}}, "b": {"type": "t.add", "in": {"a": "a.sum"}},
                    "c": {"type": "t.add", "in": {"a": "b.sum"}}}, {"x": "c.sum"})
    problem = one(problems_of(registry, doc), "graph.cycle")
    assert "a -> b -> c -> a" in problem.message


def test_output_dangling(registry):
    doc = workflow({"a": const()}, {"x": "a.value", "y": "b.value", "z": "a.nope"})
    problems = [p for p in problems_of(registry, doc) if p.code == "output.dangling"]
    assert [p.port for p in problems] == ["y", "z"]
    assert "unknown node 'b'" in problems[0].message and "has no output 'nope'" in problems[1].message


def test_output_none(registry):
    problem = one(problems_of(registry, workflow({"a": const()}, {})), "output.none")
    assert "declares no outputs" in problem.message


def test_unreachable_node_is_a_warning(registry):
    problems, plan = check(load_workflow(workflow({"a": const(), "lonely": const()}, {"x": "a.value"})), registry)
    problem = one(problems, "node.unreachable")
    assert problem.severity == "warning" and problem.node == "lonely" and plan is not None


def test_input_unknown(registry):
    doc = workflow({"a": const()}, {"x": "a.value"}, inputs={"seed": {"type": "int", "default": 0}})
    problem = one(problems_of(registry, doc, {"sede": 1}), "input.unknown")
    assert "undeclared workflow input 'sede'" in problem.message and "seed" in problem.hint


def test_input_type_of_value_and_declaration(registry):
    doc = workflow({"a": {"type": "t.const", "in": {"value": "inputs.seed"}}}, {"x": "a.value"},
                   inputs={"seed": {"type": "int", "default": 0}, "odd": {"type": "integer"}})
    problems = [p for p in problems_of(registry, doc, {"seed": "3"}) if p.code == "input.type"]
    assert "expected an integer, got str '3'" in problems[1].message
    assert "unknown type 'integer'" in problems[0].message


def test_input_missing_only_when_running(registry):
    doc = workflow({"a": {"type": "t.const", "in": {"value": "inputs.seed"}}}, {"x": "a.value"},
                   inputs={"seed": {"type": "int"}})
    assert problems_of(registry, doc) == []
    problem = one(problems_of(registry, doc, require_inputs=True), "input.missing")
    assert "'seed' has no default" in problem.message and "--set seed=" in problem.hint


def test_input_value_checked_against_port_constraints(registry):
    doc = workflow({"a": const(), "b": {"type": "t.add", "in": {"a": "a.value", "b": "inputs.shift"}}},
                   {"x": "b.sum"}, inputs={"shift": {"type": "int", "default": 0}})
    assert problems_of(registry, doc) == []
    problem = one(problems_of(registry, doc, {"shift": 500}), "param.range")
    assert problem.node == "b" and "workflow input 'shift' = 500 does not fit" in problem.message


def test_input_declared_choices_and_range(registry):
    doc = workflow({"s": {"type": "t.scale", "params": {"x": 1.0}, "in": {"mode": "inputs.mode"}}}, {"y": "s.y"},
                   inputs={"mode": {"type": "str", "default": "mul", "choices": ["mul", "div"]}})
    assert problems_of(registry, doc) == []
    assert "'add' is not one of" in one(problems_of(registry, doc, {"mode": "add"}), "param.choice").message


def test_every_problem_in_one_pass(registry):
    doc = workflow({
        "a": {"type": "t.nope"},
        "b": {"type": "t.add", "params": {"b": 1000, "zz": 1}},
        "c": {"type": "t.scale", "params": {"x": 1.0, "mode": "x", "flag": "false"}},
        "d": {"type": "t.add", "in": {"a": "ghost.value"}},
        "e": {"type": "t.describe_model", "params": {"model": 1}},
    }, {"out": "b.sum", "gone": "q.x"})
    codes = {p.code for p in problems_of(registry, doc)}
    assert {"node.unknown-type", "param.range", "port.unknown", "port.missing", "param.choice", "param.type",
            "link.unknown-node", "param.link-only", "output.dangling"} <= codes


def test_gathered_links_into_a_list_port(registry):
    doc = workflow({"a": const(1), "b": const(2), "t": {"type": "t.total", "in": {"items": ["a.value", "b.value"]}}},
                   {"x": "t.total"})
    assert problems_of(registry, doc) == []
    bad = workflow({"s": {"type": "t.scale", "params": {"x": 1.0}},
                    "t": {"type": "t.total", "in": {"items": ["s.y"]}}}, {"x": "t.total"})
    assert one(problems_of(registry, bad), "link.type-mismatch").port == "items"


def test_problem_text_is_readable(registry):
    text = json.dumps(workflow({"b": {"type": "t.add", "params": {"a": 1, "b": 500}}}, {"x": "b.sum"}), indent=1)
    problem = one(validate(parse_text(text, "flow.json"), registry), "param.range")
    assert str(problem).startswith(f"flow.json:{problem.line}:{problem.column}: b.b: error [param.range] ")
