"""Port types and the rules for which ones connect.

Literal types (int, float, str, bool, enumerations, lists of those) can be written in a workflow file as
`params` or workflow inputs; their literals are checked strictly (JSON `true` is a bool, the string "false" is
not). Opaque types (tensors, latents, models, conditioning, file references ...) describe runtime values that
can only arrive over a link.

A node declares a port's type with a plain Python spelling where one exists (`int`, `float`, `str`, `bool`,
`Literal["a", "b"]`, `list[int]`) or with an `Opaque` instance; `port_type()` maps the spelling to a `PortType`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from collections.abc import Callable
from typing import Any, Literal

from vdgraph.errors import NodeDeclarationError, short_repr

INT_MIN, INT_MAX = -(2**63), 2**64 - 1
"""The integers a literal may hold: what fits in 64 bits, signed or unsigned (and what torch.Generator seeds take).
Larger ones are a type problem, not a crash halfway through a run (or in str(), which refuses 4,300+ digits)."""

MAX_LIST_DEPTH = 8
"""How deeply a workflow input's declared type may nest lists (`list[list[int]]` is 2)."""


def int_problem(value: int) -> str:
    """'' when the integer is within [INT_MIN, INT_MAX], else why not."""
    if INT_MIN <= value <= INT_MAX:
        return ""
    return f"expected an integer between -2**63 and 2**64 - 1, got {short_repr(value)}"


def text_problem(value: str) -> str:
    """'' when the string is Unicode text (encodable as UTF-8), else why not: a lone surrogate such as the one
    JSON writes as "\\ud800" cannot be written to a file, a terminal or a cache key."""
    if value.isascii():
        return ""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"character {exc.start} of {short_repr(value)} is a lone surrogate {value[exc.start]!r}, "
                f"which is not valid Unicode text")
    return ""


class PortType:
    """Base of all port types. Instances are immutable and compare by value."""

    name: str
    link_only: bool = False

    def check_literal(self, value: Any) -> tuple[bool, Any, str]:
        """(ok, normalised value, reason when not ok) for a literal written in a workflow file."""
        raise NotImplementedError

    def json_schema(self) -> dict:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.name


@dataclasses.dataclass(frozen=True)
class Scalar(PortType):
    name: Literal["int", "float", "str", "bool"]

    def check_literal(self, value: Any) -> tuple[bool, Any, str]:
        if self.name == "bool":
            return (True, value, "") if isinstance(value, bool) else (False, value, f"expected true or false, {_got(value)}")
        if self.name == "str":
            if not isinstance(value, str):
                return False, value, f"expected a string, {_got(value)}"
            why = text_problem(value)
            return (not why, value, why)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False, value, f"expected {'an integer' if self.name == 'int' else 'a number'}, {_got(value)}"
        if self.name == "int":
            if isinstance(value, float):
                if not value.is_integer():
                    return False, value, f"expected an integer, got {value!r}"
                value = int(value)
            why = int_problem(value)
            return (not why, value, why)
        try:
            number = float(value)
        except OverflowError:  # an int beyond the float range
            return False, value, f"expected a finite number, got {short_repr(value)}"
        if not math.isfinite(number):
            return False, value, f"expected a finite number, got {value!r}"
        return True, number, ""

    def json_schema(self) -> dict:
        return {"int": {"type": "integer"}, "float": {"type": "number"}, "str": {"type": "string"},
                "bool": {"type": "boolean"}}[self.name]


def _got(value: Any) -> str:
    return f"got {type(value).__name__} {short_repr(value)}"


INT = Scalar("int")
FLOAT = Scalar("float")
STR = Scalar("str")
BOOL = Scalar("bool")


@dataclasses.dataclass(frozen=True)
class Enum(PortType):
    """One of a fixed set of values (strings or integers)."""

    choices: tuple

    @property
    def name(self) -> str:  # type: ignore[override]
        return "enum[" + ", ".join(repr(c) for c in self.choices) + "]"

    def check_literal(self, value: Any) -> tuple[bool, Any, str]:
        if isinstance(value, bool) or value not in self.choices:
            return False, value, f"{short_repr(value)} is not one of {', '.join(repr(c) for c in self.choices)}"
        return True, value, ""

    def json_schema(self) -> dict:
        return {"enum": list(self.choices)}


@dataclasses.dataclass(frozen=True)
class ListOf(PortType):
    item: PortType

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"list[{self.item.name}]"

    @property
    def link_only(self) -> bool:  # type: ignore[override]
        return self.item.link_only

    def check_literal(self, value: Any) -> tuple[bool, Any, str]:
        if not isinstance(value, list):
            return False, value, f"expected a list of {self.item.name}, got {type(value).__name__} {short_repr(value)}"
        out = []
        for i, item in enumerate(value):
            ok, item, why = self.item.check_literal(item)
            if not ok:
                return False, value, f"item {i}: {why}"
            out.append(item)
        return True, out, ""

    def json_schema(self) -> dict:
        return {"type": "array", "items": self.item.json_schema()}


