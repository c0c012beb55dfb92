"""The few-calls Python API: load, validate and run a workflow without building an Executor yourself."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from vdgraph.arguments import check_inputs_argument, check_registry_argument
from vdgraph.context import CancelToken
from vdgraph.errors import Problem, WorkflowInvalid
from vdgraph.events import Listener
from vdgraph.executor import Executor
from vdgraph.registry import Registry
from vdgraph.validate import validate as _validate
from vdgraph.workflow import Workflow, load_workflow


def validate(workflow: Workflow | str | Mapping[str, Any], inputs: Mapping[str, Any] | None = None,
             registry: Registry | None = None, require_inputs: bool = False) -> list[Problem]:
    """Every problem of a workflow (a path, URL, dict or Workflow), errors and warnings; empty when clean.

    A file that cannot be read at all (malformed JSON, unknown format version, nesting too deep, an integer
    beyond 64 bits, a lone surrogate) gives just those problems.
    """
    check_registry_argument(registry)
    check_inputs_argument(inputs)
    try:
        loaded = load_workflow(workflow)
    except WorkflowInvalid as exc:
        return exc.problems
    return _validate(loaded, registry if registry is not None else Registry.discover(), inputs, require_inputs)


def run(workflow: Workflow | str | Mapping[str, Any], inputs: Mapping[str, Any] | None = None,
        outputs: Iterable[str] | None = None, *, cancel: CancelToken | None = None,
        output_dir: str | os.PathLike = "out", overwrite: bool = False, allow_outside_output_dir: bool = False,
        on_event: Listener | None = None, **executor_kwargs: Any) -> dict[str, Any]:
    """Run a workflow once and return {output name: value}; tensors stay tensors.

    Files go into `output_dir` (default `./out`); an existing file is never replaced unless `overwrite` (a
    counter is added to the new name instead), and nothing is written outside the folder unless
    `allow_outside_output_dir`.

    `executor_kwargs` go to `Executor` (registry, device, dtype, cache_bytes, cache_dir, on_event). For repeated
    runs that share a cache, keep an `Executor` instead.
    """
    executor = Executor(**executor_kwargs)
    return executor.run(workflow, inputs, outputs, cancel=cancel, output_dir=output_dir, overwrite=overwrite,
                        allow_outside_output_dir=allow_outside_output_dir, on_event=on_event).outputs
