"""The node base class: one class per node type, checked when the class statement runs.

    class Blur(Node):
        \"\"\"Blurs frames with a Gaussian over space.\"\"\"

        id = "mypack.blur"            # "<pack>.<name>"; the pack must be the one that registers it
        version = 1                   # bump when the meaning of an output changes (it is in every cache key)
        category = "image"
        inputs = [
            Input("frames", FRAMES, doc="(F, H, W, 3) float in [0, 1]"),
            Input("sigma", float, default=1.0, ge=0.0, le=50.0, doc="standard deviation in pixels"),
            Input("mode", Literal["reflect", "zeros"], default="reflect", doc="border handling"),
        ]
        outputs = [Output("frames", FRAMES, doc="the blurred frames")]

        def run(self, ctx, frames, sigma, mode):
            return blur(frames, sigma, mode)          # a bare value is fine for a single-output node

A node never mutates the values it receives: it returns new ones (the executor checks tensors' version counters).

Checks across inputs run in validation, before anything runs, on the values validation knows (literal params,
defaults, workflow input values, and what upstream nodes can `infer` about their outputs without running):

        @classmethod
        def check(cls, known):
            t0, t1 = known.take("t0", "t1")       # None when either is only known at run time
            if t0 is not None and not t0 < t1:
                yield Invalid("t0", f"t0 ({t0}) must be smaller than t1 ({t1})", "both count steps from the end")
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar

from vdgraph.errors import NodeDeclarationError
from vdgraph.types import STR, Enum, ListOf, PortType, Scalar, port_type


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_PORT = re.compile(r"^[a-z_][a-z0-9_]*$")

# bound attribute -> (test, word for messages); module-level so checking a value builds no closures
_BOUND_TESTS: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "ge": (operator.ge, ">="),
    "gt": (operator.gt, ">"),
    "le": (operator.le, "<="),
    "lt": (operator.lt, "<"),
}


def _literal_failure_code(ptype: PortType, value: Any) -> str:
    """Why a literal does not fit `ptype`: a wrong kind of value, or a right kind outside an enumeration."""
    if ptype.link_only:
        return "param.link-only"
    if isinstance(ptype, Enum) and isinstance(value, (str, int)) and not isinstance(value, bool):
        return "param.choice"
    if isinstance(ptype, ListOf) and isinstance(value, list):
        for item in value:
            if not ptype.item.check_literal(item)[0]:
                return _literal_failure_code(ptype.item, item)
    return "param.type"


def _is_numeric(ptype: PortType) -> bool:
    """Whether range bounds make sense on this port type (int, float, or lists of them)."""
    if isinstance(ptype, ListOf):
        return _is_numeric(ptype.item)
    return isinstance(ptype, Scalar) and ptype.name in ("int", "float")


@dataclasses.dataclass(frozen=True)
class Input:
    """An input port. Without a default it is required; `optional=True` lets it be left out (run gets None)."""

    name: str
    type: Any = None
    default: Any = REQUIRED
    doc: str = ""
    optional: bool = False
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    output_path: bool = False
    """The port names a file the node writes into the run's output folder (`ctx.outputs.claim(value)`): validation
    checks the name, and the executor checks the target against the run's folder before any node runs."""
    model_path: bool = False
    """The port names a model to load (a folder, URL, built-in name or hub id): a server with a token confines such
    values to its allowed model roots (`vdgraph serve --model-root`)."""
    reads_file: bool = False
    """The port names a file or folder the node reads (a str, or a list of str): the content hash of what it names
    is part of the node's cache key whatever feeds the port, so an edited file is read again (see
    `Node.content_key`, `Node.locate_file` and vdgraph.filekeys)."""

    def __post_init__(self) -> None:
        if self.type is None:
            raise NodeDeclarationError(f"input {self.name!r} has no type: Input(name, type, ...)")
        object.__setattr__(self, "type", port_type(self.type))

    @property
    def port_type(self) -> PortType:
        return self.type

    @property
    def required(self) -> bool:
        return self.default is REQUIRED and not self.optional

    @property
    def has_default(self) -> bool:
        return self.default is not REQUIRED

    def check_value(self, value: Any) -> tuple[bool, Any, str, str]:
        """(ok, normalised value, problem code, reason) for a literal aimed at this port.

        The code says which kind of mistake it is (`param.link-only`, `param.type`, `param.choice`,
        `param.range`), so validation can report it under a stable name.
        """
        if value is None and self.optional:
            return True, None, "", ""
        ok, normalised, why = self.type.check_literal(value)
        if not ok:
            return False, value, _literal_failure_code(self.type, value), why
        bounds = self.bounds
        if bounds:
            for item in normalised if isinstance(normalised, list) else (normalised,):
                for key, limit in bounds.items():
                    passes, word = _BOUND_TESTS[key]
                    if not passes(item, limit):
                        return False, normalised, "param.range", f"{item!r} is out of range: must be {word} {limit}"
        return True, normalised, "", ""

    @functools.cached_property
    def bounds(self) -> dict[str, float]:
        """The declared numeric bounds (`ge`, `gt`, `le`, `lt`) that are set (computed once: checked often)."""
        return {key: getattr(self, key) for key in _BOUND_TESTS if getattr(self, key) is not None}

    def describe(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "type": self.type.name, "doc": self.doc,
                               "required": self.required, "link_only": self.type.link_only}
        if self.has_default:
            out["default"] = self.default
        out.update(self.bounds)
        if isinstance(self.type, Enum):
            out["choices"] = list(self.type.choices)
        if self.optional:
            out["optional"] = True
        if self.output_path:
            out["output_path"] = True
        if self.model_path:
            out["model_path"] = True
        if self.reads_file:
            out["reads_file"] = True
        return out


