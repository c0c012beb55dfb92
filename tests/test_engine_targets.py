"""Files a run would not be allowed to write are refused before anything runs; nodes run without autograd."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from conftest import workflow

from vdgraph.events import NodeStarted
from vdgraph.executor import Executor
from vdgraph.node import Input, Node, Output
from vdgraph.outputs import OutputRefused
from vdgraph.types import TENSOR
from vdgraph.validate import validate
from vdgraph.workflow import load_workflow


def saving(filename_link: bool = False) -> dict:
    save = {"type": "core.save_json", "in": {"value": "a.value"}}
    if filename_link:
        save["in"]["filename"] = "inputs.name"
    doc = workflow({"a": {"type": "t.const", "params": {"value": 3}}, "save": save}, {"file": "save.path"},
                   {"name": {"type": "str", "default": "result.json"}})
    return doc


@pytest.mark.parametrize("name", ["../escape.json", "/etc/vdgraph-test.json"])
def test_a_target_outside_the_folder_is_refused_before_any_node_runs(registry, tmp_path, name):
    started: list[str] = []
    executor = Executor(registry, device="cpu", on_event=lambda e: started.append(e.node)
                        if isinstance(e, NodeStarted) else None)
    with pytest.raises(OutputRefused, match="outside the output folder|leaves the output folder"):
        executor.run(saving(filename_link=True), {"name": name}, output_dir=str(tmp_path / "out"))
    assert started == []  # not even the cheap upstream node ran
    assert not (tmp_path / "escape.json").exists()


def test_allowed_outside_runs(registry, tmp_path):
    result = Executor(registry, device="cpu").run(saving(True), {"name": str(tmp_path / "elsewhere.json")},
                                                  output_dir=str(tmp_path / "out"), allow_outside_output_dir=True)
    assert result["file"] == str(tmp_path / "elsewhere.json")


@pytest.mark.parametrize("name, why", [("", "names no file"), (".", "names no file"), ("a/..", "names no file"),
                                       ("{nope}.json", "unknown field {nope}")])
def test_validation_reports_a_name_that_can_never_be_written(registry, name, why):
    problems = validate(load_workflow(saving(True)), registry, {"name": name})
    assert [(p.code, p.node, p.port) for p in problems] == [("output.target", "save", "filename")]
    assert why in problems[0].message


def test_validation_accepts_templates_of_declared_inputs(registry):
    assert validate(load_workflow(saving(True)), registry, {"name": "{workflow}_{name}_{counter}.json"}) == []


class Grad(Node):
    """Multiplies by a parameter that requires grad."""

    id = "t.grad"
    inputs = [Input("n", int, default=2)]
    outputs = [Output("tensor", TENSOR)]

    def run(self, ctx: Any, n: int) -> Any:
        weight = torch.nn.Parameter(torch.ones(n))
        return weight * 2


def test_nodes_run_without_building_autograd_graphs(registry):
    registry.register(Grad)
    out = Executor(registry, device="cpu").run(workflow({"g": {"type": "t.grad"}}, {"t": "g.tensor"}))["t"]
    assert not out.requires_grad and out.grad_fn is None


def test_an_output_path_port_must_be_a_string():
    from vdgraph.errors import NodeDeclarationError

    with pytest.raises(NodeDeclarationError, match="output_path"):
        class Bad(Node):
            """Writes."""

            id = "t.bad_writer"
            inputs = [Input("path", int, default=1, output_path=True)]
            outputs = [Output("x", int)]

            def run(self, ctx: Any, path: int) -> int:
                return path


def test_the_workflow_being_run_is_never_replaced_even_with_overwrite(tmp_path):
    import json
    import shutil

    from conftest import REPO

    flow = tmp_path / "hello.json"
    shutil.copy(REPO / "workflows" / "hello.json", flow)
    before = flow.read_bytes()
    with pytest.raises(Exception, match="is what this run reads"):
        Executor(device="cpu").run(str(flow), output_dir=str(tmp_path), overwrite=True)
    assert flow.read_bytes() == before and json.loads(before)["name"] == "hello"


def test_an_empty_cache_dir_is_an_error_not_a_run_without_cache():
    with pytest.raises(ValueError, match="cache_dir is empty"):
        Executor(device="cpu", cache_dir="")
