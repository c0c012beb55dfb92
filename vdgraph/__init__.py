"""vdgraph: a composable node-graph workflow system for video diffusion.

    import vdgraph
    outputs = vdgraph.run("workflows/hello.json", inputs={"name": "Ada"})
    executor = vdgraph.Executor(device="cpu")           # repeated runs sharing one cache
    result = executor.run(vdgraph.load_workflow("workflows/hello.json"), outputs=["greeting"])
"""

from vdgraph import types
from vdgraph.api import run, validate
from vdgraph.context import CancelToken, RunContext
from vdgraph.errors import (
    Cancelled,
    NodeConflictError,
    NodeDeclarationError,
    NodeRunError,
    Problem,
    VdgraphError,
    WorkflowInvalid,
)
from vdgraph.executor import Executor, NodeReport, RunResult
from vdgraph.io import atomic_write
from vdgraph.node import REQUIRED, Input, Invalid, Known, Node, Output
from vdgraph.registry import Registry
from vdgraph.workflow import Workflow, WorkflowNotFound, load_workflow

__all__ = [
    "REQUIRED", "CancelToken", "Cancelled", "Executor", "Input", "Invalid", "Known", "Node", "NodeConflictError", "NodeDeclarationError",
    "NodeReport", "NodeRunError", "Output", "Problem", "Registry", "RunContext", "RunResult", "VdgraphError",
    "Workflow", "WorkflowInvalid", "WorkflowNotFound", "atomic_write", "load_workflow", "run", "types", "validate",
]
