"""Hostile and malformed input (issue 8): every attack ends in a clear problem or error, never a traceback, a
hang or a crash in the middle of a run.

Loading: deep nesting, duplicate keys, lone surrogates, huge integers, deeply nested list types. Graphs thousands
of nodes deep. Values in messages are cut. `--set` numbers are ASCII digits only. Seeds declare their range. The
executor: node exceptions whose __str__ raises, outputs that are NaN / Inf / huge, re-entrant runs, argument types.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

import pytest
import torch
from conftest import REPO, workflow

import vdgraph
import vdgraph_core
from vdgraph import Executor, Input, Node, NodeRunError, Output, Registry, WorkflowInvalid, load_workflow
from vdgraph.cli import main
from vdgraph.display import describe_value, value_json
from vdgraph.errors import ReentrantRun, VdgraphError, describe_exception, short_repr
from vdgraph.keys import digest
from vdgraph.types import ANY, INT, STR, parse_type_name
from vdgraph.workflow import MAX_JSON_DEPTH, parse_override, parse_text

HELLO = REPO / "workflows" / "hello.json"
HELLO_TEXT = HELLO.read_text()
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))


def codes(problems: list) -> list[str]:
    return [p.code for p in problems]


def load_problems(text: str) -> list:
    """The problems of workflow text: the fatal ones raised while reading, else those validation finds."""
    try:
        loaded = parse_text(text, "w.json")
    except WorkflowInvalid as exc:
        return exc.problems
    registry = Registry()
    for cls in vdgraph_core.NODES:
        registry.register(cls, pack="core")
    return vdgraph.validate(loaded, registry=registry)


def cli(capsys, *args: str) -> tuple[int, str]:
    """`vdgraph ...` in this process: (exit code, stdout + stderr)."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


# -- loading: nesting --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 990, 100_000])
def test_deep_json_is_a_located_problem_not_a_recursion_error(depth):
    text = '{"vdgraph": 1,\n "name": ' + "[" * depth + "]" * depth + "}"
    with pytest.raises(WorkflowInvalid) as caught:
        parse_text(text, "deep.json")
    (problem,) = caught.value.problems
    assert problem.code == "json.too-deep" and problem.file == "deep.json"
    assert (problem.line, problem.column) == (2, 10 + MAX_JSON_DEPTH - 1)  # the bracket that opens level 101


def test_nesting_up_to_the_limit_is_read():
    inner = MAX_JSON_DEPTH - 1  # the top-level object is level 1
    text = '{"vdgraph": 1, "name": ' + "[" * inner + "]" * inner + "}"
    assert "json.too-deep" not in codes(load_problems(text))


def test_brackets_inside_strings_do_not_count_as_nesting():
    text = HELLO_TEXT.replace('"world"', json.dumps("[" * 5000 + "{" * 5000))
    assert codes(load_problems(text)) == []


def test_a_deep_dict_from_python_is_a_problem_too():
    value: list = []
    for _ in range(100_000):
        value = [value]
    doc = workflow({"a": {"type": "t.const", "params": {"value": value}}}, {"a": "a.value"})
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflow(doc)
    assert codes(caught.value.problems) == ["json.too-deep"]
    assert caught.value.problems[0].node == "a" and caught.value.problems[0].port == "value"


def test_a_deep_list_from_python_inputs_is_a_short_type_problem(registry):
    value: list = []
    for _ in range(100_000):
        value = [value]
    doc = workflow({"a": {"type": "t.total", "in": {"items": "inputs.xs"}}}, {"a": "a.total"},
                   inputs={"xs": {"type": "list[int]", "default": []}})
    problems = Executor(registry, device="cpu").validate(doc, {"xs": value})
    assert codes(problems) == ["input.type"] and len(problems[0].message) < 200


@pytest.mark.parametrize("depth", [500, 9])
def test_deeply_nested_list_types_are_a_problem(depth):
    name = "list[" * depth + "int" + "]" * depth
    text = HELLO_TEXT.replace('"type": "str", "default": "world"', json.dumps({"type": name})[1:-1])
    (problem,) = load_problems(text)
    assert problem.code == "input.type" and problem.port == "name" and problem.line == 6
    assert "nests lists deeper than 8 levels" in problem.message and len(problem.message) < 200