@dataclasses.dataclass(frozen=True)
class Output:
    name: str
    type: Any = None
    doc: str = ""

    def __post_init__(self) -> None:
        if self.type is None:
            raise NodeDeclarationError(f"output {self.name!r} has no type: Output(name, type, ...)")
        object.__setattr__(self, "type", port_type(self.type))

    def describe(self) -> dict:
        return {"name": self.name, "type": self.type.name, "doc": self.doc}


@dataclasses.dataclass(frozen=True)
class Invalid:
    """A problem a node's `check` finds across its inputs; validation reports it with the node id and `port`."""

    port: str
    message: str
    hint: str = ""
    code: str = "node.check"


class Known(Mapping[str, Any]):
    """The input values validation knows for one node: port name -> value. A port whose value is only known at
    run time (a link from a node that cannot infer it) is absent; an optional port left unset is present as None.
    For opaque ports the value is whatever the upstream node's `infer` said (a pack's facts object)."""

    def __init__(self, values: Mapping[str, Any], linked: Iterable[str] = ()) -> None:
        self._values = dict(values)
        self._linked = frozenset(linked)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def take(self, *names: str) -> tuple[Any, ...]:
        """The values of `names` when all are known, else a tuple of None (so `a, b = known.take("a", "b")`)."""
        if all(name in self._values for name in names):
            return tuple(self._values[name] for name in names)
        return (None,) * len(names)

    def linked(self, name: str) -> bool:
        """Whether the port is fed by a link (its value may still be unknown)."""
        return name in self._linked


