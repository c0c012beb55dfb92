"""The small expression language of a workflow's `checks`: comparisons and arithmetic over its input values.

    "checks": [{"require": "t0 < t1 and t1 < steps", "message": "t0 < t1 < steps"}]

Workflows are data, never code: an expression is parsed with `ast` and evaluated by walking the tree, allowing
only names of workflow inputs, literal numbers/strings/booleans, `+ - * / // %` on numbers
(not on strings: `"x" * n` would let a file build gigabytes), unary `- + not`, comparisons (`< <= > >= == != in
not in`), `and`/`or`, tuples/lists of those (for `in`), and the functions `abs`, `min`, `max`, `len`. Nothing
is looked up in Python's namespaces and nothing is called but those four.
"""

from __future__ import annotations

import ast
import functools
import operator
from collections.abc import Mapping
from typing import Any

from vdgraph.errors import short_repr

MAX_LENGTH = 1000
"""Longest expression accepted (a check is a line, not a program)."""
MAX_DEPTH = 64
"""Deepest nesting of operators accepted."""

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.In: lambda a, b: a in b,
            ast.NotIn: lambda a, b: a not in b}
_FUNCTIONS = {"abs": abs, "min": min, "max": max, "len": len}


class ExpressionError(ValueError):
    """The expression is not of the allowed form, or cannot be evaluated on the given values."""


def expression_names(text: str) -> tuple[str, ...]:
    """The input names an expression reads, in order of first appearance; raises ExpressionError when it is not
    an allowed expression."""
    return _parse(text)[1]


def evaluate(text: str, values: Mapping[str, Any]) -> bool:
    """Whether the expression holds for `values` (every name it reads must be given)."""
    tree, _ = _parse(text)
    try:
        return bool(_eval(tree, values))
    except ExpressionError:
        raise
    except (ArithmeticError, TypeError, ValueError) as exc:  # 1 / 0, "a" < 1, min() of nothing
        raise ExpressionError(f"{type(exc).__name__}: {exc}") from None


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> tuple[ast.expr, tuple[str, ...]]:
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("the expression is empty")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ExpressionError(f"not an expression: {getattr(exc, 'msg', None) or type(exc).__name__}") from None
    depth, stack = 0, [(tree, 1)]
    while stack:  # iterative, so a deeply nested expression is refused rather than exhausting the stack
        node, level = stack.pop()
        depth = max(depth, level)
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(node))
    if depth > MAX_DEPTH:
        raise ExpressionError(f"the expression nests deeper than {MAX_DEPTH} levels")
    names: dict[tuple[int, int], str] = {}
    for node in ast.walk(tree):  # iterative: a deep expression cannot exhaust the stack here
        if isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS) or node.keywords:
                raise ExpressionError(f"only {', '.join(_FUNCTIONS)} may be called")
        elif isinstance(node, ast.Name):
            names[(node.lineno, node.col_offset)] = node.id
        elif not isinstance(node, _ALLOWED):
            raise ExpressionError(f"{type(node).__name__} is not allowed in a check")
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, str, bool)):
            raise ExpressionError(f"the literal {node.value!r} is not allowed")
    functions = {name for name in _FUNCTIONS if _called(tree, name)}
    ordered = dict.fromkeys(names[place] for place in sorted(names))
    return tree, tuple(name for name in ordered if name not in functions)


_ALLOWED = (ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Constant, ast.Name, ast.Load, ast.Tuple, ast.List,
            ast.And, ast.Or, *_BINARY, *_UNARY, *_COMPARE)


def _called(tree: ast.expr, name: str) -> bool:
    """Whether `name` appears only as a called function (then it is not an input name)."""
    calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return all(id(n) in calls for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == name)


def _eval(node: ast.expr, values: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in values:
            raise ExpressionError(f"no value for {node.id!r}")
        return values[node.id]
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_eval(item, values) for item in node.elts)
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, values))
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, values), _eval(node.right, values)
        for operand in (left, right):  # "x" * 10**12 or "%999999999d" % 1 would build gigabytes in validation
            if not isinstance(operand, (int, float)):
                raise ExpressionError(f"arithmetic takes numbers, got {type(operand).__name__} {short_repr(operand)}")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(item, values) for item in node.values)
        return any(_eval(item, values) for item in node.values)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, values)
        for op, right_node in zip(node.ops, node.comparators):
            right = _eval(right_node, values)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Call):
        return _FUNCTIONS[node.func.id](*(_eval(arg, values) for arg in node.args))  # type: ignore[attr-defined]
    raise ExpressionError(f"{type(node).__name__} is not allowed in a check")
