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

from vdgraph.errors import Problem, VdgraphError, WorkflowInvalid
from vdgraph.node import Input
from vdgraph.sourcemap import SourceMap
from vdgraph.types import Enum, ListOf, Scalar, parse_type_name

FORMAT_VERSIONS = (1,)
"""Workflow format versions this engine reads; the top-level `vdgraph` key names the file's version."""

INPUTS = "inputs"
"""The reserved node id that names the workflow's own inputs in links (`inputs.seed`)."""

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
LINK = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)\.([a-z_][a-z0-9_]*)$")


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
            return None, f"unknown type {self.type!r}: use int, float, str, bool or list[...] of those"
        if self.choices is not None:
            if not isinstance(ptype, Scalar) or ptype.name not in ("int", "str"):
                return None, f"choices need an int or str input, not {self.type}"
            for choice in self.choices:
                ok, _, why = ptype.check_literal(choice)
                if not ok:
                    return None, f"choice {choice!r} does not fit the type: {why}"
            ptype = Enum(tuple(self.choices))
        numeric = isinstance(ptype, Scalar) and ptype.name in ("int", "float") or (
            isinstance(ptype, ListOf) and isinstance(ptype.item, Scalar) and ptype.item.name in ("int", "float"))
        if (self.min is not None or self.max is not None) and not numeric:
            return None, f"min/max need a numeric input, not {self.type}"
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
    """Parse workflow JSON text; `source` names the file in problems."""
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise WorkflowInvalid([Problem("json.malformed", f"the file is not UTF-8 text: {exc.reason}",
                                       "save the workflow as UTF-8 JSON", file=source)]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowInvalid([Problem("json.malformed", f"malformed JSON: {exc.msg}",
                                       "fix the JSON syntax at this line and column", file=source,
                                       line=exc.lineno, column=exc.colno)]) from None
    return parse_workflow(data, source, SourceMap(text))


def parse_workflow(data: Any, source: str | None = None, sourcemap: SourceMap | None = None) -> Workflow:
    """Build a Workflow from decoded JSON, collecting structural problems per node and per input."""
    if not isinstance(data, Mapping):
        raise WorkflowInvalid([Problem("schema.invalid", f"a workflow must be a JSON object, got {_kind(data)}",
                                       'start from {"vdgraph": 1, "nodes": {...}, "outputs": {...}}', file=source)])
    version = data.get("vdgraph")
    if isinstance(version, bool) or version not in FORMAT_VERSIONS:
        supported = ", ".join(str(v) for v in FORMAT_VERSIONS)
        line, column = sourcemap.locate(("vdgraph",)) if sourcemap and "vdgraph" in data else (None, None)
        what = "has no format version" if "vdgraph" not in data else f"has format version {version!r}"
        raise WorkflowInvalid([Problem("format.version", f"the workflow {what}; this vdgraph reads {supported}",
                                       f'put "vdgraph": {FORMAT_VERSIONS[-1]} at the top level', file=source,
                                       line=line, column=column)])
    collected: list[Problem] = []
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
            report(f"unknown top-level key {key!r} (known: {', '.join(Workflow.model_fields)})", (key,))
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
            report(f"node id {name!r} {reason}", (section, name), node=name)
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
                    message = f"unknown key {where!r} (known: {', '.join(_aliases(model))})"
                report(f"{section[:-1]} {name!r}: {message}", (section, name, *map(str, error["loc"])), node, port)
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


def parse_assignment(text: str) -> tuple[str, str]:
    """Split `name=value`; raises ValueError (a usage error) when there is no '='."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"--set expects name=value, got {text!r}")
    return name.strip(), value


def parse_override(workflow: Workflow, name: str, text: str) -> tuple[Any, Problem | None]:
    """Turn the text of `--set name=text` into a value of the input's declared type.

    bool accepts only true/false/1/0/yes/no/on/off (any case): `bool("false")` being True is exactly the
    surprise this avoids. Lists are JSON. Range and choice checks happen in validation, with everything else.
    """
    decl = workflow.inputs.get(name)
    if decl is None:
        declared = ", ".join(workflow.inputs) or "none"
        return None, workflow.problem("input.unknown", f"--set names an undeclared workflow input {name!r}",
                                      f"declared inputs: {declared}", node=INPUTS, port=name)
    ptype = parse_type_name(decl.type)
    try:
        if ptype is None:
            raise ValueError(f"the input declares an unknown type {decl.type!r}")
        return _parse_typed(ptype, text), None
    except ValueError as exc:
        return None, workflow.problem("input.type", f"--set {name}={text!r}: {exc}",
                                      f"{name} is declared as {decl.type}", node=INPUTS, port=name)


def _parse_typed(ptype: Any, text: str) -> Any:
    if isinstance(ptype, ListOf):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"expected a JSON list such as [1, 2], got {text!r}") from None
        ok, value, why = ptype.check_literal(value)
        if not ok:
            raise ValueError(why)
        return value
    name = ptype.name
    if name == "int":
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if name == "float":
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
        ok, value, why = ptype.check_literal(value)
        if not ok:
            raise ValueError(why)
        return value
    if name == "bool":
        word = text.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(f"expected true/false (or 1/0, yes/no, on/off), got {text!r}")
    return text
