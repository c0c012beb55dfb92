"""The workflow file: its pydantic schema, loading through fsspec, and typed workflow inputs.

    {"vdgraph": 1, "name": "...", "description": "...",
     "inputs":  {"seed": {"type": "int", "default": 0, "min": 0}},
     "nodes":   {"noise": {"type": "video.noise", "in": {"seed": "inputs.seed"}, "params": {"frames": 8}}},
     "outputs": {"latents": "noise.latents"}}

Loading collects structural problems instead of stopping at the first: each node and input declaration is
checked on its own, so one bad node does not hide the problems of the others. What can only be checked against
the node types (ports, links, literal values) is `vdgraph.validate`'s job.
"""

from __future__ import annotations

import functools
import json
import posixpath
import re
from collections.abc import Mapping
from typing import Any

import fsspec
import pydantic
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from vdgraph.errors import Problem, VdgraphError, WorkflowInvalid, short_repr
from vdgraph.node import Input
from vdgraph.sourcemap import SourceMap
from vdgraph.types import FLOAT, MAX_LIST_DEPTH, Enum, ListOf, Scalar, int_problem, parse_type_name, text_problem

FORMAT_VERSIONS = (1,)
"""Workflow format versions this engine reads; the top-level `vdgraph` key names the file's version."""

INPUTS = "inputs"
"""The reserved node id that names the workflow's own inputs in links (`inputs.seed`)."""

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
LINK = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)\.([a-z_][a-z0-9_]*)$")

MAX_JSON_DEPTH = 100
"""How deeply a workflow may nest objects and arrays. A workflow needs about 10; Python's JSON reader (and every
recursive walk after it) fails near 1,000, so a deeper file is a `json.too-deep` problem, found before parsing."""


class WorkflowNotFound(VdgraphError, FileNotFoundError):
    """The workflow file (or URL) cannot be read."""


