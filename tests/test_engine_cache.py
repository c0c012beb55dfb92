"""Cache stores: sizes in bytes, LRU eviction by bytes, the persistent store (never pickling, every entry checked),
atomic writes."""

from __future__ import annotations

import dataclasses
import json
import os

import fsspec
import pytest
import torch
from conftest import FakeModel, workflow

from vdgraph import Executor
from vdgraph.cache import MemoryCache, sizeof
from vdgraph.diskcache import DiskCache
from vdgraph.io import atomic_write
from vdgraph.keys import canonical_json, digest


def test_sizeof_counts_real_bytes():
    t = torch.zeros(1000, dtype=torch.float32)
    assert sizeof(t) == 4000
    assert sizeof([t, t[:10]]) < 4000 + 200  # one storage, counted once
    module = torch.nn.Linear(10, 10)
    assert sizeof(module) == (100 + 10) * 4
    assert sizeof({"w": FakeModel(torch.zeros(250))}) >= 1000

    class Handle:
        def __vdgraph_nbytes__(self) -> int:
            return 12345

    assert sizeof(Handle()) == 12345


def test_sizeof_follows_plain_objects():
    class Pipeline:
        def __init__(self) -> None:
            self.unet = torch.nn.Linear(100, 100)

    assert sizeof(Pipeline()) > 40000


def test_lru_eviction_by_bytes():
    cache = MemoryCache(max_bytes=10_000)
    for name in "abc":
        assert cache.put(name, torch.zeros(1000))  # 4,000 bytes each
    assert cache.keys() == ["b", "c"] and cache.nbytes == 8000
    cache.get("b")
    cache.put("d", torch.zeros(1000))
    assert cache.keys() == ["b", "d"]
    assert not cache.put("huge", torch.zeros(10_000)) and "huge" not in cache


def test_canonical_keys_do_not_depend_on_key_order_or_hash_seed():
    assert canonical_json({"b": 1, "a": [1.5, "x"]}) == '{"a":[1.5,"x"],"b":1}'
    assert digest({"b": 1, "a": 2}) == digest({"a": 2, "b": 1})
    assert digest({"a": 1}) == "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"


@pytest.mark.parametrize("root", ["local", "memory"])
def test_disk_cache_round_trip(tmp_path, root):
    url = str(tmp_path / "cache") if root == "local" else "memory://vdgraph-test-cache"
    cache = DiskCache(url)
    outputs = {"latents": torch.arange(6.0).reshape(2, 3), "meta": {"steps": 20, "names": ["a", "b"]},
               "pair": (torch.ones(2, dtype=torch.int64), 1.5), "none": None}
    assert cache.put("k" * 64, outputs)
    back = DiskCache(url).get("k" * 64)
    assert torch.equal(back["latents"], outputs["latents"]) and back["meta"] == outputs["meta"]
    assert isinstance(back["pair"], tuple) and back["pair"][0].dtype == torch.int64 and back["none"] is None
    assert DiskCache(url).get("0" * 64) is None


def test_models_and_objects_are_never_persisted(tmp_path):
    cache = DiskCache(str(tmp_path))
    assert not cache.put("a" * 64, {"model": torch.nn.Linear(2, 2)})
    assert not cache.put("b" * 64, {"model": FakeModel(torch.zeros(2))})
    assert "a" * 64 not in cache and "b" * 64 not in cache
    assert not any(p.suffix in (".pkl", ".pt") for p in tmp_path.rglob("*"))


def test_half_written_entries_are_invisible(tmp_path):
    cache = DiskCache(str(tmp_path))
    key = "c" * 64
    entry = tmp_path / "objects" / key[:2] / key
    entry.mkdir(parents=True)
    (entry / "tensors.safetensors").write_bytes(b"partial")
    assert cache.get(key) is None  # no meta.json yet: not an entry
    (entry / "meta.json").write_text('{"format": 1, "tensors": 1, "outputs": {"t": "dict", "v": {}}}')
    assert cache.get(key) is None  # unreadable tensors: treated as a miss, recomputed


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_write(str(target), "w") as handle:
        handle.write("first")
    with pytest.raises(RuntimeError):
        with atomic_write(str(target), "w") as handle:
            handle.write("second, half")
            raise RuntimeError("boom")
    assert target.read_text() == "first" and os.listdir(target.parent) == ["out.txt"]


def test_atomic_write_through_fsspec_memory():
    with atomic_write("memory://atomic/x.bin") as handle:
        handle.write(b"data")
    fs = fsspec.filesystem("memory")
    assert fs.cat("/atomic/x.bin") == b"data" and fs.ls("/atomic", detail=False) == ["/atomic/x.bin"]


def test_executor_persistent_cache_in_process(registry, tmp_path):
    doc = workflow({"t": {"type": "t.tensor", "params": {"n": 3}},
                    "c": {"type": "t.add_copy", "in": {"tensor": "t.tensor"}, "params": {"amount": 2.0}},
                    "m": {"type": "t.load_model"}, "d": {"type": "t.describe_model", "in": {"model": "m.model"}}},
                   {"c": "c.tensor", "d": "d.text"})
    Executor(registry, device="cpu", cache_dir=str(tmp_path)).run(doc)
    result = Executor(registry, device="cpu", cache_dir=str(tmp_path)).run(doc)
    assert {r.id: r.status for r in result.report} == {"c": "cached-disk", "d": "cached-disk"}
    assert all(r.seconds > 0 for r in result.report)  # the time spent reading from disk
    assert torch.equal(result["c"], torch.full((3,), 3.0))


def test_dataclass_model_wrapper_is_counted():
    @dataclasses.dataclass
    class Wrapper:
        inner: torch.nn.Module

    assert sizeof(Wrapper(torch.nn.Linear(10, 10))) >= 440


def test_disk_cache_refuses_what_json_or_safetensors_cannot_hold(tmp_path):
    cache = DiskCache(str(tmp_path))
    assert not cache.put("d" * 64, {"n": 10**5000})  # too many digits for JSON: not stored, no crash
    deep: list = []
    for _ in range(100):
        deep = [deep]
    assert not cache.put("e" * 64, {"deep": deep})
    assert not cache.put("f" * 64, {"keys": {1: "not a string key"}})
    assert cache.get("d" * 64) is None and not list(tmp_path.glob("objects/*"))


def test_disk_cache_read_says_what_is_wrong(tmp_path):
    from vdgraph.diskcache import UnusableEntry

    cache = DiskCache(str(tmp_path))
    assert cache.read("0" * 64) is None  # absent: a plain miss
    cache.store("a" * 64, {"x": torch.ones(2)})
    (tmp_path / "objects" / "aa" / ("a" * 64) / "meta.json").write_text("[]")
    with pytest.raises(UnusableEntry, match="meta.json holds list, not an object") as info:
        cache.read("a" * 64)
    assert info.value.kind == "corrupt" and cache.get("a" * 64) is None
    assert json.loads((tmp_path / "vdgraph-cache.json").read_text()) == {"vdgraph_cache_format": 2}
