"""Every check of a workflow, run in one pass before anything executes.

`check()` returns all problems (each with a stable code, the node id, the port, a message and a hint) and, when
there is no error, the compiled `Plan`. Checks never stop at the first problem, and a problem is not reported
twice through its consequences: a link to a node whose type is unknown is not also a type mismatch.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from typing import Any

import networkx as nx

from vdgraph.errors import Problem, describe_exception, short_repr
from vdgraph.expressions import ExpressionError, evaluate, expression_names
from vdgraph.node import REQUIRED, Input, Invalid, Known, Node
from vdgraph.outputs import OutputFolder, OutputRefused
from vdgraph.plan import InputRef, Link, LinkRef, NodePlan, Plan
from vdgraph.registry import Registry
from vdgraph.types import BOOL, FLOAT, INT, STR, ListOf, PortType, connection, opaque_types
from vdgraph.workflow import INPUTS, NodeSpec, Workflow, parse_link


def validate(workflow: Workflow, registry: Registry, inputs: Mapping[str, Any] | None = None,
             require_inputs: bool = False) -> list[Problem]:
    """Every problem of `workflow` (errors and warnings). Inputs without a default are only required when
    `require_inputs` is set (a run needs them; a file on its own is still valid without them)."""
    return check(workflow, registry, inputs, require_inputs)[0]


def check(workflow: Workflow, registry: Registry, inputs: Mapping[str, Any] | None = None,
          require_inputs: bool = True) -> tuple[list[Problem], Plan | None]:
    """(every problem, the plan when there is no error)."""
    return _Checker(workflow, registry, dict(inputs or {}), require_inputs).run()


class _Checker:
    """One validation pass. Holds what the separate checks share (resolved classes, effective input values)."""

    def __init__(self, workflow: Workflow, registry: Registry, inputs: dict[str, Any], require_inputs: bool):
        self.workflow = workflow
        self.registry = registry
        self.run_inputs = inputs
        self.require_inputs = require_inputs
        self.problems: list[Problem] = list(workflow.load_problems)
        self.input_ports: dict[str, Input] = {}
        self.input_values: dict[str, Any] = {}
        self.classes: dict[str, type[Node]] = {}
        self.plans: dict[str, NodePlan] = {}
        self._hints: dict[tuple[PortType, PortType], str] = {}

    def run(self) -> tuple[list[Problem], Plan | None]:
        self.check_input_declarations()
        self.check_run_inputs()
        for node_id, spec in self.workflow.nodes.items():
            cls = self.registry.get(spec.type)
            if cls is None:
                self.report_missing_type(node_id, spec)
            else:
                self.classes[node_id] = cls
        for node_id, cls in self.classes.items():
            self.check_node(node_id, self.workflow.nodes[node_id], cls)
        order = self.check_cycles()
        outputs = self.check_outputs()
        self.check_reachable(outputs)
        self.check_workflow_rules()
        if order is not None:
            self.check_values(order)
        if any(p.severity == "error" for p in self.problems) or order is None:
            return self.problems, None
        plan = Plan(self.workflow, self.plans, tuple(order), outputs, dict(self.input_values))
        return self.problems, plan

    def add(self, code: str, message: str, hint: str = "", node: str | None = None, port: str | None = None,
            path: tuple[str, ...] = (), severity: str = "error") -> None:
        self.problems.append(self.workflow.problem(code, message, hint, node, port, severity, path))

    # -- workflow inputs ---------------------------------------------------------------------------------------

    def check_input_declarations(self) -> None:
        for name, decl in self.workflow.inputs.items():
            port, why = decl.port(name)
            path = ("inputs", name)
            if port is None:
                self.add("input.type", f"workflow input {name!r}: {why}", "fix the declaration", INPUTS, name,
                         (*path, "type"))
                continue
            self.input_ports[name] = port
            if decl.has_default:
                ok, value, code, why = port.check_value(decl.default)
                if ok:
                    self.input_values[name] = value
                else:
                    self.add(_input_code(code), f"default of workflow input {name!r} is invalid: {why}",
                             _input_hint(code, port, decl.type), INPUTS, name, (*path, "default"))

    def check_run_inputs(self) -> None:
        declared = ", ".join(self.workflow.inputs) or "none"
        for name, value in self.run_inputs.items():
            if name not in self.workflow.inputs:
                self.add("input.unknown", f"the run sets an undeclared workflow input {name!r}",
                         f"declared inputs: {declared}", INPUTS, name)
                continue
            port = self.input_ports.get(name)
            if port is None:
                continue  # the declaration itself is wrong, reported already
            ok, value, code, why = port.check_value(value)
            if ok:
                self.input_values[name] = value
            else:
                self.input_values.pop(name, None)
                self.add(_input_code(code), f"value of workflow input {name!r} is invalid: {why}",
                         _input_hint(code, port, self.workflow.inputs[name].type), INPUTS, name)
        if self.require_inputs:
            for name, decl in self.workflow.inputs.items():
                if name in self.input_ports and not decl.has_default and name not in self.run_inputs:
                    self.add("input.missing", f"workflow input {name!r} has no default and the run does not set it",
                             f"set it: --set {name}=... (or inputs={{'{name}': ...}} from Python)", INPUTS, name,
                             ("inputs", name))

    # -- nodes -------------------------------------------------------------------------------------------------

    def report_missing_type(self, node_id: str, spec: NodeSpec) -> None:
        missing = self.registry.missing(spec.type)
        self.add(missing.code, missing.message, missing.hint, node_id, None, ("nodes", node_id, "type"))

    def check_node(self, node_id: str, spec: NodeSpec, cls: type[Node]) -> None:
        inputs: dict[str, InputRef] = {}
        links: dict[str, Link] = {}
        for port_name, value in spec.in_.items():
            port = self.known_port(node_id, cls, port_name, "in")
            if port is None:
                continue
            if port_name in spec.params:
                self.add("port.both", f"port {port_name!r} is set both as a link (in) and as a literal (params)",
                         "keep one of them", node_id, port_name, ("nodes", node_id, "params", port_name))
                continue
            source = self.check_link_value(node_id, port, value)
            if isinstance(source, InputRef):
                inputs[port_name] = source
            elif source is not None:
                links[port_name] = source
        params = self.check_params(node_id, spec, cls)
        upstream = {ref.node for link in links.values() for ref in (link if isinstance(link, tuple) else (link,))}
        self.plans[node_id] = NodePlan(node_id, cls, params, inputs, links, tuple(sorted(upstream)))

    def check_params(self, node_id: str, spec: NodeSpec, cls: type[Node]) -> dict[str, Any]:
        """The literal value of every port not fed by a link: given in `params`, else the port's default."""
        params: dict[str, Any] = {}
        for port_name, value in spec.params.items():
            port = self.known_port(node_id, cls, port_name, "params")
            if port is None or port_name in spec.in_:
                continue
            ok, value, code, why = port.check_value(value)
            if ok:
                params[port_name] = value
            else:
                hint = _param_hint(code, port)
                if self.names_output(value):
                    hint = f"{value!r} is a link: links go under 'in', not 'params' (\"in\": {{\"{port_name}\": {value!r}}})"
                self.add(code, why, hint, node_id, port_name, ("nodes", node_id, "params", port_name))
        defaults, required = _defaults(cls)
        for name, default in defaults.items():
            if name not in spec.in_ and name not in spec.params:
                params[name] = default
        for port in required:
            if port.name not in spec.in_ and port.name not in spec.params:
                where = "a link in 'in'" if port.type.link_only else "a link in 'in' or a value in 'params'"
                self.add("port.missing", f"required input {port.name!r} ({port.type.name}) is not set",
                         f"give it {where}", node_id, port.name, ("nodes", node_id))
        return params

    def names_output(self, value: Any) -> bool:
        """Whether a literal is spelled like a link to a node or workflow input of this workflow."""
        parsed = parse_link(value)
        return parsed is not None and (parsed[0] in self.workflow.nodes or
                                       (parsed[0] == INPUTS and parsed[1] in self.workflow.inputs))

    def known_port(self, node_id: str, cls: type[Node], port_name: str, section: str) -> Input | None:
        port = cls.input_map.get(port_name)
        if port is None:
            close = difflib.get_close_matches(port_name, list(cls.input_map), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            self.add("port.unknown", f"{cls.id} has no input {port_name!r}",
                     hint + f"inputs of {cls.id}: {', '.join(cls.input_map) or 'none'}", node_id, port_name,
                     ("nodes", node_id, section, port_name))
        return port

    # -- links -------------------------------------------------------------------------------------------------

    def check_link_value(self, node_id: str, port: Input, value: Any) -> LinkRef | InputRef | tuple | None:
        """A port's `in` entry: one link, or for a list port a JSON list of links gathered into one list."""
        if isinstance(value, list) and isinstance(port.type, ListOf):
            refs = [self.check_link(node_id, port, item, port.type.item, (str(i),)) for i, item in enumerate(value)]
            if any(ref is None for ref in refs):
                return None
            if any(isinstance(ref, InputRef) for ref in refs):
                self.add("link.malformed", "a gathered list links node outputs only, not workflow inputs",
                         "link the input to a single port instead", node_id, port.name,
                         ("nodes", node_id, "in", port.name))
                return None
            return tuple(refs)  # type: ignore[arg-type]
        return self.check_link(node_id, port, value, port.type, ())

    def check_link(self, node_id: str, port: Input, value: Any, target: PortType,
                   index: tuple[str, ...]) -> LinkRef | InputRef | None:
        path = ("nodes", node_id, "in", port.name, *index)
        parsed = parse_link(value)
        if parsed is None:
            hint = ("literal values go in 'params'" if not isinstance(value, str)
                    else "write '<node id>.<output>' or 'inputs.<name>'")
            self.add("link.malformed", f"{short_repr(value)} is not a link", hint, node_id, port.name, path)
            return None
        source_id, output = parsed
        if source_id == INPUTS:
            return self.check_input_link(node_id, port, output, target, path)
        if source_id not in self.workflow.nodes:
            if source_id not in self.workflow.broken_nodes:
                close = difflib.get_close_matches(source_id, list(self.workflow.nodes), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"nodes: {', '.join(self.workflow.nodes)}"
                self.add("link.unknown-node", f"link {short_repr(value)} names an unknown node {short_repr(source_id)}", hint,
                         node_id, port.name, path)
            return None
        source_cls = self.classes.get(source_id)
        if source_cls is None:
            return None  # its type is unknown: reported on that node
        out = source_cls.output_map.get(output)
        if out is None:
            self.add("link.unknown-output", f"link {short_repr(value)}: {source_cls.id} has no output {output!r}",
                     f"outputs of {source_cls.id}: {', '.join(source_cls.output_map)}", node_id, port.name, path)
            return None
        conn = connection(out.type, target)
        if conn is None:
            self.add("link.type-mismatch",
                     f"{short_repr(value)} gives {out.type.name}, but input {port.name!r} takes {target.name}",
                     self.conversion_hint(out.type, target), node_id, port.name, path)
            return None
        return LinkRef(source_id, output, conn.convert)

    def check_input_link(self, node_id: str, port: Input, name: str, target: PortType,
                         path: tuple[str, ...]) -> InputRef | None:
        if name not in self.workflow.inputs:
            declared = ", ".join(self.workflow.inputs) or "none"
            self.add("link.unknown-input", f"link 'inputs.{name}' names an undeclared workflow input",
                     f'declare it under "inputs" (declared: {declared})', node_id, port.name, path)
            return None
        input_port = self.input_ports.get(name)
        if input_port is None:
            return None  # bad declaration, reported already
        conn = connection(input_port.type, target)
        if conn is None:
            self.add("link.type-mismatch",
                     f"workflow input {name!r} is {input_port.type.name}, but input {port.name!r} takes {target.name}",
                     f"declare {name!r} as {target.name}" if not target.link_only else
                     f"{target.name} values only come from node outputs", node_id, port.name, path)
            return None
        if name in self.input_values and not target.link_only:  # a port's constraints apply to the value
            value = self.input_values[name]
            value = conn.convert(value) if conn.convert else value
            ok, _, code, why = port.check_value(value)
            if not ok:
                self.add(code, f"workflow input {name!r} = {short_repr(value)} does not fit: {why}",
                         _param_hint(code, port), node_id, port.name, path)
                return None
        return InputRef(name, conn.convert)

    def conversion_hint(self, source: PortType, target: PortType) -> str:
        """Name a registered node that converts source to target, else the types the target accepts."""
        key = (source, target)
        if key not in self._hints:
            self._hints[key] = _conversion_hint(self.registry, source, target)
        return self._hints[key]

    # -- checks across values ---------------------------------------------------------------------------------

    def check_workflow_rules(self) -> None:
        """The workflow's own `checks` over its input values (those whose values are known)."""
        for index, rule in enumerate(self.workflow.checks):
            path = ("checks", str(index))
            try:
                names = expression_names(rule.require)
            except ExpressionError as exc:
                self.add("check.malformed", f"check {rule.require!r}: {exc}",
                         "write a comparison of workflow inputs, e.g. \"t0 < t1\"", INPUTS, None, path)
                continue
            unknown = sorted(n for n in names if n not in self.workflow.inputs)
            if unknown:
                self.add("check.malformed", f"check {rule.require!r} names undeclared inputs {', '.join(unknown)}",
                         f"declared inputs: {', '.join(self.workflow.inputs) or 'none'}", INPUTS, None, path)
                continue
            if not all(n in self.input_values for n in names):
                continue  # decided when the run sets them
            values = {n: self.input_values[n] for n in names}
            try:
                passed = evaluate(rule.require, values)
            except ExpressionError as exc:
                self.add("check.malformed", f"check {rule.require!r} cannot be evaluated: {exc}",
                         "make it a comparison of workflow inputs", INPUTS, None, path)
                continue
            if not passed:
                current = ", ".join(f"{n} = {short_repr(v)}" for n, v in values.items())
                message = f"{rule.message or 'check failed'}: {rule.require} does not hold ({current})"
                port = names[0] if names else None
                self.add("input.check", message, rule.hint or f"change {' or '.join(values)}", INPUTS, port, path)

    def check_values(self, order: list[str]) -> None:
        """Run each node's `check` on the values known before running, upstream first; `infer` passes what a
        node can tell about its outputs downstream. A node whose check fails passes nothing on, so one mistake
        is reported once, not again by every node downstream of it."""
        facts: dict[str, Mapping[str, Any]] = {}
        for node_id in order:
            plan = self.plans.get(node_id)
            if plan is None:
                continue
            known = self.known_inputs(plan, facts)
            self.check_output_names(plan, known)
            self.check_input_names(plan, known)
            if self.run_node_checks(plan, known):
                continue
            try:
                inferred = plan.cls.infer(known)
            except Exception as exc:  # a bug in a pack's infer() must not crash validation
                self.add("node.check-crashed", f"{plan.cls.id}.infer raised {describe_exception(exc, 200)}",
                         "a bug in the node type; report it to its pack's author", node_id, None, ("nodes", node_id))
                continue
            facts[node_id] = dict(inferred or {})

    def known_inputs(self, plan: NodePlan, facts: Mapping[str, Mapping[str, Any]]) -> Known:
        values: dict[str, Any] = dict(plan.params)
        for port, ref in plan.inputs.items():
            if ref.name in self.input_values:
                value = self.input_values[ref.name]
                values[port] = ref.convert(value) if ref.convert else value
        for port, link in plan.links.items():
            refs = link if isinstance(link, tuple) else (link,)
            found = [facts.get(ref.node, {}) for ref in refs]
            if all(ref.output in out for ref, out in zip(refs, found)):
                items = [ref.convert(out[ref.output]) if ref.convert else out[ref.output]
                         for ref, out in zip(refs, found)]
                values[port] = items if isinstance(link, tuple) else items[0]
        return Known(values, linked=(*plan.inputs, *plan.links))

    def check_output_names(self, plan: NodePlan, known: Known) -> None:
        """A name for a file the node writes must name a file and use only known `{fields}`; whether it stays
        inside the output folder depends on the run's folder and options, and the executor checks that before any
        node runs."""
        for port in plan.cls.inputs:
            value = known.get(port.name)
            if not port.output_path or not isinstance(value, str):
                continue
            fields = {name: self.input_values.get(name, name) for name in self.workflow.inputs}
            folder = OutputFolder("out", allow_outside=True, node=plan.id,
                                  fields={"workflow": self.workflow.display_name, **fields})
            try:
                folder.claim(value, port=port.name)
            except OutputRefused as exc:
                hint, path = self.where_set(plan, port.name, "name a file inside the output folder, e.g. "
                                                             "'clip.mp4' or '{workflow}_{seed}.mp4'")
                self.add("output.target", str(exc).split(": ", 1)[-1], hint, plan.id, port.name, path)

    def check_input_names(self, plan: NodePlan, known: Known) -> None:
        """A file a node reads cannot have a NUL character in its name (the OS refuses any such path): said here,
        where the workflow shows it, not as a bare error when the node runs."""
        for port in plan.cls.inputs:
            value = known.get(port.name)
            names = value if isinstance(value, list) else [value]
            if port.reads_file and any(isinstance(name, str) and "\0" in name for name in names):
                hint, path = self.where_set(plan, port.name, "remove the NUL character (\\u0000) from the path")
                self.add("input.path", "the path holds a NUL character, which no file name can hold", hint, plan.id,
                         port.name, path)

    def where_set(self, plan: NodePlan, port: str, hint: str) -> tuple[str, tuple[str, ...]]:
        """The hint, plus which workflow input sets the port when one does, and the path of the place the user
        wrote the port's value (the input's declaration, the literal, the link, else the node)."""
        source = plan.inputs.get(port)
        if source is not None:
            return (hint + "; " if hint else "") + f"{port} is set by workflow input {source.name!r}", (
                "inputs", source.name)
        if port in self.workflow.nodes[plan.id].params:
            return hint, ("nodes", plan.id, "params", port)
        if port in plan.links:
            return hint, ("nodes", plan.id, "in", port)
        return hint, ("nodes", plan.id)

    def run_node_checks(self, plan: NodePlan, known: Known) -> bool:
        """Report what the node's `check` finds; returns whether it found anything."""
        try:
            found = list(plan.cls.check(known) or ())
        except Exception as exc:  # a bug in a pack's check() must not crash validation
            self.add("node.check-crashed", f"{plan.cls.id}.check raised {describe_exception(exc, 200)}",
                     "a bug in the node type; report it to its pack's author", plan.id, None, ("nodes", plan.id))
            return True
        for invalid in found:
            if not isinstance(invalid, Invalid):
                self.add("node.check-crashed", f"{plan.cls.id}.check yielded {type(invalid).__name__}, not Invalid",
                         "a bug in the node type; report it to its pack's author", plan.id, None, ("nodes", plan.id))
                continue
            hint, path = self.where_set(plan, invalid.port, invalid.hint)
            self.add(invalid.code, invalid.message, hint, plan.id, invalid.port or None, path)
        return bool(found)

    # -- the graph ---------------------------------------------------------------------------------------------

    def check_cycles(self) -> list[str] | None:
        """A topological order of all nodes (networkx), or None after reporting each cycle with its nodes."""
        graph = nx.DiGraph()
        graph.add_nodes_from(self.workflow.nodes)
        graph.add_edges_from((up, node_id) for node_id, plan in self.plans.items() for up in plan.upstream)
        try:  # generation by generation; within one, in the order of the file (nodes were added in that order)
            return list(nx.topological_sort(graph))
        except nx.NetworkXUnfeasible:
            pass
        for component in nx.strongly_connected_components(graph):
            first = min(component)
            if len(component) == 1 and not graph.has_edge(first, first):
                continue
            edges = nx.find_cycle(graph.subgraph(component), source=first)
            ring = [u for u, _ in edges] + [edges[0][0]]
            self.add("graph.cycle", "the links form a cycle: " + " -> ".join(ring),
                     "a node cannot depend on its own output; remove one of these links", first, None,
                     ("nodes", first))
        return None

    def check_outputs(self) -> dict[str, LinkRef | InputRef]:
        raw = self.workflow.outputs
        if not raw:
            self.add("output.none", "the workflow declares no outputs, so nothing would run",
                     'add "outputs": {"name": "<node id>.<output>"}', path=("outputs",))
            return {}
        outputs: dict[str, LinkRef | InputRef] = {}
        for name, value in raw.items():
            path = ("outputs", name)
            parsed = parse_link(value)
            if parsed is None:
                self.add("link.malformed", f"output {name!r}: {short_repr(value)} is not a link",
                         "write '<node id>.<output>'", None, name, path)
                continue
            node_id, port = parsed
            if node_id == INPUTS:
                if port in self.workflow.inputs:
                    outputs[name] = InputRef(port)
                else:
                    self.add("output.dangling", f"output {name!r} names an undeclared workflow input {port!r}",
                             f"declared inputs: {', '.join(self.workflow.inputs) or 'none'}", None, name, path)
                continue
            cls = self.classes.get(node_id)
            if node_id not in self.workflow.nodes:
                close = difflib.get_close_matches(node_id, list(self.workflow.nodes), n=1)
                self.add("output.dangling", f"output {name!r} names an unknown node {node_id!r}",
                         f"did you mean {close[0]!r}?" if close else "name a node of this workflow", None, name, path)
            elif cls is not None and port not in cls.output_map:
                self.add("output.dangling", f"output {name!r}: node {node_id!r} ({cls.id}) has no output {port!r}",
                         f"outputs of {cls.id}: {', '.join(cls.output_map)}", None, name, path)
            elif cls is not None:
                outputs[name] = LinkRef(node_id, port)
        return outputs

    def check_reachable(self, outputs: dict[str, LinkRef | InputRef]) -> None:
        """Warn about nodes no output depends on: they never run, which is usually a forgotten link.

        Reachability follows the links as written, not only those that validated, and is not judged at all when
        an output could not be resolved: one bad link is then one error, not a warning for every node above it."""
        if not outputs or len(outputs) < len(self.workflow.outputs):
            return
        stack = [ref.node for ref in outputs.values() if isinstance(ref, LinkRef)]
        seen: set[str] = set()
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(self.written_upstream(node))
        for node_id in self.plans:
            if node_id not in seen:
                self.add("node.unreachable", f"no output depends on node {node_id!r}, so it never runs",
                         "link it towards an output, list it in 'outputs', or remove it", node_id, None,
                         ("nodes", node_id), severity="warning")

    def written_upstream(self, node_id: str) -> list[str]:
        """The nodes a node's `in` section names, whether or not those links are valid."""
        spec = self.workflow.nodes.get(node_id)
        if spec is None:
            return []
        found = []
        for value in spec.in_.values():
            for item in value if isinstance(value, list) else (value,):
                parsed = parse_link(item)
                if parsed is not None and parsed[0] in self.workflow.nodes:
                    found.append(parsed[0])
        return found


@functools.lru_cache(maxsize=None)
def _defaults(cls: type[Node]) -> tuple[dict[str, Any], tuple[Input, ...]]:
    """({port: default} of the ports that may be left out (None for optional ones), the required ports).

    Memoised per class: node declarations are immutable once the class statement has run."""
    defaults = {p.name: (None if p.default is REQUIRED else p.default) for p in cls.inputs if not p.required}
    return defaults, tuple(p for p in cls.inputs if p.required)


def _input_code(code: str) -> str:
    """Problems with workflow input values are `input.type`, except range and choice misses."""
    return "input.type" if code in ("param.type", "param.link-only") else code


def _input_hint(code: str, port: Input, declared: str) -> str:
    return _param_hint(code, port) if code in ("param.range", "param.choice") else f"{port.name} is declared as {declared}"


def _param_hint(code: str, port: Input) -> str:
    if code == "param.link-only":
        return f"link it in 'in' from a node output of type {port.type.name}"
    if code == "param.range":
        return "allowed: " + ", ".join(f"{k} {v}" for k, v in port.bounds.items())
    if code == "param.choice":
        return "choose one of " + ", ".join(repr(c) for c in port.type.choices)  # type: ignore[attr-defined]
    return f"{port.name} takes {port.type.name}"


def _conversion_hint(registry: Registry, source: PortType, target: PortType) -> str:
    """Name the node type that turns `source` into `target` (the one needing the fewest other inputs), else say
    which types the target accepts."""
    best: tuple[int, str] | None = None
    for entry in registry.entries(load_all=False):  # the packs already in use: a hint imports no other code
        cls = entry.cls
        takes = [p for p in cls.inputs if connection(source, p.type) is not None]
        gives = [o for o in cls.outputs if connection(o.type, target) is not None]
        if not takes or not gives or connection(source, target) is not None:
            continue
        others = [p.name for p in cls.inputs if p.required and p is not takes[0]]
        if best is not None and len(others) >= best[0]:
            continue
        also = f" (it also needs {', '.join(others)})" if others else ""
        best = (len(others), f"insert a {cls.id!r} node: {source.name} -> {cls.id}.{takes[0].name}, "
                             f"{cls.id}.{gives[0].name} -> {target.name}{also}")
    if best is not None:
        return best[1]
    candidates: list[PortType] = [INT, FLOAT, STR, BOOL, *opaque_types().values()]
    accepted = sorted({t.name for t in candidates if connection(t, target) is not None} - {target.name})
    if not accepted:
        return f"only {target.name} values connect to it, and no installed node converts {source.name} to it"
    return f"{target.name} also accepts " + ", ".join(accepted)