class InputDecl(BaseModel):
    """A workflow input: a typed literal with an optional default; without a default it is required at run time."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="int, float, str, bool or list[...] of those")
    default: Any = Field(None, description="the value used when the run does not set one")
    description: str = ""
    choices: list[Any] | None = Field(None, description="the allowed values (for int and str inputs)")
    min: int | float | None = Field(None, description="smallest allowed value (inclusive)")
    max: int | float | None = Field(None, description="largest allowed value (inclusive)")

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set

    def port(self, name: str) -> tuple[Input | None, str]:
        """The input as a port (type and constraints), or None with the reason the declaration is unusable."""
        ptype = parse_type_name(self.type)
        if ptype is None:
            if self.type.count("list[") > MAX_LIST_DEPTH:
                return None, f"type {short_repr(self.type)} nests lists deeper than {MAX_LIST_DEPTH} levels"
            return None, f"unknown type {short_repr(self.type)}: use int, float, str, bool or list[...] of those"
        if self.choices is not None:
            if not isinstance(ptype, Scalar) or ptype.name not in ("int", "str"):
                return None, f"choices need an int or str input, not {self.type}"
            for choice in self.choices:
                ok, _, why = ptype.check_literal(choice)
                if not ok:
                    return None, f"choice {short_repr(choice)} does not fit the type: {why}"
            ptype = Enum(tuple(self.choices))
        numeric = isinstance(ptype, Scalar) and ptype.name in ("int", "float") or (
            isinstance(ptype, ListOf) and isinstance(ptype.item, Scalar) and ptype.item.name in ("int", "float"))
        if (self.min is not None or self.max is not None) and not numeric:
            return None, f"min/max need a numeric input, not {self.type}"
        for bound, limit in (("min", self.min), ("max", self.max)):
            if limit is not None and not FLOAT.check_literal(limit)[0]:
                return None, f"{bound} {short_repr(limit)} is not a finite number"
        return Input(name, ptype, ge=self.min, le=self.max, doc=self.description), ""


class NodeSpec(BaseModel):
    """One node of the workflow: its type, links into its ports (`in`) and literal values (`params`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: str = Field(description="the node type id, '<pack>.<name>'")
    in_: dict[str, Any] = Field(default_factory=dict, alias="in",
                                description="links '<node id>.<output>' (or 'inputs.<name>') per input port")
    params: dict[str, Any] = Field(default_factory=dict, description="literal values per input port")
    description: str = Field("", description="a note for people reading the workflow")


class CheckDecl(BaseModel):
    """A rule over the workflow's inputs, checked in validation: `require` is an expression of input names
    (see `vdgraph.expressions`), `message` says what must hold, `hint` how to fix it."""

    model_config = ConfigDict(extra="forbid")

    require: str = Field(description="an expression over workflow inputs that must be true, e.g. 't0 < t1'")
    message: str = Field("", description="what must hold, in words")
    hint: str = Field("", description="how to fix it")


class Workflow(BaseModel):
    """A parsed workflow. Build one in Python, or load a file with `load_workflow`."""

    model_config = ConfigDict(extra="forbid")

    vdgraph: int = Field(FORMAT_VERSIONS[-1], description="the workflow format version")
    name: str = ""
    description: str = ""
    inputs: dict[str, InputDecl] = Field(default_factory=dict)
    nodes: dict[str, NodeSpec] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict, description="output name -> '<node id>.<output>'")
    checks: list[CheckDecl] = Field(default_factory=list, description="rules over the inputs, checked in validation")

    _source: str | None = PrivateAttr(None)
    _problems: list[Problem] = PrivateAttr(default_factory=list)
    _broken: set[str] = PrivateAttr(default_factory=set)
    _sourcemap: SourceMap | None = PrivateAttr(None)
    _document: dict[str, Any] | None = PrivateAttr(None)

    @property
    def source(self) -> str | None:
        """Where the workflow was loaded from (a path or URL), or None when it was built in Python."""
        return self._source

    @property
    def directory(self) -> str | None:
        """The folder of the workflow file, for nodes that read files relative to it."""
        if self._source is None:
            return None
        if "://" in self._source:
            return self._source.rsplit("/", 1)[0]
        return posixpath.dirname(self._source.replace("\\", "/")) or "."

    @property
    def display_name(self) -> str:
        """A name for reports and the explain store: the declared name, else the file stem."""
        if self.name:
            return self.name
        if self._source:
            return posixpath.basename(self._source.replace("\\", "/")).rsplit(".", 1)[0]
        return "workflow"

    @property
    def document(self) -> dict[str, Any]:
        """The workflow as JSON data: what was loaded (the file's own spelling), or for a workflow built in Python
        its fields as JSON. Output files record it as their recipe (`vdgraph.recipe`)."""
        if self._document is not None:
            return self._document
        return {"vdgraph": self.vdgraph, **self.model_dump(mode="json", exclude_defaults=True, by_alias=True)}

    @property
    def load_problems(self) -> list[Problem]:
        """Structural problems found while loading (a node or input declaration that is not well-formed)."""
        return list(self._problems)

    @property
    def broken_nodes(self) -> set[str]:
        """Node ids present in the file but not well-formed; links to them are not reported again."""
        return set(self._broken)

    def locate(self, *path: str) -> tuple[int | None, int | None]:
        """(line, column) of a key in the original text, when the workflow came from text."""
        if self._sourcemap is None:
            return None, None
        return self._sourcemap.locate(path)

    def problem(self, code: str, message: str, hint: str = "", node: str | None = None,
                port: str | None = None, severity: str = "error", path: tuple[str, ...] = ()) -> Problem:
        """A Problem located in this workflow's file (line and column found lazily from `path`)."""
        line, column = self.locate(*path) if path else (None, None)
        return Problem(code, message, hint, node=node, port=port, severity=severity,  # type: ignore[arg-type]
                       file=self._source, line=line, column=column)


def parse_link(text: Any) -> tuple[str, str] | None:
    """('node', 'output') for a link string 'node.output', or None when it is not one."""
    if not isinstance(text, str):
        return None
    match = LINK.match(text)
    return (match.group(1), match.group(2)) if match else None


def load_workflow(path_or_url: str | Workflow | Mapping[str, Any]) -> Workflow:
    """Read a workflow from a local path or any fsspec URL (a Workflow or a dict is accepted as is).

    Raises WorkflowNotFound when it cannot be read and WorkflowInvalid for malformed JSON or an unknown format
    version; any other structural problem is kept on the workflow and reported by validation with the rest.
    """
    if isinstance(path_or_url, Workflow):
        return path_or_url
    if isinstance(path_or_url, Mapping):
        return parse_workflow(path_or_url)
    source = str(path_or_url)
    try:
        with fsspec.open(source, "rb") as handle:
            raw = handle.read()
    except (OSError, ValueError, ImportError) as exc:  # missing file, unknown protocol, missing fs driver
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise WorkflowNotFound(f"cannot read workflow {source!r}: {reason}") from exc
    return parse_text(raw, source)


