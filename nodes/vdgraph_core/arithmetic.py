"""Numbers: float and integer arithmetic, and the float -> int conversion (the hint for float/int mismatches)."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Literal

from vdgraph.context import RunContext
from vdgraph.node import Input, Node, Output

FLOAT_OPS: dict[str, Callable[[float, float], float]] = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
    "min": min, "max": max, "pow": operator.pow,
}
INT_OPS: dict[str, Callable[[int, int], int]] = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "floordiv": operator.floordiv,
    "mod": operator.mod, "min": min, "max": max, "pow": operator.pow,
}
ROUNDING: dict[str, Callable[[float], int]] = {"round": round, "floor": math.floor, "ceil": math.ceil,
                                               "trunc": math.trunc}


class FloatMath(Node):
    """Combines two numbers: a <op> b. Integers linked in are converted to float."""

    id = "core.math"
    category = "math"
    inputs = [
        Input("a", float, doc="left operand"),
        Input("b", float, default=0.0, doc="right operand"),
        Input("op", Literal["add", "sub", "mul", "div", "min", "max", "pow"], default="add", doc="the operation"),
    ]
    outputs = [Output("result", float, doc="a <op> b")]

    def run(self, ctx: RunContext, a: float, b: float, op: str) -> float:
        result = float(FLOAT_OPS[op](a, b))
        if not math.isfinite(result):
            raise ArithmeticError(f"{a} {op} {b} is not a finite number ({result})")
        return result


class IntMath(Node):
    """Combines two integers exactly: a <op> b (floordiv and mod round towards minus infinity, as in Python)."""

    id = "core.int_math"
    category = "math"
    inputs = [
        Input("a", int, doc="left operand"),
        Input("b", int, default=0, doc="right operand"),
        Input("op", Literal["add", "sub", "mul", "floordiv", "mod", "min", "max", "pow"], default="add",
              doc="the operation"),
    ]
    outputs = [Output("result", int, doc="a <op> b")]

    def run(self, ctx: RunContext, a: int, b: int, op: str) -> int:
        if op == "pow" and b < 0:
            raise ValueError(f"int pow needs a non-negative exponent, got {b}")
        return int(INT_OPS[op](a, b))


class FloatToInt(Node):
    """Turns a number into an integer by rounding (to nearest even on ties), floor, ceiling or truncation."""

    id = "core.float_to_int"
    category = "math"
    inputs = [
        Input("value", float, doc="the number to convert"),
        Input("mode", Literal["round", "floor", "ceil", "trunc"], default="round", doc="how to drop the fraction"),
    ]
    outputs = [Output("result", int, doc="the integer")]

    def run(self, ctx: RunContext, value: float, mode: str) -> int:
        return int(ROUNDING[mode](value))
