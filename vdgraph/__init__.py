"""vdgraph: a composable node-graph workflow system for video diffusion.

    import vdgraph
    outputs = vdgraph.run("workflows/hello.json", inputs={"name": "Ada"})
    executor = vdgraph.Executor(device="cpu")           # repeated runs sharing one cache
    result = executor.run(vdgraph.load_workflow("workflows/hello.json"), outputs=["greeting"])
"""

import os as _os
import sys as _sys

# `python -m vdgraph` puts the working directory first on sys.path (the console script `vdgraph` does not), so a
# folder of someone else's workflows holding `fsspec.py` or `torch/` would have its code imported in place of the
# libraries: validating workflows must never run code that came with them. While `-m` locates this package,
# sys.argv[0] is "-m"; the directory is dropped before anything else is imported (`python -P` does the same).
if _sys.argv[:1] == ["-m"] and _sys.path and _sys.path[0] in ("", _os.getcwd()):
    del _sys.path[0]

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