class Node:
    """Base class of every node type. Subclasses that set `id` are node types; others are abstract bases.

    `deterministic = False` marks a node whose outputs differ between runs with the same inputs (fresh noise
    from an unseeded generator, the current time): it and everything downstream of it always run.
    `side_effects = True` marks a node whose job happens outside its return value (writing a file): it runs
    every time its outputs are requested, so the file exists after every run, and it is never cached.
    """

    id: ClassVar[str]
    version: ClassVar[int] = 1
    category: ClassVar[str] = "misc"
    description: ClassVar[str] = ""
    deterministic: ClassVar[bool] = True
    side_effects: ClassVar[bool] = False
    inputs: ClassVar[tuple[Input, ...]] = ()
    outputs: ClassVar[tuple[Output, ...]] = ()

    # filled in at class creation
    input_map: ClassVar[dict[str, Input]]
    output_map: ClassVar[dict[str, Output]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "id" not in cls.__dict__:
            return  # an abstract base shared by several node types
        _check_declaration(cls)

    def run(self, ctx: Any, **inputs: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def check(cls, known: Known) -> Iterable[Invalid]:
        """Problems across this node's inputs that validation can see before anything runs (override; a
        generator is fine). Only judge what `known` holds: a missing port is decided at run time."""
        return ()

    @classmethod
    def infer(cls, known: Known) -> Mapping[str, Any]:
        """Output values (or facts about them) this node can tell without running, from `known`; downstream
        checks receive them. Must be cheap and side-effect free (no model loading). Default: nothing."""
        return {}

    @classmethod
    def content_key(cls, values: Mapping[str, Any], workflow_dir: str | None) -> Any:
        """What outside the recipe decides this node's outputs, as a JSON value for its cache key, or None:
        nothing. `values` holds the values of its ports that are literals or workflow inputs, and of its
        `reads_file` ports whatever feeds them (a linked one is resolved first: the executor runs what feeds it
        before computing this node's key). The default gives, for each `reads_file` port, the content hash of each
        file or folder it names (`locate_file` finds it; vdgraph.filekeys.content_of hashes it), so an edited file
        is not served from the cache; override to add more. Called for every run before the node is looked up in
        a cache: keep it cheap (file hashes are remembered per path and file status), and never raise
        (return a value naming what could not be read; the run then reports it)."""
        from vdgraph.filekeys import content_of

        ports = [port.name for port in cls.inputs if port.reads_file]
        if not ports:
            return None
        found: dict[str, Any] = {}
        for port in ports:
            value = values.get(port)
            names = value if isinstance(value, list) else [value]
            found[port] = [content_of(cls.locate_file(port, name, workflow_dir)) if isinstance(name, str)
                           and name.strip() else "no name" for name in names if name is not None]
        return found

    @classmethod
    def locate_file(cls, port: str, name: str, workflow_dir: str | None) -> str | None:
        """The local file or folder that `name`, given to the `reads_file` port `port`, means when the node runs,
        or None when it names nothing local (a URL, a hub id). Default: the one rule for relative paths
        (vdgraph.filekeys.local_input_path: working directory, then the workflow's folder). A node that finds files
        another way (a models folder, built-in names) overrides this with the lookup its `run` uses. Never raises."""
        from vdgraph.filekeys import local_input_path, search_dirs

        if "://" in name:
            return None
        return local_input_path(name, search_dirs(workflow_dir))

    @classmethod
    def normalise_outputs(cls, result: Any) -> dict[str, Any]:
        """Map what `run` returned to {output name: value}; a bare value is allowed for one output."""
        names = cls.output_map.keys()
        if isinstance(result, Mapping) and result.keys() == names:
            return dict(result)
        if len(names) == 1:
            return {name: result for name in names}
        got = sorted(result) if isinstance(result, Mapping) else type(result).__name__
        raise TypeError(f"{cls.id}.run must return a mapping with exactly the outputs {list(names)}, got {got}")

    @classmethod
    def describe(cls) -> dict:
        return {
            "id": cls.id,
            "version": cls.version,
            "category": cls.category,
            "description": cls.description,
            "deterministic": cls.deterministic,
            "side_effects": cls.side_effects,
            "inputs": [port.describe() for port in cls.inputs],
            "outputs": [port.describe() for port in cls.outputs],
        }


def _check_declaration(cls: type[Node]) -> None:
    where = f"{cls.__module__}.{cls.__qualname__}"

    def fail(message: str) -> None:
        raise NodeDeclarationError(f"node class {where}: {message}")

    if not isinstance(cls.id, str) or not _ID.match(cls.id):
        fail(f"id {cls.id!r} must look like '<pack>.<name>' (lowercase letters, digits, underscores)")
    if not isinstance(cls.version, int) or isinstance(cls.version, bool) or cls.version < 1:
        fail(f"version must be a positive int, got {cls.version!r}")
    if not cls.description:
        cls.description = inspect.cleandoc(cls.__doc__ or "")
    if not cls.description:
        fail("needs a description (set `description` or write a docstring)")
    if not isinstance(cls.deterministic, bool):
        fail("deterministic must be True or False")
    if not isinstance(cls.side_effects, bool):
        fail("side_effects must be True or False")

    for attr, kind in (("inputs", Input), ("outputs", Output)):
        ports = getattr(cls, attr)
        if not isinstance(ports, (list, tuple)):
            fail(f"{attr} must be a list of {kind.__name__}(...)")
        seen: set[str] = set()
        for port in ports:
            if not isinstance(port, kind):
                fail(f"{attr} must hold {kind.__name__}(...) entries, got {port!r}")
            if not _PORT.match(port.name):
                fail(f"port name {port.name!r} must be a lowercase identifier")
            if port.name in seen:
                fail(f"duplicate {attr[:-1]} port name {port.name!r}")
            seen.add(port.name)
        setattr(cls, attr, tuple(ports))
    if not cls.outputs:
        fail("declares no outputs")

    for port in cls.inputs:
        if port.output_path and port.type != STR:
            fail(f"input {port.name!r} is an output_path, so its type must be str, not {port.type.name}")
        if port.reads_file and port.type.name not in ("str", "list[str]"):
            fail(f"input {port.name!r} reads a file, so its type must be str or list[str], not {port.type.name}")
        if port.bounds and not _is_numeric(port.type):
            fail(f"input {port.name!r} has range bounds but type {port.type.name}; bounds need int or float")
        if port.has_default:
            if port.type.link_only:
                fail(f"input {port.name!r} is link-only ({port.type.name}) and cannot have a default")
            if port.default is None and port.optional:
                continue
            ok, value, _, why = port.check_value(port.default)
            if not ok:
                fail(f"default of input {port.name!r} is invalid: {why}")
            object.__setattr__(port, "default", value)

    cls.input_map = {p.name: p for p in cls.inputs}
    cls.output_map = {p.name: p for p in cls.outputs}

    if cls.run is Node.run:
        fail("does not implement run(self, ctx, ...)")
    params = list(inspect.signature(cls.run).parameters.values())[2:]  # skip self, ctx
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        missing = [p.name for p in cls.inputs if p.name not in names]
        extra = [n for n in names if n not in cls.input_map]
        if missing or extra:
            fail(f"run() parameters must match the inputs: missing {missing}, undeclared {extra}")