def test_list_types_up_to_the_limit_parse():
    ptype = parse_type_name("list[" * 8 + "int" + "]" * 8)
    assert ptype is not None and ptype.name == "list[" * 8 + "int" + "]" * 8


# -- loading: duplicate keys -------------------------------------------------------------------------------------

def test_duplicate_top_level_key_names_the_key_and_both_lines():
    text = HELLO_TEXT.replace('  "outputs":', '  "nodes": {},\n  "outputs":')
    problems = load_problems(text)
    duplicate = problems[0]
    assert duplicate.code == "json.duplicate-key" and duplicate.severity == "error"
    assert "'nodes'" in duplicate.message and "lines 10 and 20" in duplicate.message
    assert (duplicate.line, duplicate.column) == (20, 3)


def test_duplicate_key_inside_a_node_is_reported_with_the_other_problems():
    text = HELLO_TEXT.replace('"params": {"op": "mul"}', '"params": {"op": "mul",\n "op": "add"}')
    text = text.replace('"default": 64', '"default": "wide"')
    found = codes(load_problems(text))
    assert "json.duplicate-key" in found and "input.type" in found


def test_the_same_key_in_different_objects_is_fine():
    assert codes(load_problems(HELLO_TEXT)) == []  # "type" and "default" appear in many objects


# -- loading: lone surrogates ------------------------------------------------------------------------------------

@pytest.mark.parametrize("old, new, line", [
    ('"world"', '"\\ud800"', 6),                   # a value
    ('"pixels": {', '"pix\\udc00els": {', 10),     # a key
    ('"Hello, $a!', '"Hello \\udbff $a!', 16),     # inside a longer string
])
def test_lone_surrogate_in_the_file_is_a_located_problem(old, new, line):
    (problem,) = load_problems(HELLO_TEXT.replace(old, new, 1))
    assert problem.code == "json.invalid-text" and problem.line == line
    assert "lone surrogate" in problem.message
    str(problem).encode("utf-8")  # printable: the surrogate is shown escaped


def test_a_surrogate_pair_is_fine():
    assert codes(load_problems(HELLO_TEXT.replace('"world"', '"\\ud83d\\ude00"'))) == []


def test_raw_surrogate_in_text_from_python():
    (problem,) = load_problems(HELLO_TEXT.replace("world", "wo\ud800rld"))
    assert problem.code == "json.invalid-text"


def test_lone_surrogate_from_python_inputs_or_set_is_a_problem_not_a_key_crash(registry):
    doc = json.loads(HELLO_TEXT)
    executor = Executor(registry, device="cpu")
    (problem,) = executor.validate(doc, {"name": "\udcff"})
    assert problem.code == "input.type" and "lone surrogate" in problem.message
    value, problem = parse_override(load_workflow(doc), "name", "caf\udce9")  # argv bytes that are not UTF-8
    assert problem is None and codes(executor.validate(doc, {"name": value})) == ["input.type"]


@pytest.mark.parametrize("text", ["", "plain", "caf\u00e9", "\U0001f600", "\u202eRTL", "a\x00b", "e\u0301",
                                  "\ud83d\ude00".encode("utf-16", "surrogatepass").decode("utf-16")])
def test_every_string_validation_accepts_gives_a_cache_key(registry, text):
    assert STR.check_literal(text)[0]
    result = Executor(registry, device="cpu").run(json.loads(HELLO_TEXT), {"name": text}, outputs="greeting")
    assert result["greeting"].startswith(f"Hello, {text}!")
    assert len(digest({"name": text})) == 64


# -- loading and inputs: huge integers ---------------------------------------------------------------------------

@pytest.mark.parametrize("digits", [30, 4_000, 5_000])
def test_huge_integer_literal_is_a_short_located_problem(digits):
    text = HELLO_TEXT.replace('"default": 64', '"default": ' + "9" * digits)
    (problem,) = load_problems(text)
    assert problem.code == "json.int-range" and (problem.line, problem.column) == (7, 30)
    assert (problem.node, problem.port) == ("inputs", "width")
    assert len(str(problem)) < 400 and f"({digits:,} digits)" in problem.message


def test_huge_integer_in_params_names_node_and_port():
    text = HELLO_TEXT.replace('"params": {"op": "mul"}', '"params": {"op": "mul", "b": -' + "1" * 4_000 + "}")
    (problem,) = load_problems(text)
    assert (problem.code, problem.node, problem.port, problem.line) == ("json.int-range", "pixels", "b", 11)