def parse_text(raw: bytes | str, source: str | None = None) -> Workflow:
    """Parse workflow JSON text; `source` names the file in problems.

    Beyond JSON syntax, the text must nest at most MAX_JSON_DEPTH levels, hold only integers that fit in 64 bits
    and only strings that are Unicode text, and repeat no key within an object (JSON readers keep only the last
    one, silently): each is a located problem, never a crash deep inside the parser.
    """
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise WorkflowInvalid([Problem("json.malformed", f"the file is not UTF-8 text: {exc.reason}",
                                       "save the workflow as UTF-8 JSON", file=source)]) from None
    sourcemap = SourceMap(text)
    deep = _too_deep(text)
    if deep is not None:
        line, column = sourcemap.position(deep)
        raise WorkflowInvalid([Problem("json.too-deep", f"objects and arrays nest deeper than {MAX_JSON_DEPTH} levels",
                                       "a workflow needs about 10 levels: flatten the value that starts here",
                                       file=source, line=line, column=column)])
    repeated: list[bool] = []
    long_integers: list[bool] = []

    def build_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        built = dict(pairs)
        if len(built) != len(pairs):
            repeated.append(True)
        return built

    def read_int(digits: str) -> int | _LongInteger:
        value = _parse_int(digits)
        if len(digits) >= 20 and (type(value) is _LongInteger or int_problem(value)):  # 19 characters always fit
            long_integers.append(True)
        return value

    try:
        data = json.loads(text, object_pairs_hook=build_object, parse_int=read_int)
    except json.JSONDecodeError as exc:
        raise WorkflowInvalid([Problem("json.malformed", f"malformed JSON: {exc.msg}",
                                       "fix the JSON syntax at this line and column", file=source,
                                       line=exc.lineno, column=exc.colno)]) from None
    except RecursionError:  # the scan above bounds the depth; this only guards a caller that is already deep
        raise WorkflowInvalid([Problem("json.too-deep", "objects and arrays nest too deeply to read",
                                       "flatten the workflow", file=source)]) from None
    duplicates = _duplicate_problems(sourcemap, source) if repeated else []
    suspect = bool(long_integers) or ("\\u" in text and _ESCAPED_SURROGATE.search(text) is not None) or (
        not text.isascii() and _RAW_SURROGATE.search(text) is not None)
    return parse_workflow(data, source, sourcemap, duplicates, check_values=suspect)


# Only text with a JSON escape of a surrogate, or a raw one (in text from Python), can hold a lone surrogate.
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
_RAW_SURROGATE = re.compile(r"[\ud800-\udfff]")


class _LongInteger:
    """An integer literal too long to be one of ours (more digits than 2**64 has); kept as text so that reading it
    cannot fail (Python refuses to convert more than 4,300 digits) and reported with its place."""

    def __init__(self, digits: str) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        count = len(self.digits.lstrip("-"))
        return f"{self.digits[:12]}...{self.digits[-4:]} ({count:,} digits)"


def _parse_int(digits: str) -> int | _LongInteger:
    return int(digits) if len(digits) <= 21 else _LongInteger(digits)


