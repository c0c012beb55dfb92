"""The JSON Schema (draft 2020-12) of the workflow format, with every registered node type's ports.

Editors that read JSON Schema (VS Code: `"$schema"` in the file or a `json.schemas` setting) then complete node
types, port names and enumeration values, and flag unknown ports, wrong literal types and out-of-range values
while typing. The schema reflects the registry it was exported from: export it again after adding packs.
"""

from __future__ import annotations

from typing import Any

from vdgraph.node import Input, Node
from vdgraph.registry import Registry
from vdgraph.types import ListOf
from vdgraph.workflow import FORMAT_VERSIONS, LINK, NAME

DRAFT = "https://json-schema.org/draft/2020-12/schema"
_BOUND_KEYWORDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}


def workflow_schema(registry: Registry) -> dict[str, Any]:
    entries = registry.entries()
    node_schema: dict[str, Any] = {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"enum": [e.cls.id for e in entries], "description": "the node type id"},
            "in": {"type": "object", "additionalProperties": {"$ref": "#/$defs/links"},
                   "description": "links into input ports: '<node id>.<output>' or 'inputs.<name>'"},
            "params": {"type": "object", "description": "literal values of input ports"},
            "description": {"type": "string"},
        },
        "additionalProperties": False,
        "allOf": [_node_type_rule(e.cls) for e in entries],
    }
    return {
        "$schema": DRAFT,
        "title": "vdgraph workflow",
        "type": "object",
        "required": ["vdgraph", "nodes", "outputs"],
        "additionalProperties": False,
        "properties": {
            "$schema": {"type": "string"},
            "vdgraph": {"enum": list(FORMAT_VERSIONS), "description": "the workflow format version"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "inputs": {"type": "object", "additionalProperties": {"$ref": "#/$defs/input"}},
            "nodes": {"type": "object", "propertyNames": {"pattern": NAME.pattern, "not": {"const": "inputs"}},
                      "additionalProperties": {"$ref": "#/$defs/node"}},
            "outputs": {"type": "object", "minProperties": 1, "additionalProperties": {"$ref": "#/$defs/link"}},
            "checks": {"type": "array", "items": {
                "type": "object", "required": ["require"], "additionalProperties": False,
                "properties": {"require": {"type": "string", "description": "an expression over workflow inputs "
                                                                            "that must hold, e.g. 't0 < t1'"},
                               "message": {"type": "string"}, "hint": {"type": "string"}}}},
        },
        "$defs": {
            "link": {"type": "string", "pattern": LINK.pattern, "description": "'<node id>.<output>'"},
            "links": {"anyOf": [{"$ref": "#/$defs/link"}, {"type": "array", "items": {"$ref": "#/$defs/link"}}]},
            "input": _input_decl_schema(),
            "node": node_schema,
        },
    }


def _input_decl_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type"],
        "additionalProperties": False,
        "properties": {
            "type": {"type": "string", "pattern": r"^(list\[)*(int|float|str|bool)\]*$",
                     "examples": ["int", "float", "str", "bool", "list[int]"]},
            "default": {},
            "description": {"type": "string"},
            "choices": {"type": "array"},
            "min": {"type": "number"},
            "max": {"type": "number"},
        },
    }


def _node_type_rule(cls: type[Node]) -> dict[str, Any]:
    """if type == <id> then: the known `in` and `params` ports, and every required port set somewhere."""
    links = {p.name: _link_schema(p) for p in cls.inputs}
    params = {p.name: _param_schema(p) for p in cls.inputs if not p.type.link_only}
    then: dict[str, Any] = {
        "description": cls.description,
        "properties": {
            "in": {"properties": links, "additionalProperties": False},
            "params": {"properties": params, "additionalProperties": False},
        },
    }
    required = [_required_rule(p) for p in cls.inputs if p.required]
    if required:
        then["allOf"] = required
    return {"if": {"properties": {"type": {"const": cls.id}}, "required": ["type"]}, "then": then}


def _link_schema(port: Input) -> dict[str, Any]:
    ref = "#/$defs/links" if isinstance(port.type, ListOf) else "#/$defs/link"
    return {"$ref": ref, "description": f"{port.type.name} link: {port.doc}".rstrip(": ")}


def _param_schema(port: Input) -> dict[str, Any]:
    schema = dict(port.type.json_schema())
    bounds = {_BOUND_KEYWORDS[k]: v for k, v in port.bounds.items()}
    if bounds:
        target = schema["items"] if isinstance(port.type, ListOf) else schema
        target.update(bounds)
    if port.optional:
        schema = {"anyOf": [schema, {"type": "null"}]}
    if port.has_default:
        schema["default"] = port.default
    schema["description"] = f"{port.type.name}: {port.doc}".rstrip(": ")
    return schema


def _required_rule(port: Input) -> dict[str, Any]:
    in_links = {"required": ["in"], "properties": {"in": {"required": [port.name]}}}
    if port.type.link_only:
        return in_links
    in_params = {"required": ["params"], "properties": {"params": {"required": [port.name]}}}
    return {"anyOf": [in_links, in_params]}