def test_64_bit_integers_are_accepted():
    assert INT.check_literal(2**64 - 1)[0] and INT.check_literal(-(2**63))[0]
    assert not INT.check_literal(2**64)[0] and not INT.check_literal(-(2**63) - 1)[0]
    assert not INT.check_literal(1e300)[0]  # an integral float, but far outside 64 bits


def test_python_api_huge_integer_input_is_a_problem(registry):
    with pytest.raises(WorkflowInvalid) as caught:
        Executor(registry, device="cpu").run(json.loads(HELLO_TEXT), inputs={"width": 10**5000})
    (problem,) = caught.value.problems
    assert problem.code == "input.type" and problem.port == "width"
    assert "about 5,001 digits" in problem.message and len(str(problem)) < 300


def test_huge_integer_for_a_float_port_is_a_problem_not_an_overflow(registry):
    doc = workflow({"s": {"type": "t.scale", "in": {"x": "inputs.x"}}}, {"y": "s.y"},
                   inputs={"x": {"type": "float", "default": 1.0}})
    (problem,) = Executor(registry, device="cpu").validate(doc, {"x": 10**400})
    assert problem.code == "input.type" and "finite" in problem.message


def test_huge_bounds_in_an_input_declaration_are_a_problem():
    doc = json.loads(HELLO_TEXT)
    doc["inputs"]["width"]["max"] = 1e309  # JSON reads it as inf
    assert codes(vdgraph.validate(doc, registry=_core_registry())) == ["input.type"]


def _core_registry() -> Registry:
    registry = Registry()
    for cls in vdgraph_core.NODES:
        registry.register(cls, pack="core")
    return registry


# -- values in messages ------------------------------------------------------------------------------------------

def test_short_repr_is_safe_and_short_on_any_value():
    nested: list = []
    for _ in range(50_000):
        nested = [nested]

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    shown = {
        "int": short_repr(10**5000), "digits": short_repr(10**4000), "str": short_repr("x" * 10**6),
        "list": short_repr(nested), "wide": short_repr(list(range(10**5))), "broken": short_repr(Broken()),
    }
    assert all(len(text) < 120 for text in shown.values()), shown
    assert shown["int"] == "<an integer of about 5,001 digits>"
    assert shown["digits"].endswith("(4,001 digits)") and shown["str"].endswith("(1,000,000 characters)")
    assert shown["broken"] == "<Broken object>" and short_repr((1,)) == "(1,)" and short_repr("ab") == "'ab'"


@pytest.mark.parametrize("edit", [
    lambda d: d["nodes"]["pixels"]["params"].update(op="m" * 100_000),                      # a choice
    lambda d: d["nodes"]["pixels"]["in"].update(a="x" * 100_000 + ".result"),             # a link
    lambda d: d["nodes"]["pixels"]["in"].update(a=["y" * 100_000]),                        # not a link
    lambda d: d["outputs"].update(extra="z" * 100_000),                                    # an output
    lambda d: d["inputs"]["width"].update(type="t" * 100_000),                             # a type name
    lambda d: d["inputs"]["name"].update(default=["w"] * 100_000),                         # a default
    lambda d: d["inputs"].update({"i" * 100_000: {"type": "nope"}}),                       # an input name
    lambda d: d["nodes"]["pixels"]["params"].update({"p" * 100_000: 1}),                   # a port name
    lambda d: d["nodes"]["pixels"].update(type="t" * 100_000),                             # a node type
    lambda d: d["nodes"].update({"n" * 100_000: {"type": "core.math"}}),                   # a node id
])
def test_long_values_are_cut_in_messages(edit):
    doc = json.loads(HELLO_TEXT)
    edit(doc)
    problems = vdgraph.validate(doc, registry=_core_registry())
    assert problems and all(len(str(p)) < 600 for p in problems), [str(p)[:300] for p in problems]


def test_display_never_fails_on_a_value():
    assert describe_value(10**5000) == "<an integer of about 5,001 digits>"
    assert len(describe_value(list(range(10**5)))) < 250
    assert value_json({"a": [1.5, "x"]}) == {"a": [1.5, "x"]}


# -- --set numbers -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["4_0", "\u0664\u0660", "\uff14\uff10", "40.0", "0x28", "4e1", "", " ", "--4",
                                  "1" * 5_000])