_BRACKETS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def _too_deep(text: str) -> int | None:
    """The offset of the first bracket that opens level MAX_JSON_DEPTH + 1, or None. Iterative and linear: a
    file of 100,000 nested brackets is answered in milliseconds, before the recursive JSON reader sees it."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return None  # the usual case: too few brackets to nest that deep
    depth = 0
    for match in _BRACKETS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return match.start()
        elif token in "]}":
            depth -= 1
    return None


def _duplicate_problems(sourcemap: SourceMap, source: str | None) -> list[Problem]:
    problems = []
    for duplicate in sourcemap.duplicates():
        *parent, key = duplicate.path
        first_line, _ = sourcemap.position(duplicate.first)
        line, column = sourcemap.position(duplicate.again)
        inside = "the top level" if not parent else repr(".".join(parent))
        problems.append(Problem(
            "json.duplicate-key", f"key {short_repr(key)} appears twice in {inside} (lines {first_line} and {line}); "
            f"JSON readers silently drop all but the last", "remove one of them, or merge them into one",
            file=source, line=line, column=column))
    return problems


def _check_data(data: Any, report) -> None:
    """What JSON (or a dict from Python) may hold but a workflow may not, each reported with its path: nesting
    deeper than MAX_JSON_DEPTH, keys that are not strings, strings that are not Unicode text, integers outside
    64 bits. Iterative, and each container is visited once (a dict from Python may share or even contain itself)."""
    stack: list[tuple[tuple[str, ...], Any]] = [((), data)]
    seen: set[int] = set()
    while stack:
        path, value = stack.pop()
        kind = type(value)
        if kind is str:
            why = text_problem(value)
            if why:
                report("json.invalid-text", why, path)
        elif kind is int:
            if int_problem(value):
                report("json.int-range", _too_large(short_repr(value)), path)
        elif kind is _LongInteger:
            report("json.int-range", _too_large(repr(value)), path)
        elif kind is dict or kind is list or isinstance(value, (Mapping, list, tuple)):
            if id(value) in seen:
                continue
            seen.add(id(value))
            if len(path) >= MAX_JSON_DEPTH:
                report("json.too-deep", f"objects and arrays nest deeper than {MAX_JSON_DEPTH} levels", path)
                continue
            mapping = isinstance(value, Mapping)
            items = list(value.items()) if mapping else [(str(i), v) for i, v in enumerate(value)]
            for key, item in reversed(items):
                if not isinstance(key, str):
                    report("schema.invalid", f"key {short_repr(key)} is a {type(key).__name__}; keys are strings", path)
                    continue
                if mapping and (why := text_problem(key)):
                    report("json.invalid-text", f"a key: {why}", path)
                    continue
                stack.append(((*path, key), item))
        elif isinstance(value, str):
            why = text_problem(value)
            if why:
                report("json.invalid-text", why, path)
        elif isinstance(value, int) and not isinstance(value, bool) and int_problem(value):
            report("json.int-range", _too_large(short_repr(value)), path)


def _node_and_port(path: tuple[str, ...]) -> tuple[str | None, str | None]:
    """The node and port a path inside the file belongs to: ('nodes', 'a', 'params', 'x', ...) -> ('a', 'x')."""
    if len(path) >= 2 and path[0] == "nodes":
        return path[1], path[3] if len(path) >= 4 and path[2] in ("in", "params") else None
    if len(path) >= 2 and path[0] == "inputs":
        return INPUTS, path[1]
    return None, None


def _printable(text: str, limit: int = 80) -> str:
    """A path or key as it can be printed: lone surrogates escaped, cut to `limit` characters."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _too_large(shown: str) -> str:
    return f"integer {shown} is too large: integers must lie between -2**63 and 2**64 - 1"


_SCHEMA_HINT = "`vdgraph schema` prints the JSON Schema of the workflow format"

_DATA_HINTS = {
    "json.too-deep": "a workflow needs about 10 levels: flatten this value",
    "json.invalid-text": "write the character itself, or a surrogate pair (\\ud83d\\ude00), not half of one",
    "json.int-range": "use a smaller number (seeds, sizes and counts all fit in 64 bits)",
    "schema.invalid": _SCHEMA_HINT,
}


