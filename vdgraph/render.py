"""A workflow's DAG as Graphviz dot or Mermaid text, for looking at it (no validation needed: a broken file
can still be drawn, which helps finding what is wrong with it)."""

from __future__ import annotations

from collections.abc import Iterator

from vdgraph.workflow import INPUTS, Workflow, parse_link


def _edges(workflow: Workflow) -> Iterator[tuple[str, str, str, str]]:
    """(source node or 'inputs', source output or input name, target node, target port) for every link."""
    for node_id, spec in workflow.nodes.items():
        for port, value in spec.in_.items():
            for item in value if isinstance(value, list) else [value]:
                parsed = parse_link(item)
                if parsed is not None:
                    yield parsed[0], parsed[1], node_id, port


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(workflow: Workflow) -> str:
    lines = [f"digraph {_dot_quote(workflow.display_name)} {{", "  rankdir=LR;",
             '  node [shape=box, style=rounded, fontname="Helvetica"];', '  edge [fontname="Helvetica", fontsize=10];']
    for name, decl in workflow.inputs.items():
        lines.append(f"  {_dot_quote('inputs.' + name)} [shape=ellipse, label={_dot_quote(f'{name}: {decl.type}')}];")
    for node_id, spec in workflow.nodes.items():
        lines.append(f"  {_dot_quote(node_id)} [label={_dot_quote(node_id + chr(10) + spec.type)}];")
    for name in workflow.outputs:
        lines.append(f"  {_dot_quote('output:' + name)} [shape=note, label={_dot_quote(name)}];")
    for source, output, target, port in _edges(workflow):
        if source == INPUTS:
            lines.append(f"  {_dot_quote('inputs.' + output)} -> {_dot_quote(target)} [label={_dot_quote(port)}];")
        else:
            label = _dot_quote(f"{output} → {port}")
            lines.append(f"  {_dot_quote(source)} -> {_dot_quote(target)} [label={label}];")
    for name, value in workflow.outputs.items():
        parsed = parse_link(value)
        if parsed is not None:
            source = f"inputs.{parsed[1]}" if parsed[0] == INPUTS else parsed[0]
            lines.append(f"  {_dot_quote(source)} -> {_dot_quote('output:' + name)} [label={_dot_quote(parsed[1])}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return '"' + text.replace('"', "#quot;").replace("\n", "<br/>") + '"'


def to_mermaid(workflow: Workflow) -> str:
    """Mermaid flowchart; node ids are replaced by n0, n1 ... (Mermaid ids cannot hold every character)."""
    ids = {("node", n): f"n{i}" for i, n in enumerate(workflow.nodes)}
    ids.update({("input", n): f"i{i}" for i, n in enumerate(workflow.inputs)})
    ids.update({("output", n): f"o{i}" for i, n in enumerate(workflow.outputs)})
    lines = ["flowchart LR"]
    for name, decl in workflow.inputs.items():
        lines.append(f"  {ids['input', name]}([{_mermaid_text(f'{name}: {decl.type}')}])")
    for node_id, spec in workflow.nodes.items():
        lines.append(f"  {ids['node', node_id]}[{_mermaid_text(node_id + chr(10) + spec.type)}]")
    for name in workflow.outputs:
        lines.append(f"  {ids['output', name]}[/{_mermaid_text(name)}/]")

    def source_id(node: str, output: str) -> str | None:
        return ids.get(("input", output)) if node == INPUTS else ids.get(("node", node))

    for source, output, target, port in _edges(workflow):
        start = source_id(source, output)
        if start is not None:
            label = port if source == INPUTS else f"{output} → {port}"
            lines.append(f"  {start} -->|{_mermaid_text(label)}| {ids['node', target]}")
    for name, value in workflow.outputs.items():
        parsed = parse_link(value)
        start = source_id(*parsed) if parsed else None
        if start is not None:
            lines.append(f"  {start} -->|{_mermaid_text(parsed[1])}| {ids['output', name]}")
    return "\n".join(lines) + "\n"
