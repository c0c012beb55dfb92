"""Turning results, reports, problems and node types into text people read (and JSON tools read)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from vdgraph.errors import Problem, short_repr
from vdgraph.executor import RunResult
from vdgraph.packs import LoadProblem
from vdgraph.registry import NodeEntry


def describe_value(value: Any) -> str:
    """One line: tensors as shape / dtype / device, modules by class and size, text as is, the rest by a repr cut
    to 200 characters (safe for any value: see `short_repr`)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return f"Tensor {tuple(value.shape)} {str(value.dtype).removeprefix('torch.')} on {value.device}"
    if torch is not None and isinstance(value, torch.nn.Module):
        count = sum(p.numel() for p in value.parameters())
        return f"{type(value).__name__} module ({count:,} parameters)"
    if isinstance(value, str):
        return value
    return short_repr(value, 200)


def value_json(value: Any) -> Any:
    """A JSON-able rendering: JSON values as they are, tensors described, other objects by type and repr."""
    torch = sys.modules.get("torch")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if torch is not None and isinstance(value, torch.Tensor):
        return {"tensor": {"shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch."),
                           "device": str(value.device)}}
    if isinstance(value, (list, tuple)):
        return [value_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): value_json(v) for k, v in value.items()}
    return {"object": type(value).__name__, "repr": describe_value(value)}


def format_outputs(outputs: dict[str, Any]) -> str:
    width = max((len(name) for name in outputs), default=0)
    return "\n".join(f"  {name.ljust(width)}  {describe_value(value)}" for name, value in outputs.items())


def format_report(result: RunResult, explain: bool, per_node: bool = True) -> str:
    ran = len(result.ran)
    lines = [f"{ran} ran, {len(result.report) - ran} cached, {result.seconds:.3f} s"]
    if not result.report or not per_node:
        return lines[0]
    id_width = max(len(r.id) for r in result.report)
    type_width = max(len(r.type) for r in result.report)
    for r in result.report:
        timing = f"{r.seconds:8.3f} s" if r.status != "cached-memory" else " " * 10
        peak = f"  peak {r.peak_bytes / 2**20:,.1f} MiB" if r.peak_bytes is not None else ""
        why = f"  ({r.reason})" if explain and r.reason else ""
        lines.append(f"  {r.id.ljust(id_width)}  {r.type.ljust(type_width)}  {r.status:<13} {timing}{peak}{why}")
    return "\n".join(lines)


def format_problems(problems: Iterable[Problem]) -> str:
    lines = []
    for p in problems:
        lines.append(f"{p.where}: {p.severity} [{p.code}] {p.message}")
        if p.hint:
            lines.append(f"    hint: {p.hint}")
    return "\n".join(lines)


def format_load_problems(problems: Iterable[LoadProblem]) -> str:
    return "\n".join(str(p) for p in problems)


def format_node(entry: NodeEntry) -> str:
    cls = entry.cls
    flags = [f"v{cls.version}", cls.category]
    if not cls.deterministic:
        flags.append("non-deterministic")
    if cls.side_effects:
        flags.append("side effects")
    lines = [f"{cls.id}  ({', '.join(flags)})  from {entry.source}"]
    lines += [f"    {line}" for line in cls.description.splitlines()]
    for label, ports in (("in ", cls.inputs), ("out", cls.outputs)):
        for i, port in enumerate(ports):
            head = f"  {label}: " if i == 0 else "       "
            lines.append(head + _port_line(port))
    return "\n".join(lines)


def _port_line(port: Any) -> str:
    text = f"{port.name}: {port.type.name}"
    info = port.describe()
    if "default" in info:
        text += f" = {info['default']!r}"
    elif info.get("optional"):
        text += " (optional)"
    elif "required" in info:
        text += " (required, link only)" if info["link_only"] else " (required)"
    bounds = [f"{k} {v}" for k, v in info.items() if k in ("ge", "gt", "le", "lt")]
    if bounds:
        text += f" [{', '.join(bounds)}]"
    return text + (f" - {port.doc}" if port.doc else "")