def test_set_rejects_what_is_not_ascii_integer_text(text):
    value, problem = parse_override(load_workflow(json.loads(HELLO_TEXT)), "width", text)
    assert value is None and problem.code == "input.type" and len(problem.message) < 250


@pytest.mark.parametrize("text, value", [("40", 40), (" +40 ", 40), ("-3", -3), ("007", 7)])
def test_set_accepts_ascii_integers(text, value):
    assert parse_override(load_workflow(json.loads(HELLO_TEXT)), "width", text) == (value, None)


FLOATS = load_workflow(workflow({}, {}, inputs={"x": {"type": "float", "default": 0.5},
                                                "xs": {"type": "list[str]", "default": []}}))


@pytest.mark.parametrize("text", ["1_000.5", "\u0661\u066b\u0665", "\u0661.5", "0x1p3", "1e", ".", "1" * 400 + "e999"])
def test_set_rejects_what_is_not_a_plain_float(text):
    value, problem = parse_override(FLOATS, "x", text)
    assert value is None and problem.code == "input.type"


@pytest.mark.parametrize("text, value", [("0.5", 0.5), ("-.5", -0.5), ("1e-3", 0.001), ("2", 2.0), ("3.", 3.0)])
def test_set_accepts_plain_floats(text, value):
    assert parse_override(FLOATS, "x", text) == (value, None)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "[" + "9" * 5_000 + "]", '["\\ud800"]'])
def test_set_json_lists_have_the_file_limits(text):
    value, problem = parse_override(FLOATS, "xs", text)
    assert value is None and problem.code == "input.type" and len(problem.message) < 250


# -- seeds declare their range -----------------------------------------------------------------------------------

SEEDED = [path for path in WORKFLOWS if "seed" in json.loads(path.read_text()).get("inputs", {})]


@pytest.mark.parametrize("path", SEEDED, ids=lambda p: p.name)
def test_shipped_seed_inputs_declare_the_range_torch_takes(path, capsys):
    seed = json.loads(path.read_text())["inputs"]["seed"]
    assert (seed["min"], seed["max"]) == (0, 2**64 - 1)
    torch.Generator().manual_seed(seed["max"])  # the top of the range is a seed torch takes
    code, out = cli(capsys, "validate", str(path), "--set", f"seed={2**64}")
    assert code == 1 and "inputs.seed: error" in out and "Traceback" not in out


def test_every_seed_port_declares_its_range():
    import vdgraph_shapes.nodes
    import vdgraph_video
    from vdgraph_core.randomness import RandomSeed

    for cls in [*vdgraph_core.NODES, *vdgraph_video.NODES, *vdgraph_shapes.nodes.NODES]:
        for port in cls.inputs:
            if "seed" in port.name:
                assert (port.ge, port.le) == (0, 2**64 - 1), f"{cls.id}.{port.name}"
    assert RandomSeed.input_map["high"].le == 2**64  # draws stay within [0, 2**64)


def test_a_seed_of_2_to_the_64_fails_validation_not_the_run():
    import vdgraph_shapes.nodes
    import vdgraph_video

    registry = Registry()
    for cls in vdgraph_video.NODES:
        registry.register(cls, pack="video")
    for cls in vdgraph_shapes.nodes.NODES:  # text2video_zero.json's background smoothing can use the shapes judge
        registry.register(cls, pack="shapes")
    doc = json.loads((REPO / "workflows" / "text2video_zero.json").read_text())
    found = vdgraph.validate(doc, inputs={"seed": 2**64}, registry=registry)
    assert [(p.code, p.node, p.port) for p in found] == [("input.type", "inputs", "seed")]
    doc["nodes"]["noise"]["in"].pop("seed")
    doc["nodes"]["noise"]["params"] = {**doc["nodes"]["noise"].get("params", {}), "seed": 2**64}
    found = vdgraph.validate(doc, registry=registry)
    assert [(p.code, p.node, p.port) for p in found] == [("json.int-range", "noise", "seed")]


# -- graphs thousands of nodes deep ------------------------------------------------------------------------------

def _chain(length: int) -> dict:
    nodes = {"n0": {"type": "core.int_math", "params": {"a": 0, "b": 1}}}
    for i in range(1, length):
        nodes[f"n{i}"] = {"type": "core.int_math", "in": {"a": f"n{i - 1}.result"}, "params": {"b": 1}}
    return workflow(nodes, {"last": f"n{length - 1}.result"})


