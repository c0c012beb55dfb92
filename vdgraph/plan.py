"""A validated workflow, compiled for execution: node classes resolved, literals normalised, links typed.

Validation builds a Plan only when it found no errors, so the executor can trust every field here and stay fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, Union

from vdgraph.node import Node
from vdgraph.workflow import Workflow


@dataclasses.dataclass(frozen=True, slots=True)
class LinkRef:
    """A value taken from another node's output; `convert` is the declared conversion (int -> float) if any."""

    node: str
    output: str
    convert: Callable[[Any], Any] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class InputRef:
    """A value taken from a workflow input."""

    name: str
    convert: Callable[[Any], Any] | None = None


Link = Union[LinkRef, tuple[LinkRef, ...]]
"""A port fed by one output, or (for a list port) by several outputs gathered into a list in order."""


@dataclasses.dataclass(frozen=True, slots=True)
class NodePlan:
    """One node ready to run: every input port is exactly one of a literal, a workflow input, or a link."""

    id: str
    cls: type[Node]
    params: dict[str, Any]
    inputs: dict[str, InputRef]
    links: dict[str, Link]
    upstream: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Plan:
    workflow: Workflow
    nodes: dict[str, NodePlan]
    order: tuple[str, ...]
    """Every node, in a topological order computed with networkx."""
    outputs: dict[str, LinkRef | InputRef]
    input_values: dict[str, Any]
    """The effective value of each workflow input: the run's value, else the declared default."""

    def needed(self, output_names: Iterable[str]) -> list[str]:
        """The nodes the given outputs depend on, in topological order (nothing else needs to run)."""
        stack = [ref.node for name in output_names if isinstance(ref := self.outputs[name], LinkRef)]
        seen: set[str] = set()
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(self.nodes[node].upstream)
        return [node for node in self.order if node in seen]