def parse_workflow(data: Any, source: str | None = None, sourcemap: SourceMap | None = None,
                   problems: list[Problem] | None = None, check_values: bool = True) -> Workflow:
    """Build a Workflow from decoded JSON, collecting structural problems per node and per input.

    Values no workflow may hold (see `parse_text`) are fatal: WorkflowInvalid with every one of them (and
    `problems`, found earlier in the text). Other problems are kept on the workflow for validation to report.
    `check_values=False` skips that walk: `parse_text` knows when the text cannot hold such a value.
    """
    if not isinstance(data, Mapping):
        raise WorkflowInvalid([Problem("schema.invalid", f"a workflow must be a JSON object, got {_kind(data)}",
                                       'start from {"vdgraph": 1, "nodes": {...}, "outputs": {...}}', file=source)])
    found: list[Problem] = []

    def report_data(code: str, message: str, path: tuple[str, ...]) -> None:
        line, column = sourcemap.locate(path) if sourcemap else (None, None)
        node, port = _node_and_port(tuple(_printable(key) for key in path))
        where = f"at {_printable('.'.join(path))}: " if path else ""
        found.append(Problem(code, where + message, _DATA_HINTS[code], node=node, port=port, file=source, line=line,
                             column=column))

    if check_values:
        _check_data(data, report_data)
    if found:
        raise WorkflowInvalid([*(problems or []), *found])
    version = data.get("vdgraph")
    if isinstance(version, bool) or version not in FORMAT_VERSIONS:
        supported = ", ".join(str(v) for v in FORMAT_VERSIONS)
        line, column = sourcemap.locate(("vdgraph",)) if sourcemap and "vdgraph" in data else (None, None)
        what = "has no format version" if "vdgraph" not in data else f"has format version {short_repr(version)}"
        raise WorkflowInvalid([*(problems or []), Problem(
            "format.version", f"the workflow {what}; this vdgraph reads {supported}",
            f'put "vdgraph": {FORMAT_VERSIONS[-1]} at the top level', file=source, line=line, column=column)])
    collected: list[Problem] = list(problems or [])
    broken: set[str] = set()

    def report(message: str, path: tuple[str, ...], node: str | None = None, port: str | None = None) -> None:
        line, column = sourcemap.locate(path) if sourcemap else (None, None)
        collected.append(Problem("schema.invalid", message, _SCHEMA_HINT, node=node, port=port, file=source,
                                 line=line, column=column))

    fields: dict[str, Any] = {"vdgraph": version}
    for key, value in data.items():
        if key == "$schema":
            continue  # editors read it (see `vdgraph schema`); the engine does not need it
        if key not in Workflow.model_fields:
            report(f"unknown top-level key {short_repr(key)} (known: {', '.join(Workflow.model_fields)})", (key,))
        elif key in ("name", "description"):
            if isinstance(value, str):
                fields[key] = value
            else:
                report(f"{key!r} must be a string, got {_kind(value)}", (key,))
    fields["inputs"] = _parse_section(data, "inputs", InputDecl, report, broken)
    fields["nodes"] = _parse_section(data, "nodes", NodeSpec, report, broken)
    fields["checks"] = _parse_checks(data.get("checks", []), report)
    outputs = data.get("outputs", {})
    if isinstance(outputs, Mapping):
        fields["outputs"] = dict(outputs)
    else:
        report(f"'outputs' must be an object of name -> 'node.output', got {_kind(outputs)}", ("outputs",))
        fields["outputs"] = {}
    workflow = Workflow.model_construct(**fields)
    workflow._source = source
    workflow._problems = collected
    workflow._broken = broken
    workflow._sourcemap = sourcemap
    workflow._document = dict(data)
    return workflow


_SCHEMA_HINT = "`vdgraph schema` prints the JSON Schema of the workflow format"


def _parse_checks(raw: Any, report) -> list[CheckDecl]:
    if not isinstance(raw, list):
        report(f"'checks' must be an array of {{\"require\": ...}} objects, got {_kind(raw)}", ("checks",))
        return []
    checks = []
    for index, entry in enumerate(raw):
        try:
            checks.append(CheckDecl.model_validate(entry))
        except pydantic.ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(p) for p in error["loc"])
                message = error["msg"] if not where else f"{where}: {error['msg']}"
                if error["type"] == "extra_forbidden":
                    message = f"unknown key {where!r} (known: {', '.join(CheckDecl.model_fields)})"
                report(f"check {index}: {message}", ("checks", str(index), *map(str, error["loc"])))
    return checks