_OPAQUE_NAMES: dict[str, Opaque] = {}


@dataclasses.dataclass(frozen=True, eq=False)
class Opaque(PortType):
    """A runtime-only value type; link-only. `parent` makes it a subtype: with Latents declared as a child of
    Tensor, a Tensor input accepts a Latents output (not the other way round).

    Opaque names are global declarations (like class names): declaring the same name twice with a different
    parent is a declaration error; declaring it identically returns an equal type.
    """

    name: str
    doc: str = ""
    parent: Opaque | None = None
    link_only = True

    def __post_init__(self) -> None:
        known = _OPAQUE_NAMES.get(self.name)
        if known is not None and known.parent != self.parent:
            raise NodeDeclarationError(
                f"opaque type {self.name!r} is declared twice with different parents "
                f"({known.parent.name if known.parent else None!r} and {self.parent.name if self.parent else None!r})"
            )
        _OPAQUE_NAMES.setdefault(self.name, self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("opaque", self.name))

    def ancestors(self) -> list[Opaque]:
        out, t = [], self.parent
        while t is not None:
            out.append(t)
            t = t.parent
        return out

    def check_literal(self, value: Any) -> tuple[bool, Any, str]:
        return False, value, f"{self.name} values can only be linked from another node's output, not written"

    def json_schema(self) -> dict:
        return {"description": f"{self.name}: link only", "not": {}}


ANY = Opaque("Any", "any runtime value; an Any input accepts every output type")
TENSOR = Opaque("Tensor", "a torch.Tensor")
FILE = Opaque("File", "a reference to a written or readable file: a local path or an fsspec URL (str)")


@dataclasses.dataclass(frozen=True)
class Connection:
    """How a value travels from an output of type `source` to an input of type `target`."""

    kind: Literal["exact", "subtype", "any", "conversion"]
    convert: Callable[[Any], Any] | None = None


def _int_list_to_float(values: list) -> list:
    return [float(v) for v in values]


# Declared conversions, applied by the executor when a value crosses such a link.
CONVERSIONS: dict[tuple[PortType, PortType], Callable[[Any], Any]] = {
    (INT, FLOAT): float,
    (ListOf(INT), ListOf(FLOAT)): _int_list_to_float,
}


@functools.lru_cache(maxsize=4096)
def connection(source: PortType, target: PortType) -> Connection | None:
    """The way `source` connects to `target`, or None when it does not (memoised: types are immutable values
    and validation asks the same few questions for every link)."""
    if source == target:
        return Connection("exact")
    if target == ANY:
        return Connection("any")
    if isinstance(source, Opaque) and isinstance(target, Opaque) and target in source.ancestors():
        return Connection("subtype")
    if isinstance(source, Enum) and isinstance(target, Scalar):
        if all(target.check_literal(c)[0] for c in source.choices):
            return Connection("subtype")
    if isinstance(source, Enum) and isinstance(target, Enum) and set(source.choices) <= set(target.choices):
        return Connection("subtype")
    convert = CONVERSIONS.get((source, target))
    if convert is not None:
        return Connection("conversion", convert)
    return None


def port_type(spec: Any) -> PortType:
    """Map a declaration spelling (`int`, `Literal[...]`, `list[float]`, an Opaque ...) to a PortType."""
    if isinstance(spec, PortType):
        return spec
    simple = {int: INT, float: FLOAT, str: STR, bool: BOOL}
    if spec in simple:
        return simple[spec]
    origin = typing.get_origin(spec)
    if origin is Literal:
        choices = typing.get_args(spec)
        if not choices or not all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in choices):
            raise NodeDeclarationError(f"Literal port types need str or int choices, got {spec!r}")
        return Enum(tuple(choices))
    if origin is list:
        (item,) = typing.get_args(spec) or (None,)
        if item is None:
            raise NodeDeclarationError("list port types need an item type, e.g. list[int]")
        return ListOf(port_type(item))
    raise NodeDeclarationError(
        f"unsupported port type {spec!r}: use int, float, str, bool, Literal[...], list[...] or a vdgraph.types.Opaque"
    )


_TYPE_NAMES = {"int": INT, "float": FLOAT, "str": STR, "bool": BOOL}


def parse_type_name(text: str) -> PortType | None:
    """The literal type a workflow input declares by name ("int", "list[float]" ...), or None if unknown (also
    for lists nested deeper than MAX_LIST_DEPTH)."""
    text = text.strip()
    depth = 0
    while text.startswith("list[") and text.endswith("]"):  # a loop, not recursion: names come from files
        depth += 1
        if depth > MAX_LIST_DEPTH:
            return None
        text = text[5:-1].strip()
    ptype: PortType | None = _TYPE_NAMES.get(text)
    for _ in range(depth if ptype is not None else 0):
        ptype = ListOf(ptype)
    return ptype


def opaque_types() -> dict[str, Opaque]:
    """Every opaque type declared so far, by name (for `vdgraph nodes` and the schema)."""
    return dict(_OPAQUE_NAMES)
