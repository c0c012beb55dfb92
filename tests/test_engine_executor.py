"""Execution: only what is needed runs, caching by recipe, failures and resume, cancellation, immutability,
isolation between executors, the event stream, and --explain reasons."""

from __future__ import annotations

import threading

import pytest
import torch
from conftest import workflow

from vdgraph import CancelToken, Executor, NodeRunError, Registry, WorkflowInvalid
from vdgraph.errors import Cancelled
from vdgraph.events import Event


def statuses(result) -> dict[str, str]:
    return {r.id: r.status for r in result.report}


def chain_doc(b: int = 1, version_node: str = "t.add") -> dict:
    return workflow(
        {"a": {"type": "t.const", "in": {"value": "inputs.start"}},
         "b": {"type": version_node, "in": {"a": "a.value"}, "params": {"b": b}},
         "c": {"type": "t.add", "in": {"a": "b.sum"}, "params": {"b": 10}},
         "side": {"type": "t.split", "in": {"x": "a.value"}}},
        {"c": "c.sum", "neg": "side.neg"}, inputs={"start": {"type": "int", "default": 1}})


@pytest.fixture
def executor(registry: Registry) -> Executor:
    return Executor(registry, device="cpu")


def test_runs_and_returns_outputs(executor):
    result = executor.run(chain_doc())
    assert result.outputs == {"c": 12, "neg": -1}
    assert result.ran == ["a", "b", "side", "c"]  # generation by generation, in file order within one


def test_only_needed_nodes_run(executor):
    result = executor.run(chain_doc(), outputs=["neg"])
    assert result.outputs == {"neg": -1} and result.ran == ["a", "side"]


def test_unknown_requested_output(executor):
    with pytest.raises(WorkflowInvalid) as info:
        executor.run(chain_doc(), outputs=["nope"])
    assert info.value.problems[0].code == "output.unknown" and "c, neg" in info.value.problems[0].hint


def test_second_run_is_fully_cached_and_needs_nothing_upstream(executor):
    executor.run(chain_doc())
    result = executor.run(chain_doc())
    # c and side are cached, so a and b are not even visited
    assert statuses(result) == {"c": "cached-memory", "side": "cached-memory"}
    assert result.outputs == {"c": 12, "neg": -1}


def test_changing_a_literal_reruns_that_node_and_downstream_only(executor):
    executor.run(chain_doc(b=1))
    result = executor.run(chain_doc(b=2))
    assert statuses(result) == {"a": "cached-memory", "b": "ran", "c": "ran", "side": "cached-memory"}
    assert result["c"] == 13


def test_changing_a_workflow_input_reruns_its_readers(executor):
    executor.run(chain_doc())
    result = executor.run(chain_doc(), inputs={"start": 5})
    assert result.ran == ["a", "b", "side", "c"] and result["c"] == 16
    assert statuses(executor.run(chain_doc(), inputs={"start": 5}))["c"] == "cached-memory"


def test_changing_a_node_version_reruns_it(registry):
    from conftest import Add

    class AddV2(Add):
        """Adds two integers (version 2)."""

        id = "t.add2"
        version = 2

    registry.register(AddV2)
    executor = Executor(registry, device="cpu")
    executor.run(chain_doc())
    first = executor.run(chain_doc(version_node="t.add2"))
    assert statuses(first)["b"] == "ran"
    key_v2 = next(r.key for r in first.report if r.id == "b")
    AddV2.version = 3
    try:
        again = executor.run(chain_doc(version_node="t.add2"))
    finally:
        AddV2.version = 2
    assert statuses(again)["b"] == "ran" and next(r.key for r in again.report if r.id == "b") != key_v2


def test_renaming_a_node_keeps_its_cache(executor):
    executor.run(chain_doc())
    doc = chain_doc()
    doc["nodes"]["start"] = doc["nodes"].pop("a")
    doc["nodes"]["b"]["in"]["a"] = "start.value"
    doc["nodes"]["side"]["in"]["x"] = "start.value"
    assert executor.run(doc).ran == []


