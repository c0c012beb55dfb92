"""Node declarations fail at import with a clear message; port types say what connects; literals are strict."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from vdgraph.errors import NodeDeclarationError
from vdgraph.node import Input, Node, Output
from vdgraph.types import ANY, FLOAT, INT, STR, TENSOR, Enum, ListOf, Opaque, connection, parse_type_name


def declare(**attrs: Any) -> type[Node]:
    def run(self, ctx, **inputs):
        return 0

    body = {"id": "t.x", "__doc__": "A test node.", "outputs": [Output("y", int)], "run": run, **attrs}
    return type("X", (Node,), body)


def test_input_without_type():
    with pytest.raises(NodeDeclarationError, match="input 'a' has no type"):
        Input("a")


def test_unsupported_type():
    with pytest.raises(NodeDeclarationError, match="unsupported port type"):
        Input("a", dict)


def test_bad_default():
    with pytest.raises(NodeDeclarationError, match="default of input 'a' is invalid: expected an integer"):
        declare(inputs=[Input("a", int, default="3")])


def test_default_out_of_range():
    with pytest.raises(NodeDeclarationError, match="out of range"):
        declare(inputs=[Input("a", int, default=20, le=10)])


def test_duplicate_port_names():
    with pytest.raises(NodeDeclarationError, match="duplicate input port name 'a'"):
        declare(inputs=[Input("a", int), Input("a", float)])


def test_link_only_port_cannot_have_a_default():
    with pytest.raises(NodeDeclarationError, match="link-only"):
        declare(inputs=[Input("t", TENSOR, default=0)])


def test_bounds_need_a_numeric_type():
    with pytest.raises(NodeDeclarationError, match="range bounds but type str"):
        declare(inputs=[Input("s", str, ge=0)])


def test_bad_id_and_missing_description():
    with pytest.raises(NodeDeclarationError, match="must look like '<pack>.<name>'"):
        declare(id="NoPack")
    with pytest.raises(NodeDeclarationError, match="needs a description"):
        declare(__doc__=None)


def test_run_signature_must_match_inputs():
    def run(self, ctx, a, extra):
        return a

    with pytest.raises(NodeDeclarationError, match=r"missing \[\], undeclared \['extra'\]"):
        declare(inputs=[Input("a", int)], run=run)


def test_no_outputs():
    with pytest.raises(NodeDeclarationError, match="declares no outputs"):
        declare(outputs=[])


def test_enum_miss_is_a_choice_problem_and_wrong_kind_a_type_problem():
    port = Input("mode", Literal["a", "b"], default="a")
    assert port.check_value("c")[2] == "param.choice"
    assert port.check_value(True)[2] == "param.type"
    listed = Input("modes", list[Literal["a", "b"]], default=["a"])
    assert listed.check_value(["a", "z"])[2] == "param.choice"
    assert listed.check_value("a")[2] == "param.type"


def test_optional_port_accepts_none():
    port = Input("maybe", int, optional=True)
    assert port.check_value(None)[0] and not port.required


def test_literals_are_strict():
    assert INT.check_literal(True)[0] is False
    assert INT.check_literal(2.0) == (True, 2, "")
    assert FLOAT.check_literal(2) == (True, 2.0, "")
    assert FLOAT.check_literal(float("nan"))[0] is False
    assert STR.check_literal(1)[0] is False
    assert ListOf(INT).check_literal([1, "2"])[2] == "item 1: expected an integer, got str '2'"


def test_connections():
    latents = Opaque("EngineTestLatents", parent=TENSOR)
    assert connection(INT, INT).kind == "exact"
    assert connection(INT, FLOAT).kind == "conversion" and connection(INT, FLOAT).convert(2) == 2.0
    assert connection(FLOAT, INT) is None
    assert connection(latents, TENSOR).kind == "subtype"
    assert connection(TENSOR, latents) is None
    assert connection(TENSOR, ANY).kind == "any"
    assert connection(Enum(("a", "b")), STR).kind == "subtype"
    assert connection(ListOf(INT), ListOf(FLOAT)).convert([1, 2]) == [1.0, 2.0]


def test_opaque_redeclared_with_another_parent():
    Opaque("EngineTestThing")
    with pytest.raises(NodeDeclarationError, match="declared twice"):
        Opaque("EngineTestThing", parent=TENSOR)


def test_type_names():
    assert parse_type_name("list[float]") == ListOf(FLOAT)
    assert parse_type_name("Tensor") is None


def test_normalise_outputs():
    cls = declare(outputs=[Output("a", int), Output("b", int)])
    assert cls.normalise_outputs({"a": 1, "b": 2}) == {"a": 1, "b": 2}
    with pytest.raises(TypeError, match="exactly the outputs"):
        cls.normalise_outputs({"a": 1})
