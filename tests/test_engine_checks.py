"""Checks across values before anything runs: nodes' `check`/`infer`, the workflow's `checks`, and problems that
must be reported once (no cascades), with hints that name the fix."""

from __future__ import annotations

import pytest
from conftest import workflow

from vdgraph.errors import Problem
from vdgraph.expressions import ExpressionError, evaluate, expression_names
from vdgraph.node import Input, Invalid, Node, Output
from vdgraph.registry import Registry
from vdgraph.types import Opaque
from vdgraph.validate import validate
from vdgraph.workflow import load_workflow, parse_text

SCHEDULE = Opaque("TestSchedule", "a fake sampler schedule for check tests")


class Window(Node):
    """A step window: start < end; tells the window length downstream without running."""

    id = "c.window"
    inputs = [Input("start", int, default=0), Input("end", int, default=10)]
    outputs = [Output("length", int), Output("end", int)]

    @classmethod
    def check(cls, known):
        start, end = known.take("start", "end")
        if start is not None and not start < end:
            yield Invalid("start", f"start ({start}) must be smaller than end ({end})", "swap them")

    @classmethod
    def infer(cls, known):
        start, end = known.take("start", "end")
        return {} if start is None else {"length": end - start, "end": end}

    def run(self, ctx, start, end):
        return {"length": end - start, "end": end}


class Schedule(Node):
    """A fake schedule whose step count is known statically (a facts object on an opaque port)."""

    id = "c.schedule"
    inputs = [Input("steps", int, default=20, ge=1)]
    outputs = [Output("schedule", SCHEDULE)]

    @classmethod
    def infer(cls, known):
        (steps,) = known.take("steps")
        return {} if steps is None else {"schedule": {"steps": steps}}

    def run(self, ctx, steps):
        return list(range(steps))


class Sample(Node):
    """Runs `length` steps of a schedule; needs an rng when stochastic."""

    id = "c.sample"
    inputs = [Input("schedule", SCHEDULE), Input("length", int), Input("stochastic", bool, default=False),
              Input("rng", int, optional=True)]
    outputs = [Output("steps", int)]

    @classmethod
    def check(cls, known):
        schedule, length = known.take("schedule", "length")
        if schedule is not None and length > schedule["steps"]:
            yield Invalid("length", f"{length} steps do not fit a schedule of {schedule['steps']}")
        if known.get("stochastic") and "rng" in known and known["rng"] is None:
            yield Invalid("rng", "a stochastic sampler needs an rng", "link one", code="sample.no-rng")

    def run(self, ctx, schedule, length, stochastic, rng):
        return length


class Crashing(Node):
    """A node whose check has a bug."""

    id = "c.crashing"
    inputs = [Input("x", int, default=0)]
    outputs = [Output("x", int)]

    @classmethod
    def check(cls, known):
        raise KeyError("oops")

    def run(self, ctx, x):
        return x


@pytest.fixture
def checks_registry(registry: Registry) -> Registry:
    for cls in (Window, Schedule, Sample, Crashing):
        registry.register(cls)
    return registry


def problems(registry: Registry, doc: dict, inputs: dict | None = None) -> list[Problem]:
    return validate(load_workflow(doc), registry, inputs)


def codes(found: list[Problem]) -> list[str]:
    return [p.code for p in found]


def sampler(window: dict | None = None, schedule: dict | None = None, **sample_params) -> dict:
    return workflow({"w": {"type": "c.window", **(window or {})}, "s": {"type": "c.schedule", **(schedule or {})},
                     "x": {"type": "c.sample", "in": {"schedule": "s.schedule", "length": "w.length"},
                           "params": sample_params}},
                    {"steps": "x.steps"})


def test_node_check_on_literals_names_node_and_port(checks_registry):
    found = problems(checks_registry, sampler(window={"params": {"start": 5, "end": 5}}))
    assert codes(found) == ["node.check"]
    assert (found[0].node, found[0].port) == ("w", "start")
    assert found[0].message == "start (5) must be smaller than end (5)" and found[0].hint == "swap them"