def test_device_and_dtype_are_in_the_key(registry):
    doc = workflow({"t": {"type": "t.tensor"}}, {"t": "t.tensor"})
    a = Executor(registry, device="cpu", dtype="float32").run(doc)
    b = Executor(registry, device="cpu", dtype="bfloat16").run(doc)
    assert a.report[0].key != b.report[0].key and b["t"].dtype == torch.bfloat16


def test_declared_conversion_applies_on_links(executor):
    doc = workflow({"a": {"type": "t.const", "params": {"value": 3}}, "s": {"type": "t.scale", "in": {"x": "a.value"}}},
                   {"y": "s.y", "x": "a.value"})
    result = executor.run(doc)
    assert result["y"] == 3.0 and isinstance(result["y"], float) and isinstance(result["x"], int)


def test_gathered_list(executor):
    doc = workflow({"a": {"type": "t.const", "params": {"value": 2}}, "b": {"type": "t.const", "params": {"value": 5}},
                    "t": {"type": "t.total", "in": {"items": ["a.value", "b.value", "a.value"]}}}, {"t": "t.total"})
    assert executor.run(doc)["t"] == 9


def test_non_deterministic_nodes_and_their_dependents_always_run(executor):
    doc = workflow({"n": {"type": "t.noise"}, "s": {"type": "t.show", "in": {"value": "n.value"}},
                    "k": {"type": "t.const"}}, {"s": "s.text", "k": "k.value"})
    first = executor.run(doc)
    second = executor.run(doc)
    assert statuses(second) == {"n": "ran", "s": "ran", "k": "cached-memory"}
    assert first["s"] != second["s"]


def test_failure_then_resume_from_the_failed_node(executor):
    doc = workflow({"a": {"type": "t.const", "params": {"value": 4}},
                    "f": {"type": "t.fail", "in": {"x": "a.value"}, "params": {"fail": True}},
                    "c": {"type": "t.add", "in": {"a": "f.x"}}}, {"c": "c.sum"})
    with pytest.raises(NodeRunError) as info:
        executor.run(doc)
    error = info.value
    assert (error.node_id, error.node_type) == ("f", "t.fail")
    assert "node 'f' (t.fail) failed: ValueError: asked to fail" in str(error)
    assert isinstance(error.__cause__, ValueError)
    doc["nodes"]["f"]["params"]["fail"] = False
    result = executor.run(doc)
    assert statuses(result) == {"a": "cached-memory", "f": "ran", "c": "ran"} and result["c"] == 4


def test_cancel_from_a_token_mid_node_at_a_progress_tick(executor):
    token = CancelToken()
    seen: list[Event] = []

    def listener(event: Event) -> None:
        seen.append(event)
        if event.kind == "progress" and event.step == 2:
            token.cancel()

    doc = workflow({"a": {"type": "t.const", "params": {"value": 1}},
                    "s": {"type": "t.slow", "in": {"x": "a.value"}, "params": {"steps": 50}},
                    "c": {"type": "t.add", "in": {"a": "s.x"}}}, {"c": "c.sum"})
    with pytest.raises(Cancelled, match="inside node 's'"):
        executor.run(doc, cancel=token, on_event=listener)
    assert [e.step for e in seen if e.kind == "progress"] == [1, 2]
    assert seen[-1].kind == "run_finished" and seen[-1].cancelled
    assert statuses(executor.run(doc)) == {"a": "cached-memory", "s": "ran", "c": "ran"}


def test_cancel_between_nodes(executor):
    token = CancelToken()

    def listener(event: Event) -> None:
        if event.kind == "node_finished" and event.node == "a":
            token.cancel()

    with pytest.raises(Cancelled, match="before node 'b'"):
        executor.run(chain_doc(), cancel=token, on_event=listener)


def test_two_executors_share_no_cache_and_no_cancellation(registry):
    first, second = Executor(registry, device="cpu"), Executor(registry, device="cpu")
    first.run(chain_doc())
    assert second.run(chain_doc()).ran == ["a", "b", "side", "c"]
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        first.run(chain_doc(b=5), cancel=token)
    assert second.run(chain_doc(b=5))["c"] == 16