def _parse_section(data: Mapping[str, Any], section: str, model: type[BaseModel], report, broken: set[str]) -> dict:
    """Validate the entries of `inputs` or `nodes`: all at once when they are fine (one call into pydantic's
    core), else one by one, so one bad entry hides nothing else."""
    raw = data.get(section, {})
    if not isinstance(raw, Mapping):
        report(f"{section!r} must be an object of name -> declaration, got {_kind(raw)}", (section,))
        return {}
    entries = dict(raw)
    if section == "nodes":
        for name in [n for n in entries if not NAME.match(n) or n == INPUTS]:
            reason = "is reserved for the workflow's inputs" if name == INPUTS else (
                "must start with a letter or underscore and hold only letters, digits, '_' and '-'")
            report(f"node id {short_repr(name)} {reason}", (section, name), node=name)
            broken.add(name)
            del entries[name]
    try:
        return _section_adapter(model).validate_python(entries)
    except pydantic.ValidationError:
        pass
    parsed = {}
    for name, entry in entries.items():
        try:
            parsed[name] = model.model_validate(entry)
        except pydantic.ValidationError as exc:
            node, port = (name, None) if section == "nodes" else (INPUTS, name)
            for error in exc.errors():
                where = ".".join(str(p) for p in error["loc"])
                message = error["msg"] if not where else f"{where}: {error['msg']}"
                if error["type"] == "extra_forbidden":
                    message = f"unknown key {short_repr(where)} (known: {', '.join(_aliases(model))})"
                report(f"{section[:-1]} {short_repr(name)}: {message}", (section, name, *map(str, error["loc"])), node,
                       port)
            if section == "nodes":
                broken.add(name)
    return parsed


@functools.cache
def _section_adapter(model: type[BaseModel]) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(dict[str, model])  # type: ignore[valid-type]


def _aliases(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


# -- workflow inputs set from the command line ----------------------------------------------------------------

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:nan|inf|infinity)",
                         re.IGNORECASE)
"""Numbers as people and JSON write them, in ASCII digits: not Python's `4_0` or `float("١٫٥")`, which a typo
or a pasted non-Latin digit would otherwise turn silently into a different value."""


def parse_assignment(text: str) -> tuple[str, str]:
    """Split `name=value`; raises ValueError (a usage error) when there is no '='."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"--set expects name=value, got {short_repr(text)}")
    return name.strip(), value


def parse_override(workflow: Workflow, name: str, text: str) -> tuple[Any, Problem | None]:
    """Turn the text of `--set name=text` into a value of the input's declared type.

    int takes an optional sign and ASCII digits, float a decimal or exponent number in ASCII digits (no `_`
    separators, no other scripts' digits). bool accepts only true/false/1/0/yes/no/on/off (any case):
    `bool("false")` being True is exactly the surprise this avoids. Lists are JSON. Range and choice checks happen
    in validation, with everything else.
    """
    decl = workflow.inputs.get(name)
    if decl is None:
        declared = ", ".join(workflow.inputs) or "none"
        return None, workflow.problem("input.unknown", f"--set names an undeclared workflow input {short_repr(name)}",
                                      f"declared inputs: {declared}", node=INPUTS, port=name)
    ptype = parse_type_name(decl.type)
    try:
        if ptype is None:
            raise ValueError(f"the input declares an unknown type {short_repr(decl.type)}")
        return _parse_typed(ptype, text), None
    except ValueError as exc:
        hint = f"{name} is declared as {decl.type}" if ptype is not None else "fix the input's declared type"
        return None, workflow.problem("input.type", f"--set {name}={short_repr(text)}: {exc}", hint,
                                      node=INPUTS, port=name)


def _parse_typed(ptype: Any, text: str) -> Any:
    if isinstance(ptype, ListOf):
        value = _parse_json_value(text)
        ok, value, why = ptype.check_literal(value)
        if not ok:
            raise ValueError(why)
        return value
    name = ptype.name
    if name in ("int", "float"):
        word = text.strip()
        pattern = _INT_TEXT if name == "int" else _FLOAT_TEXT
        if not pattern.fullmatch(word):
            expected = "an integer (digits 0-9, optional sign)" if name == "int" else "a number such as 0.5 or 1e-3"
            raise ValueError(f"expected {expected}")
        if name == "int" and len(word.lstrip("+-")) > 21:  # past 2**64, and int() refuses 4,300+ digits
            raise ValueError(_too_large(repr(_LongInteger(word))))
        ok, value, why = ptype.check_literal(int(word) if name == "int" else float(word))
        if not ok:
            raise ValueError(why)
        return value
    if name == "bool":
        word = text.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError("expected true/false (or 1/0, yes/no, on/off)")
    return text


def _parse_json_value(text: str) -> Any:
    """A JSON value given on the command line, with the same limits as a workflow file."""
    if _too_deep(text) is not None:
        raise ValueError(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError:
        raise ValueError("expected a JSON list such as [1, 2]") from None
    problems: list[str] = []
    _check_data(value, lambda code, message, path: problems.append(message))
    if problems:
        raise ValueError(problems[0])
    return value