def test_node_check_sees_workflow_input_values_and_says_which_input_sets_the_port(checks_registry):
    doc = sampler(window={"in": {"start": "inputs.first"}})
    doc["inputs"] = {"first": {"type": "int", "default": 0}}
    assert problems(checks_registry, doc) == []
    found = problems(checks_registry, doc, {"first": 12})
    assert codes(found) == ["node.check"]
    assert "workflow input 'first'" in found[0].hint
    text = parse_text(__import__("json").dumps(doc, indent=1), "w.json")
    located = validate(text, checks_registry, {"first": 12})[0]
    assert located.file == "w.json" and located.line is not None  # points at the input's declaration


def test_inferred_values_reach_downstream_checks_through_links_and_opaque_ports(checks_registry):
    found = problems(checks_registry, sampler(window={"params": {"start": 0, "end": 30}},
                                              schedule={"params": {"steps": 20}}))
    assert codes(found) == ["node.check"]
    assert (found[0].node, found[0].port, found[0].message) == ("x", "length", "30 steps do not fit a schedule of 20")


def test_a_failed_check_is_reported_once_not_again_downstream(checks_registry):
    # the window is wrong (start >= end gives a negative length); the sampler must not report it again
    found = problems(checks_registry, sampler(window={"params": {"start": 40, "end": 30}},
                                              schedule={"params": {"steps": 20}}))
    assert [(p.code, p.node) for p in found] == [("node.check", "w")]


def test_values_known_only_at_run_time_are_not_judged(checks_registry):
    doc = sampler()
    doc["nodes"]["x"]["in"]["rng"] = "w.end"  # linked: present at run time even if unknown now
    doc["nodes"]["x"]["params"] = {"stochastic": True}
    doc["nodes"]["w"] = {"type": "t.const"}  # no infer: nothing known downstream
    doc["nodes"]["x"]["in"]["length"] = "w.value"
    doc["nodes"]["x"]["in"]["rng"] = "w.value"
    assert problems(checks_registry, doc) == []


def test_an_unlinked_optional_port_is_known_to_be_none(checks_registry):
    found = problems(checks_registry, sampler(stochastic=True))
    assert [(p.code, p.port) for p in found] == [("sample.no-rng", "rng")]


def test_a_crashing_check_is_a_problem_not_a_traceback(checks_registry):
    doc = workflow({"c": {"type": "c.crashing"}}, {"x": "c.x"})
    found = problems(checks_registry, doc)
    assert codes(found) == ["node.check-crashed"]
    assert "c.crashing.check raised KeyError" in found[0].message


# -- the workflow's own checks ---------------------------------------------------------------------------------

def with_rule(rule: dict, **inputs: dict) -> dict:
    decl = {"t0": {"type": "int", "default": 8}, "t1": {"type": "int", "default": 10},
            "steps": {"type": "int", "default": 20}, **inputs}
    doc = workflow({"a": {"type": "t.const", "in": {"value": "inputs.t0"}}}, {"x": "a.value"}, decl)
    doc["checks"] = [rule]
    return doc


def test_workflow_check_holds_for_defaults_and_fails_for_a_run_value(registry):
    doc = with_rule({"require": "t0 < t1 < steps", "message": "t0 < t1 < steps", "hint": "lower t1"})
    assert problems(registry, doc) == []
    found = problems(registry, doc, {"steps": 6})
    assert codes(found) == ["input.check"]
    assert found[0].node == "inputs" and found[0].port == "t0"
    assert found[0].message == "t0 < t1 < steps: t0 < t1 < steps does not hold (t0 = 8, t1 = 10, steps = 6)"
    assert found[0].hint == "lower t1"


def test_workflow_check_with_unknown_values_waits_for_the_run(registry):
    doc = with_rule({"require": "x % 8 == 0"}, x={"type": "int"})
    assert problems(registry, doc) == []
    assert codes(problems(registry, doc, {"x": 12})) == ["input.check"]


@pytest.mark.parametrize("expression", ["__import__('os').system('true')", "t0.__class__", "lambda: 1",
                                        "[x for x in t0]", "open('f')", "t0 if t1 else steps", "t0 ** 999999",
                                        "", "1 +", "-" * 200 + "t0"])
