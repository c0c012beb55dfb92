"""Engine test fixtures: tiny node types (pack "t") and a registry holding them plus the core pack.

The tiny nodes do trivial work so that the tests exercise the engine, not the nodes; runs are counted through
the executor's report, never through global counters.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pytest

import vdgraph_core
from vdgraph.context import RunContext
from vdgraph.node import Input, Node, Output
from vdgraph.registry import Registry
from vdgraph.types import ANY, TENSOR, Opaque

REPO = Path(__file__).resolve().parent.parent
MODEL = Opaque("TestModel", "a fake model for engine tests")


@dataclasses.dataclass(frozen=True)
class FakeModel:
    """A model handle: weights plus the patches applied to it (a new handle per patch, never mutated)."""

    weights: Any
    patches: tuple[str, ...] = ()


class Const(Node):
    """Outputs its value."""

    id = "t.const"
    inputs = [Input("value", int, default=0)]
    outputs = [Output("value", int)]

    def run(self, ctx: RunContext, value: int) -> int:
        return value


class Add(Node):
    """Adds two integers."""

    id = "t.add"
    inputs = [Input("a", int), Input("b", int, default=0, ge=-100, le=100)]
    outputs = [Output("sum", int)]

    def run(self, ctx: RunContext, a: int, b: int) -> int:
        return a + b


class Scale(Node):
    """Scales a number; `mode` picks the operation."""

    id = "t.scale"
    inputs = [Input("x", float), Input("factor", float, default=1.0, ge=0.0, le=10.0),
              Input("mode", Literal["mul", "div"], default="mul"), Input("flag", bool, default=False)]
    outputs = [Output("y", float)]

    def run(self, ctx: RunContext, x: float, factor: float, mode: str, flag: bool) -> float:
        return x * factor if mode == "mul" else x / factor


class Split(Node):
    """Two outputs: the number and its negation."""

    id = "t.split"
    inputs = [Input("x", int)]
    outputs = [Output("pos", int), Output("neg", int)]

    def run(self, ctx: RunContext, x: int) -> dict:
        return {"pos": x, "neg": -x}


class Total(Node):
    """Sums a list of integers (gathered from several links, or one list)."""

    id = "t.total"
    inputs = [Input("items", list[int])]
    outputs = [Output("total", int)]

    def run(self, ctx: RunContext, items: list[int]) -> int:
        return sum(items)


class Fail(Node):
    """Raises when `fail` is set: the failure-then-resume scenario."""

    id = "t.fail"
    inputs = [Input("x", int), Input("fail", bool, default=False)]
    outputs = [Output("x", int)]

    def run(self, ctx: RunContext, x: int, fail: bool) -> int:
        if fail:
            raise ValueError("asked to fail")
        return x


class Slow(Node):
    """Reports `steps` progress ticks (a stand-in for a denoising loop)."""

    id = "t.slow"
    version = 1
    inputs = [Input("x", int), Input("steps", int, default=5, ge=1)]
    outputs = [Output("x", int)]

    def run(self, ctx: RunContext, x: int, steps: int) -> int:
        for step in range(1, steps + 1):
            ctx.progress(step, steps)
        return x


class Noise(Node):
    """A fresh random number per run."""

    id = "t.noise"
    deterministic = False
    inputs = []
    outputs = [Output("value", int)]

    def run(self, ctx: RunContext) -> int:
        return secrets.randbelow(10**9)


class MakeTensor(Node):
    """A tensor of `n` ones on the run's device and dtype."""

    id = "t.tensor"
    inputs = [Input("n", int, default=4, ge=1)]
    outputs = [Output("tensor", TENSOR)]

    def run(self, ctx: RunContext, n: int) -> Any:
        import torch

        return torch.ones(n, device=ctx.device, dtype=ctx.dtype)


class AddInPlace(Node):
    """The bug these tests catch: changes its input tensor in place."""

    id = "t.add_in_place"
    inputs = [Input("tensor", TENSOR)]
    outputs = [Output("tensor", TENSOR)]

    def run(self, ctx: RunContext, tensor: Any) -> Any:
        return tensor.add_(1)


class AddCopy(Node):
    """The right way: returns a new tensor."""

    id = "t.add_copy"
    inputs = [Input("tensor", TENSOR), Input("amount", float, default=1.0)]
    outputs = [Output("tensor", TENSOR)]

    def run(self, ctx: RunContext, tensor: Any, amount: float) -> Any:
        return tensor + amount


class LoadModel(Node):
    """A fake model with a weights tensor."""

    id = "t.load_model"
    inputs = [Input("size", int, default=3)]
    outputs = [Output("model", MODEL)]

    def run(self, ctx: RunContext, size: int) -> FakeModel:
        import torch

        return FakeModel(torch.zeros(size))


class PatchModel(Node):
    """Returns a patched copy of the model; the input model is left as it was."""

    id = "t.patch_model"
    inputs = [Input("model", MODEL), Input("patch", str)]
    outputs = [Output("model", MODEL)]

    def run(self, ctx: RunContext, model: FakeModel, patch: str) -> FakeModel:
        return dataclasses.replace(model, patches=(*model.patches, patch))


class DescribeModel(Node):
    """What the model would do: its patches, joined."""

    id = "t.describe_model"
    inputs = [Input("model", MODEL)]
    outputs = [Output("text", str)]

    def run(self, ctx: RunContext, model: FakeModel) -> str:
        return "+".join(model.patches) or "plain"


class Show(Node):
    """Formats any value as text."""

    id = "t.show"
    inputs = [Input("value", ANY)]
    outputs = [Output("text", str)]

    def run(self, ctx: RunContext, value: Any) -> str:
        return repr(value)


TINY_NODES = [Const, Add, Scale, Split, Total, Fail, Slow, Noise, MakeTensor, AddInPlace, AddCopy, LoadModel,
              PatchModel, DescribeModel, Show]


@pytest.fixture
def registry() -> Registry:
    """The tiny nodes plus the core pack, registered from Python (no discovery)."""
    reg = Registry()
    for cls in TINY_NODES:
        reg.register(cls, pack="t")
    for cls in vdgraph_core.NODES:
        reg.register(cls, pack="core")
    return reg


def workflow(nodes: dict, outputs: dict, inputs: dict | None = None, **extra: Any) -> dict:
    """A workflow document as a dict, the way a file would hold it."""
    return {"vdgraph": 1, "name": extra.pop("name", "test"), "inputs": inputs or {}, "nodes": nodes,
            "outputs": outputs, **extra}


@pytest.fixture
def core_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed packs reduced to the core pack, so in-process CLI tests do not import the diffusion pack."""
    from vdgraph.packs import PackSource

    monkeypatch.setattr("vdgraph.registry.installed_sources", lambda: (PackSource("core", "entry-point",
                                                                                  "vdgraph_core"),))


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 60,
            ) -> subprocess.CompletedProcess:
    """The `vdgraph` command in a fresh process (what a user runs)."""
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "vdgraph", *args], cwd=cwd or REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def torch_threads():
    """torch on VDGRAPH_TEST_THREADS threads (default 1, whatever the user's OMP_NUM_THREADS) for the test, restored
    afterwards: exactness tests run on 1 thread by default and on N with `VDGRAPH_TEST_THREADS=N pytest ...`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("VDGRAPH_TEST_THREADS") or 1))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def executor():
    """A CPU Executor for one test module: its memory cache holds loaded models across the module's tests, so
    the parity tests that run one workflow in many cases load each model once."""
    import vdgraph

    return vdgraph.Executor(device="cpu")