def test_two_executors_in_two_threads(registry):
    results: dict[int, int] = {}

    def work(n: int) -> None:
        results[n] = Executor(registry, device="cpu").run(chain_doc(), inputs={"start": n})["c"]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {n: n + 11 for n in range(4)}


def test_in_place_change_of_an_input_tensor_is_caught(executor):
    doc = workflow({"t": {"type": "t.tensor"}, "bad": {"type": "t.add_in_place", "in": {"tensor": "t.tensor"}}},
                   {"x": "bad.tensor"})
    with pytest.raises(NodeRunError, match=r"node 'bad' \(t.add_in_place\) failed: changed its input 'tensor' in place"):
        executor.run(doc)


def test_returning_new_values_leaves_the_cached_upstream_untouched(executor):
    doc = workflow({"t": {"type": "t.tensor"}, "ok": {"type": "t.add_copy", "in": {"tensor": "t.tensor"}}},
                   {"x": "ok.tensor", "t": "t.tensor"})
    result = executor.run(doc)
    assert torch.equal(result["t"], torch.ones(4)) and torch.equal(result["x"], torch.full((4,), 2.0))


def test_a_model_patch_does_not_leak_into_the_cached_model(executor):
    def doc(patch: str) -> dict:
        return workflow({"load": {"type": "t.load_model"},
                         "patch": {"type": "t.patch_model", "in": {"model": "load.model"}, "params": {"patch": patch}},
                         "use": {"type": "t.describe_model", "in": {"model": "patch.model"}},
                         "plain": {"type": "t.describe_model", "in": {"model": "load.model"}}},
                        {"use": "use.text", "plain": "plain.text", "model": "load.model"})

    first = executor.run(doc("lora_a"))
    second = executor.run(doc("lora_b"))
    assert statuses(second)["load"] == "cached-memory"
    assert (first["use"], second["use"]) == ("lora_a", "lora_b")
    assert second["plain"] == "plain" and second["model"].patches == ()
    assert first["model"] is second["model"]  # the very cached object, still unpatched


def test_memory_budget_is_respected(registry):
    executor = Executor(registry, device="cpu", cache_bytes=1000)
    doc = workflow({"t": {"type": "t.tensor", "params": {"n": 1000}}}, {"t": "t.tensor"})
    executor.run(doc)
    assert len(executor.cache) == 0  # 4,000 bytes do not fit a 1,000-byte budget
    assert executor.run(doc).ran == ["t"]


def test_event_stream_order(executor):
    events: list[Event] = []
    doc = workflow({"a": {"type": "t.const"}, "s": {"type": "t.slow", "in": {"x": "a.value"}, "params": {"steps": 2}}},
                   {"s": "s.x"})
    executor.run(doc, on_event=events.append)
    assert [(e.kind, e.node) for e in events] == [
        ("run_started", None), ("node_started", "a"), ("node_finished", "a"), ("node_started", "s"),
        ("progress", "s"), ("progress", "s"), ("node_finished", "s"), ("run_finished", None)]
    assert events[0].nodes == ("a", "s") and events[-1].ran == 2
    events.clear()
    executor.run(doc, on_event=events.append)
    assert [(e.kind, e.node) for e in events] == [("run_started", None), ("node_cached", "s"),
                                                 ("run_finished", None)]
    assert events[-1].to_json()["cached"] == 1


def test_error_events(executor):
    events: list[Event] = []
    doc = workflow({"f": {"type": "t.fail", "params": {"x": 1, "fail": True}}}, {"f": "f.x"})
    with pytest.raises(NodeRunError):
        executor.run(doc, on_event=events.append)
    assert [e.kind for e in events] == ["run_started", "node_started", "node_error", "run_finished"]
    assert "asked to fail" in events[2].error and "asked to fail" in events[3].error


def test_invalid_workflow_runs_nothing(executor):
    events: list[Event] = []
    with pytest.raises(WorkflowInvalid):
        executor.run(workflow({"a": {"type": "t.const", "params": {"value": "x"}}}, {"a": "a.value"}),
                     on_event=events.append)
    assert events == []