def test_workflow_checks_are_data_never_code(registry, expression):
    found = problems(registry, with_rule({"require": expression}))
    assert codes(found) == ["check.malformed"], [str(p) for p in found]


def test_workflow_check_naming_an_undeclared_input(registry):
    found = problems(registry, with_rule({"require": "frames > 2"}))
    assert codes(found) == ["check.malformed"] and "undeclared inputs frames" in found[0].message


def test_workflow_check_entries_are_validated_like_the_rest(registry):
    doc = with_rule({"require": "t0 < t1", "because": "x"})
    assert [p.code for p in problems(registry, doc)] == ["schema.invalid"]


def test_expression_language():
    assert expression_names("min(a, b) < len(c) and d in (1, 2) and a > 0") == ("a", "b", "c", "d")
    assert evaluate("a % 8 == 0 and not b", {"a": 16, "b": False})
    assert not evaluate("a < b < c", {"a": 1, "b": 3, "c": 2})
    with pytest.raises(ExpressionError):
        evaluate("a / b > 1", {"a": 1, "b": 0})


# -- one problem, reported once, with the fix in the hint -----------------------------------------------------

def test_one_bad_output_link_does_not_warn_about_every_node_above_it(registry):
    nodes = {"a": {"type": "t.const"}}
    for i in range(1, 12):
        nodes[f"n{i}"] = {"type": "t.add", "in": {"a": f"{'a' if i == 1 else f'n{i - 1}'}.{'value' if i == 1 else 'sum'}"}}
    found = problems(registry, workflow(nodes, {"x": "n11.total"}))
    assert codes(found) == ["output.dangling"]


def test_a_bad_link_does_not_make_its_upstream_unreachable(registry):
    doc = workflow({"a": {"type": "t.tensor"}, "b": {"type": "t.add", "in": {"a": "a.tensor"}}}, {"x": "b.sum"})
    assert codes(problems(registry, doc)) == ["link.type-mismatch"]


def test_a_link_written_under_params_says_links_go_under_in(registry):
    doc = workflow({"a": {"type": "t.const"}, "b": {"type": "t.add", "params": {"a": "a.value"}}}, {"x": "b.sum"})
    (problem,) = [p for p in problems(registry, doc) if p.severity == "error"]
    assert problem.code == "param.type" and "links go under 'in'" in problem.hint


def test_type_mismatch_hints_a_converter_that_needs_more_inputs(registry):
    class Render(Node):
        """Turns a tensor into a model, given a size."""

        id = "t.render"
        inputs = [Input("size", int), Input("tensor", registry.get("t.tensor").outputs[0].type)]
        outputs = [Output("model", registry.get("t.describe_model").inputs[0].type)]

        def run(self, ctx, size, tensor):
            return None

    registry.register(Render)
    doc = workflow({"a": {"type": "t.tensor"}, "m": {"type": "t.describe_model", "in": {"model": "a.tensor"}}},
                   {"x": "m.text"})
    (problem,) = problems(registry, doc)
    assert "insert a 't.render' node" in problem.hint and "it also needs size" in problem.hint


def test_the_documented_check_example_works(tmp_path, registry):
    """The node of docs/engine.md's "Checks across inputs", imported from a file, reports and infers as documented."""
    import importlib.util

    from conftest import REPO

    doc = (REPO / "docs" / "engine.md").read_text()
    section = doc[doc.index("### Checks across inputs"):]
    (tmp_path / "window_pack.py").write_text(section.split("```python\n", 1)[1].split("```", 1)[0])
    spec = importlib.util.spec_from_file_location("window_pack", tmp_path / "window_pack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    registry.register(module.Window, pack="textfx")
    doc = workflow({"w": {"type": "textfx.window", "params": {"start": 4, "end": 2}}}, {"n": "w.length"})
    (problem,) = problems(registry, doc)
    assert (problem.node, problem.port, problem.hint) == ("w", "start", "swap them")
    doc["nodes"]["w"]["params"]["start"] = 1
    assert problems(registry, doc) == []
    assert module.Window.infer(__import__("vdgraph").Known({"start": 1, "end": 4})) == {"length": 3}