def test_a_chain_of_5000_nodes_validates_and_runs(registry):
    doc = _chain(5_000)
    executor = Executor(registry, device="cpu")
    assert executor.validate(doc) == []
    assert executor.run(doc, explain=True)["last"] == 5_000
    again = executor.run(doc)
    assert again.ran == [] and again["last"] == 5_000


def test_a_cycle_of_5000_nodes_is_one_problem(registry):
    doc = _chain(5_000)
    doc["nodes"]["n0"] = {"type": "core.int_math", "in": {"a": "n4999.result"}, "params": {"b": 1}}
    assert codes(Executor(registry, device="cpu").validate(doc)) == ["graph.cycle"]


def test_a_chain_of_5000_nodes_through_the_cli(tmp_path, capsys, core_only):
    path = tmp_path / "chain.json"
    path.write_text(json.dumps(_chain(5_000)))
    assert cli(capsys, "validate", str(path))[0] == 0
    code, out = cli(capsys, "run", str(path), "--output-dir", str(tmp_path), "--cache", str(tmp_path / "c"),
                    "--explain", "--quiet", "--json")
    assert code == 0 and json.loads(out)["outputs"]["last"] == 5_000
    assert cli(capsys, "graph", str(path))[0] == 0


# -- the executor: exceptions and outputs ------------------------------------------------------------------------

class BrokenMessage(Exception):
    def __str__(self) -> str:
        raise RuntimeError("the message itself fails")


class RaiseBroken(Node):
    """Raises an exception whose __str__ raises."""

    id = "h.raise_broken"
    inputs = [Input("x", int, default=0)]
    outputs = [Output("x", int)]

    def run(self, ctx, x):
        raise BrokenMessage("detail", 42)


@dataclasses.dataclass(frozen=True)
class Pair:
    cond: Any
    uncond: Any


class Emit(Node):
    """Returns the value picked by `what`: the hostile outputs the executor must refuse, and fine ones."""

    id = "h.emit"
    inputs = [Input("what", str)]
    outputs = [Output("value", ANY)]

    def run(self, ctx, what):
        nan = torch.tensor([1.0, float("nan")])
        return {
            "huge": lambda: 10**5000, "inf": lambda: float("inf"), "nan": lambda: float("nan"),
            "nan_tensor": lambda: nan, "inf_half": lambda: torch.full((2,), float("inf"), dtype=torch.float16),
            "nan_in_list": lambda: [torch.zeros(2), nan], "nan_in_dict": lambda: {"a": {"b": nan}},
            "nan_in_dataclass": lambda: Pair(torch.zeros(1), nan), "huge_in_list": lambda: [1, 2**70],
            "surrogate": lambda: "a\ud800",
            # fine: integer tensors, empty tensors, a scheduler-like config holding -inf, a model
            "int_tensor": lambda: torch.arange(3), "empty": lambda: torch.empty(0),
            "config": lambda: {"lambda_min_clipped": float("-inf")}, "model": lambda: _nan_model(),
            "finite": lambda: [torch.ones(2), 1.5, 2**63],
        }[what]()


def _nan_model() -> torch.nn.Module:
    model = torch.nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    return model


@pytest.fixture
def hostile_registry(registry) -> Registry:
    for cls in (RaiseBroken, Emit):
        registry.register(cls, pack="h")
    return registry


def test_an_exception_whose_str_raises_still_gives_a_message(hostile_registry):
    doc = workflow({"a": {"type": "h.raise_broken"}}, {"x": "a.x"})
    with pytest.raises(NodeRunError) as caught:
        Executor(hostile_registry, device="cpu").run(doc)
    message = str(caught.value)
    assert "node 'a' (h.raise_broken) failed: BrokenMessage:" in message and "('detail', 42)" in message
    assert isinstance(caught.value.__cause__, BrokenMessage)
    assert describe_exception(ValueError("x" * 10**6)).endswith("(1,000,000 characters)")


