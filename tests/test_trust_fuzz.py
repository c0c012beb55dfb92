"""Fuzzing the shipped workflows (issue 8): mutated files never crash `vdgraph validate` or a run.

Each example takes a shipped workflow and applies a few mutations: a value replaced by another JSON type, a huge
or negative number, a key deleted or written twice, a link renamed, a value nested deeply, a lone surrogate in a
string. Then:

- `vdgraph validate` (in this process, through `cli.main`) never raises, never prints a traceback, and exits 1
  exactly when it reports a problem of severity error (0 otherwise);
- running a mutated engine-only workflow (workflows/hello.json) raises nothing but a VdgraphError, through the
  Python API and through `vdgraph run`.

Derandomized with a fixed, small example count (60 validations, 140 runs), so CI runs the same cases every time
in about 20 s. Raise max_examples and drop derandomize locally to hunt for more.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vdgraph_core
from vdgraph import Executor, Registry, VdgraphError, load_workflow
from vdgraph.cli import main

WORKFLOWS = {path.name: json.loads(path.read_text()) for path in sorted((REPO / "workflows").glob("*.json"))}
FUZZ = settings(max_examples=60, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


# -- a JSON writer that can also write what json.dumps cannot: repeated keys, 5,000-digit integers, deep nests --

@dataclasses.dataclass(frozen=True)
class Pairs:
    """An object written with these (key, value) pairs in order, repeats included."""

    items: tuple[tuple[str, Any], ...]


@dataclasses.dataclass(frozen=True)
class Digits:
    """An integer literal of `count` nines (Python cannot even print one over 4,300 digits)."""

    count: int
    negative: bool = False


@dataclasses.dataclass(frozen=True)
class Nested:
    """`value` inside `depth` arrays."""

    value: Any
    depth: int


def write(value: Any) -> str:
    if isinstance(value, Pairs):
        return "{" + ", ".join(f"{write(k)}: {write(v)}" for k, v in value.items) + "}"
    if isinstance(value, dict):
        return write(Pairs(tuple(value.items())))
    if isinstance(value, list):
        return "[" + ", ".join(write(v) for v in value) + "]"
    if isinstance(value, Digits):
        return ("-" if value.negative else "") + "9" * value.count
    if isinstance(value, Nested):
        return "[" * value.depth + write(value.value) + "]" * value.depth
    if isinstance(value, str):
        return json.dumps(value)  # escapes lone surrogates as \udXXX, as an editor or another tool would write them
    return json.dumps(value)  # None, bool, int, float (NaN and Infinity as Python's json writes them)


# -- mutations ---------------------------------------------------------------------------------------------------

def locations(doc: Any, path: tuple = ()) -> list[tuple]:
    """Every path to a value in the document (object keys and array indices)."""
    found = [path]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += locations(value, (*path, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += locations(value, (*path, index))
    return found


def get(doc: Any, path: tuple) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def put(doc: Any, path: tuple, value: Any) -> Any:
    """A copy of `doc` with the value at `path` replaced (the root when path is empty)."""
    if not path:
        return value
    head, *rest = path
    if isinstance(doc, Pairs):
        doc = dict(doc.items)
    if isinstance(doc, dict):
        return {**doc, head: put(doc[head], tuple(rest), value)}
    copy = list(doc)
    copy[head] = put(copy[head], tuple(rest), value)
    return copy


SURROGATES = st.sampled_from(["\ud800", "\udfff", "\udc80", "\udbff"])
NUMBERS = st.one_of(
    st.sampled_from([0, -1, 1, 2**31, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30, 0.5, -0.0, 1e308,
                     1e-320, float("nan"), float("inf"), float("-inf")]),
    st.integers(), st.floats(),
    st.builds(Digits, st.sampled_from([25, 4_000, 4_400, 6_000]), st.booleans()),
)
WORDS = st.sampled_from(["", "inputs", "inputs.seed", "model.unet", "noise.latents", "int", "list[int]",
                         "list[" * 40 + "int" + "]" * 40, "core.format", "video.nope", "x" * 5_000, "a.b.c",
                         "nodes", "true", "NaN", "\x00"])
LEAVES = st.one_of(st.none(), st.booleans(), NUMBERS, WORDS, st.text(max_size=20))
JSON = st.recursive(LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                    st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                    max_leaves=8)


@st.composite
def mutated(draw: st.DrawFn, names: list[str]) -> tuple[str, Any]:
    """(workflow name, mutated document) with 1 to 3 mutations applied."""
    name = draw(st.sampled_from(names))
    doc: Any = json.loads(json.dumps(WORKFLOWS[name]))
    for _ in range(draw(st.integers(1, 3))):
        paths = locations(doc)
        path = draw(st.sampled_from(paths))
        current = get(doc, path)
        kind = draw(st.sampled_from(["replace", "number", "delete", "duplicate", "link", "nest", "surrogate",
                                     "key"]))
        parent = get(doc, path[:-1]) if path else None
        if kind == "replace":
            doc = put(doc, path, draw(JSON))
        elif kind == "number":
            doc = put(doc, path, draw(NUMBERS))
        elif kind == "delete" and isinstance(parent, dict):
            doc = put(doc, path[:-1], {k: v for k, v in parent.items() if k != path[-1]})
        elif kind == "duplicate" and isinstance(parent, dict):
            again = draw(st.one_of(st.just(current), JSON))
            doc = put(doc, path[:-1], Pairs((*parent.items(), (path[-1], again))))
        elif kind == "link" and isinstance(current, str):
            node, _, output = current.partition(".")
            doc = put(doc, path, draw(st.sampled_from([f"{node}x.{output}", f"{node}.{output}x", f"{output}.{node}",
                                                       node, f"inputs.{output}", f"{node}.{output}.x"])))
        elif kind == "nest":
            doc = put(doc, path, Nested(current, draw(st.sampled_from([1, 3, 99, 100, 101, 990, 20_000]))))
        elif kind == "surrogate" and isinstance(current, str):
            at = draw(st.integers(0, len(current)))
            doc = put(doc, path, current[:at] + draw(SURROGATES) + current[at:])
        elif kind == "key" and isinstance(parent, dict):
            key = draw(st.one_of(WORDS, st.text(max_size=8), SURROGATES))
            doc = put(doc, path[:-1], {(key if k == path[-1] else k): v for k, v in parent.items()})
    return name, doc


# -- the properties ----------------------------------------------------------------------------------------------

def _save(folder: str, doc: Any) -> Path:
    path = Path(folder) / "mutated.json"
    path.write_text(write(doc), encoding="utf-8")  # lone surrogates are written as \ud800 escapes
    return path


@FUZZ
@given(case=mutated(list(WORKFLOWS)), as_json=st.booleans())
def test_validate_never_crashes_and_its_exit_code_matches_its_problems(capsys, case, as_json):
    _, doc = case
    with tempfile.TemporaryDirectory() as folder:
        path = _save(folder, doc)
        code = main(["validate", str(path), *(["--json"] if as_json else [])])
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    if as_json:
        (report,) = json.loads(out.out)
        errors = [p for p in report["problems"] if p["severity"] == "error"]
        assert report["valid"] == (not errors)
    else:
        errors = [line for line in out.out.splitlines() if ": error [" in line]
    assert code == (1 if errors else 0), text[-2_000:]
    assert max((len(line) for line in text.splitlines()), default=0) < 1_000, "a value was echoed in full"


def _core_registry() -> Registry:
    registry = Registry()
    for cls in vdgraph_core.NODES:
        registry.register(cls, pack="core")
    return registry


REGISTRY = _core_registry()


@settings(FUZZ, max_examples=100)
@given(case=mutated(["hello.json"]))
def test_running_mutated_hello_raises_only_vdgraph_errors(case):
    _, doc = case
    with tempfile.TemporaryDirectory() as folder:
        path = _save(folder, doc)
        try:
            workflow = load_workflow(str(path))
            Executor(REGISTRY, device="cpu").run(workflow, output_dir=str(Path(folder) / "out"))
        except VdgraphError:
            pass


@settings(FUZZ, max_examples=40)
@given(case=mutated(["hello.json"]))
def test_vdgraph_run_on_mutated_hello_prints_no_traceback(capsys, core_only, case):
    _, doc = case
    with tempfile.TemporaryDirectory() as folder:
        path = _save(folder, doc)
        code = main(["run", str(path), "--output-dir", str(Path(folder) / "out"), "--quiet"])
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    if code == 0:
        assert "outputs:" in out.out
    else:
        assert code == 1 and ("error [" in text or "failed:" in text), text[-2_000:]
