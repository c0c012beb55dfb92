"""Cache keys: sha256 of canonical JSON of a node's recipe, never Python's hash() (salted per process).

A recipe is everything that decides a node's outputs: its type and version, a fingerprint of its code (see
`vdgraph.fingerprint`: a code change invalidates the cache even when nobody bumped `version`), its literal params,
the workflow input values it reads, the keys (and output names) of the upstream values it reads, and the runtime
facts that change results (device, dtype). Keys hash recipes, not data, so they are all known before anything
runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from vdgraph.fingerprint import code_fingerprint
from vdgraph.plan import LinkRef, NodePlan


# one encoder for every key: building a JSONEncoder per call costs more than encoding a small recipe
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                            check_circular=False)  # recipes are trees of JSON literals: no cycles possible


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, no whitespace, no NaN (which has no JSON spelling)."""
    return _ENCODER.encode(value)


def digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def cache_key(node_recipe: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of the recipe as a tuple (type, version, code, params, inputs, links, runtime,
    nonce): positional, so only the small inner mappings need their keys sorted."""
    parts = [node_recipe["type"], node_recipe["version"], node_recipe["code"], node_recipe["params"],
             node_recipe["inputs"], node_recipe["links"], node_recipe["runtime"], node_recipe.get("nonce")]
    if node_recipe.get("content") is not None:  # only then: keys of nodes without one stay as they were
        parts.append(node_recipe["content"])
    return digest(parts)


def file_links(node: NodePlan) -> list[str]:
    """The node's `reads_file` ports fed by links: its key waits on their values (the files they name)."""
    return [port for port in node.links if node.cls.input_map[port].reads_file]


def recipe(node: NodePlan, input_values: Mapping[str, Any], keys: Mapping[str, str], runtime: Mapping[str, str],
           nonce: str | None = None, workflow_dir: str | None = None,
           linked_files: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The node's recipe. Node ids and input names are kept only under "names" (for `--explain`): the key
    ignores them, so renaming a node in the file does not invalidate its cache. "content" is what the node's
    `content_key` says about the files its inputs name (their content hashes), when it says anything;
    `linked_files` holds the values of its `reads_file` ports that links feed (see `file_links`)."""
    inputs = {}
    for port, ref in node.inputs.items():
        value = input_values[ref.name]
        inputs[port] = ref.convert(value) if ref.convert else value
    links: dict[str, Any] = {}
    for port, link in node.links.items():
        if isinstance(link, LinkRef):
            links[port] = [keys[link.node], link.output]
        else:
            links[port] = [[keys[ref.node], ref.output] for ref in link]
    out: dict[str, Any] = {"type": node.cls.id, "version": node.cls.version, "code": code_fingerprint(node.cls),
                           "params": node.params, "inputs": inputs, "links": links, "runtime": runtime}
    if nonce is not None:
        out["nonce"] = nonce
    content = node.cls.content_key({**node.params, **inputs, **(linked_files or {})}, workflow_dir)
    if content is not None:
        out["content"] = content
    return out


def recipe_names(node: NodePlan) -> dict[str, Any]:
    """Which workflow input and which upstream node feed each port (what `--explain` talks about)."""
    links = {port: (link.node if isinstance(link, LinkRef) else [ref.node for ref in link])
             for port, link in node.links.items()}
    return {"inputs": {port: ref.name for port, ref in node.inputs.items()}, "links": links}