@pytest.mark.parametrize("what, words", [
    ("huge", "does not fit in 64 bits"), ("inf", "not finite"), ("nan", "not finite"),
    ("nan_tensor", "tensor (2,) float32 holds NaN or Inf"), ("inf_half", "float16 holds NaN or Inf"),
    ("nan_in_list", "item 1: the tensor"), ("nan_in_dict", "key 'a': key 'b': the tensor"),
    ("nan_in_dataclass", "field 'uncond': the tensor"), ("huge_in_list", "item 1: the integer"),
    ("surrogate", "lone surrogate"),
])
def test_unrepresentable_outputs_fail_their_node(hostile_registry, what, words):
    doc = workflow({"e": {"type": "h.emit", "params": {"what": what}}}, {"v": "e.value"})
    executor = Executor(hostile_registry, device="cpu")
    events: list = []
    with pytest.raises(NodeRunError) as caught:
        executor.run(doc, on_event=events.append)
    assert caught.value.node_id == "e" and "output 'value'" in str(caught.value) and words in str(caught.value)
    assert len(str(caught.value)) < 400 and any(e.kind == "node_error" for e in events)
    assert len(executor.cache) == 0  # nothing half-valid is cached


@pytest.mark.parametrize("what", ["int_tensor", "empty", "config", "model", "finite"])
def test_representable_outputs_pass(hostile_registry, what):
    doc = workflow({"e": {"type": "h.emit", "params": {"what": what}}}, {"v": "e.value"})
    Executor(hostile_registry, device="cpu").run(doc)


NAN_PACK = '''
import torch

from vdgraph import Input, Node, Output
from vdgraph.types import TENSOR


class Diverge(Node):
    """A tensor of Inf (a stand-in for a model that diverged)."""

    id = "nanpack.diverge"
    inputs = [Input("size", int, default=2)]
    outputs = [Output("tensor", TENSOR)]

    def run(self, ctx, size):
        return torch.ones(size) / torch.zeros(size)


NODES = [Diverge]
'''


def test_nan_output_through_the_cli_is_a_message(tmp_path, capsys, core_only):
    (tmp_path / "packs").mkdir()
    (tmp_path / "packs" / "nanpack.py").write_text(NAN_PACK)
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(workflow({"t": {"type": "nanpack.diverge"}}, {"t": "t.tensor"})))
    code, out = cli(capsys, "run", str(path), "--nodes", str(tmp_path / "packs"), "--output-dir",
                    str(tmp_path / "out"), "--quiet", "--device", "cpu")
    assert code == 1 and "node 't' (nanpack.diverge) failed: output 'tensor'" in out and "Traceback" not in out


# -- the executor: re-entrancy and arguments ---------------------------------------------------------------------

def _in_thread(function) -> list:
    """Run `function` in a thread; a deadlock fails the test after 20 s instead of hanging the suite."""
    outcome: list = []

    def target() -> None:
        try:
            outcome.append(function())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "deadlock: Executor.run waited for itself"
    return outcome


def test_run_from_its_own_listener_raises_instead_of_deadlocking(registry):
    doc = workflow({"a": {"type": "t.const", "params": {"value": 1}}}, {"a": "a.value"})
    executor = Executor(registry, device="cpu")
    nested: list = []

    def listener(event) -> None:
        if event.kind == "node_started" and not nested:
            try:
                executor.run(doc)
            except ReentrantRun as exc:
                nested.append(exc)
                raise

    (outcome,) = _in_thread(lambda: executor.run(doc, on_event=listener))
    assert isinstance(outcome, ReentrantRun) and isinstance(outcome, VdgraphError)
    assert "from inside a run of the same executor" in str(outcome) and nested
    assert executor.run(doc)["a"] == 1  # the executor is usable afterwards


def test_a_second_executor_may_run_inside_a_listener(registry):
    doc = workflow({"a": {"type": "t.const", "params": {"value": 1}}}, {"a": "a.value"})
    inner = Executor(registry, device="cpu")
    seen: list = []
    outer = Executor(registry, device="cpu", on_event=lambda e: seen.append(inner.run(doc)["a"])
                     if e.kind == "run_started" else None)
    (outcome,) = _in_thread(lambda: outer.run(doc))
    assert outcome["a"] == 1 and seen == [1]


def test_outputs_as_one_string_is_one_name(registry):
    result = Executor(registry, device="cpu").run(json.loads(HELLO_TEXT), outputs="greeting")
    assert list(result.outputs) == ["greeting"]
    with pytest.raises(WorkflowInvalid) as caught:
        Executor(registry, device="cpu").run(json.loads(HELLO_TEXT), outputs="video")
    assert [(p.code, p.port) for p in caught.value.problems] == [("output.unknown", "video")]