def test_required_input_must_be_set(executor):
    doc = workflow({"a": {"type": "t.const", "in": {"value": "inputs.n"}}}, {"a": "a.value"},
                   inputs={"n": {"type": "int"}})
    with pytest.raises(WorkflowInvalid, match="input.missing"):
        executor.run(doc)
    assert executor.run(doc, inputs={"n": 7})["a"] == 7


def test_explain_reasons(executor):
    runs = [executor.run(chain_doc(b=1), explain=True),
            executor.run(chain_doc(b=2), explain=True),
            executor.run(chain_doc(b=2), inputs={"start": 3}, explain=True)]
    reasons = [{r.id: r.reason for r in run.report if r.status == "ran"} for run in runs]
    assert reasons[0] == {"a": "first run", "b": "first run", "c": "first run", "side": "first run"}
    assert reasons[1] == {"b": "param b changed 1 -> 2", "c": "upstream node b changed"}
    assert reasons[2]["a"] == "workflow input start changed 1 -> 3"
    assert reasons[2]["b"] == "upstream node a changed"
    noisy = workflow({"n": {"type": "t.noise"}, "s": {"type": "t.show", "in": {"value": "n.value"}}}, {"s": "s.text"})
    executor.run(noisy, explain=True)
    again = {r.id: r.reason for r in executor.run(noisy, explain=True).report}
    assert again == {"n": "non-deterministic: runs every time", "s": "upstream node n is non-deterministic"}


def test_explain_across_executors_through_the_disk_cache(registry, tmp_path):
    doc = workflow({"t": {"type": "t.tensor"}}, {"t": "t.tensor"})
    Executor(registry, device="cpu", cache_dir=str(tmp_path)).run(doc)
    other = Executor(registry, device="cpu", dtype="bfloat16", cache_dir=str(tmp_path))
    assert other.run(doc, explain=True).report[0].reason == "dtype changed float32 -> bfloat16"


def test_explain_names_the_changed_item_of_a_gathered_list(executor):
    def doc(b: int) -> dict:
        return workflow({"a": {"type": "t.const", "params": {"value": 1}},
                         "b": {"type": "t.const", "params": {"value": b}},
                         "t": {"type": "t.total", "in": {"items": ["a.value", "b.value"]}}}, {"t": "t.total"})

    executor.run(doc(1))
    reasons = {r.id: r.reason for r in executor.run(doc(2), explain=True).report if r.status == "ran"}
    assert reasons == {"b": "param value changed 1 -> 2", "t": "upstream node b changed"}


def test_relative_input_paths_follow_one_rule(tmp_path, monkeypatch):
    """Working directory first, then the workflow's folder; absolute paths and URLs as given."""
    import torch

    from vdgraph.context import RunContext

    flows, work = tmp_path / "flows", tmp_path / "work"
    flows.mkdir(), work.mkdir()
    (flows / "beside.mp4").write_bytes(b"x")
    (flows / "both.mp4").write_bytes(b"x")
    (work / "both.mp4").write_bytes(b"x")
    monkeypatch.chdir(work)
    ctx = RunContext("n", "t", torch.device("cpu"), torch.float32, output_dir=str(tmp_path / "out"),
                     workflow_dir=str(flows))
    assert ctx.input_path("beside.mp4") == str(flows / "beside.mp4")
    assert ctx.input_path("both.mp4") == "both.mp4"  # the working directory wins
    assert ctx.input_path("nowhere.mp4") == "nowhere.mp4"  # the reader's error then names it as given
    assert ctx.input_path(str(flows / "beside.mp4")) == str(flows / "beside.mp4")
    assert ctx.input_path("memory://x/beside.mp4") == "memory://x/beside.mp4"
    assert RunContext("n", "t", torch.device("cpu"), torch.float32, output_dir=str(tmp_path / "out"),
                      workflow_dir="s3://bucket/flows").search_dirs() == ()