def test_empty_outputs_is_an_error(registry):
    with pytest.raises(WorkflowInvalid) as caught:
        Executor(registry, device="cpu").run(json.loads(HELLO_TEXT), outputs=[])
    assert codes(caught.value.problems) == ["output.none"] and "greeting" in caught.value.problems[0].hint


@pytest.mark.parametrize("kwargs, words", [
    ({"outputs": 5}, "outputs must be a list of output names, got int"),
    ({"outputs": ["greeting", 5]}, "outputs must be output names (str), got int"),
    ({"outputs": b"greeting"}, "outputs must be a list"),
    ({"cancel": 5}, "cancel must be a vdgraph.CancelToken, got int"),
    ({"cancel": threading.Event()}, "cancel must be a vdgraph.CancelToken, got Event"),
    ({"inputs": 5}, "inputs must be a mapping"),
    ({"inputs": [("name", "x")]}, "inputs must be a mapping"),
    ({"inputs": {5: "x"}}, "keyed by input name"),
    ({"on_event": 5}, "on_event must be callable"),
])
def test_wrong_run_arguments_are_type_errors_naming_them(registry, kwargs, words):
    with pytest.raises(TypeError, match=words.replace("(", r"\(").replace(")", r"\)")):
        Executor(registry, device="cpu").run(json.loads(HELLO_TEXT), **kwargs)


def test_wrong_registry_is_a_type_error_naming_it():
    for call in (lambda: Executor(registry=5), lambda: vdgraph.validate(str(HELLO), registry="core"),
                 lambda: vdgraph.run(str(HELLO), registry=object()), lambda: Executor(on_event="print")):
        with pytest.raises(TypeError, match="registry must be a vdgraph.Registry|on_event must be callable"):
            call()
    with pytest.raises(TypeError, match="inputs must be a mapping"):
        vdgraph.validate(str(HELLO), inputs=["width"], registry=_core_registry())


# -- the command line: hostile files never print a traceback ----------------------------------------------------

HOSTILE_FILES = {
    "deep": "[" * 100_000 + "]" * 100_000,
    "deep_value": HELLO_TEXT.replace('"world"', "[" * 990 + "]" * 990),
    "duplicate": HELLO_TEXT.replace('"name": "hello",', '"name": "hello",\n  "name": "hello",'),
    "surrogate": HELLO_TEXT.replace('"world"', '"\\ud800"'),
    "huge_int": HELLO_TEXT.replace('"default": 64', '"default": ' + "9" * 5_000),
    "list_type": HELLO_TEXT.replace('"type": "str", "default": "world"', '"type": "' + "list[" * 500 + "int"
                                    + "]" * 500 + '"'),
    "long_value": HELLO_TEXT.replace('"op": "mul"', '"op": "' + "m" * 100_000 + '"'),
    "nan": HELLO_TEXT.replace('"default": 64', '"default": NaN'),
}


@pytest.mark.parametrize("name", HOSTILE_FILES)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_hostile_files_end_in_a_problem_through_the_cli(tmp_path, capsys, core_only, name, command):
    path = tmp_path / f"{name}.json"
    path.write_text(HOSTILE_FILES[name], encoding="utf-8")
    out_dir = tmp_path / "out"
    args = [command, str(path)] + (["--output-dir", str(out_dir)] if command == "run" else [])
    code, out = cli(capsys, *args)
    assert code == 1 and "error [" in out and "Traceback" not in out
    assert max(len(line) for line in out.splitlines()) < 400
    assert not out_dir.exists() or not any(out_dir.iterdir())  # nothing half-written


def test_set_hostile_values_through_the_cli(capsys, core_only):
    for assignment in ("width=4_0", "width=\u0664\u0660", "width=" + "9" * 5_000, "name=\udcff"):
        code, out = cli(capsys, "validate", str(HELLO), "--set", assignment)
        assert code == 1 and "inputs." in out and "Traceback" not in out
        assert max(len(line) for line in out.splitlines()) < 400


def test_cli_exit_code_matches_the_problems_for_every_shipped_workflow(capsys):
    for path in WORKFLOWS:
        code, out = cli(capsys, "validate", str(path), "--json")
        (report,) = json.loads(out)
        assert code == (0 if report["valid"] else 1) == 0, (path, out)
