"""The persistent cache can be trusted (issue 8): it resumes, it never serves stale or corrupt results, and a bad
cache or a failed write never crashes a run.

- schedulers and rng state are stored as data and continue bit-identically after a round trip through the cache;
- a second process with the final outputs cached loads no model; a run resumed after a cancellation re-runs only
  the interrupted node, what follows it and the models it needs, and --explain says why each of them ran;
- a node's code is in its cache key (two classes with the same id and version do not share entries);
- every damaged entry (flipped bit, truncated file, wrong-shaped meta.json, swapped folders, unknown device ...) is
  a miss reported on the node that owns it, and the re-run rewrites it;
- an unusable cache URL is an error before anything runs; a failed write is a warning naming the path.
"""

from __future__ import annotations

import errno
import inspect
import json
import re
import shutil
from pathlib import Path

import fsspec
import pytest
import torch
import video_fixtures
from conftest import REPO, workflow
from fsspec.spec import AbstractFileSystem

import vdgraph_video
from vdgraph import CancelToken, Executor, Input, Node, Output, Registry
from vdgraph.cli import main
from vdgraph.diskcache import DiskCache, _meta_digest
from vdgraph.errors import CacheUnavailable, Cancelled, NodeRunError, WorkflowInvalid
from vdgraph.events import CacheWarning, Progress
from vdgraph.persist import NotPersistable, decode, encode, register_codec, register_dataclass
from vdgraph.types import TENSOR
from vdgraph_video.ops.schedulers import build_scheduler, restore_scheduler, scheduler_class
from vdgraph_video.values import Conditioning, SchedulerConfig, TranslationFlow

one_thread = pytest.fixture(autouse=True)(video_fixtures.single_thread)

T2V_ZERO = REPO / "workflows" / "text2video_zero.json"
SHAPES_SCHEDULER = REPO / "nodes" / "vdgraph_shapes" / "model" / "scheduler" / "scheduler_config.json"


# -- schedulers and rng state as data ---------------------------------------------------------------------------

def _shapes_scheduler_config() -> tuple[str, dict]:
    config = json.loads(SHAPES_SCHEDULER.read_text())
    return config["_class_name"], {k: v for k, v in config.items() if not k.startswith("_")}


def _sample(scheduler, x: torch.Tensor, generator: torch.Generator, timesteps) -> torch.Tensor:
    """A denoising loop with a fixed fake model (eps = f(x, t)), eta 0.5 where the sampler takes it."""
    accepted = set(inspect.signature(scheduler.step).parameters)
    extra = {key: value for key, value in (("generator", generator), ("eta", 0.5)) if key in accepted}
    for t in timesteps:
        model_input = scheduler.scale_model_input(x, t)
        eps = torch.sin(model_input) * 0.3 + float(t) / 1000
        x = scheduler.step(eps, t, x, **extra).prev_sample
    return x


@pytest.mark.parametrize("kind", ["ddim", "euler", "euler_ancestral", "dpmsolver++", "ddpm", "model"])
def test_restored_scheduler_continues_bit_identically(tmp_path, kind):
    class_name, config = _shapes_scheduler_config()
    start = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    scheduler = build_scheduler(class_name, config, kind, 8, torch.device("cpu"))
    uninterrupted = _sample(scheduler, start, torch.Generator().manual_seed(2), scheduler.timesteps)

    scheduler = build_scheduler(class_name, config, kind, 8, torch.device("cpu"))
    generator = torch.Generator().manual_seed(2)
    half = _sample(scheduler, start, generator, scheduler.timesteps[:4])
    DiskCache(str(tmp_path)).store("k" * 64, {"scheduler": scheduler, "rng": generator.get_state(), "x": half})

    back = DiskCache(str(tmp_path)).read("k" * 64)  # another DiskCache: nothing shared but the files
    assert type(back["scheduler"]) is type(scheduler) and back["scheduler"] is not scheduler
    resumed = torch.Generator()
    resumed.set_state(back["rng"])
    rest = _sample(back["scheduler"], back["x"], resumed, back["scheduler"].timesteps[4:])
    assert torch.equal(rest, uninterrupted)


def test_multistep_history_is_part_of_the_stored_state(tmp_path):
    """The test above would pass with a fresh scheduler for the single-step samplers; DPM-Solver++ shows that the
    history really travels (a scheduler rebuilt from its config alone continues differently)."""
    class_name, config = _shapes_scheduler_config()
    scheduler = build_scheduler(class_name, config, "dpmsolver++", 8, torch.device("cpu"))
    start = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    half = _sample(scheduler, start, torch.Generator(), scheduler.timesteps[:4])
    restored = decode(encode(scheduler, tensors := {}), tensors)
    assert len(restored.model_outputs) == len(scheduler.model_outputs) and restored.step_index == 4
    fresh = build_scheduler(class_name, config, "dpmsolver++", 8, torch.device("cpu"))
    fresh._step_index = 4
    assert not torch.equal(_sample(fresh, half, torch.Generator(), fresh.timesteps[4:]),
                           _sample(restored, half, torch.Generator(), restored.timesteps[4:]))


def test_only_scheduler_classes_are_built_from_a_name():
    class_name, config = _shapes_scheduler_config()
    assert scheduler_class("DDIMScheduler").__name__ == "DDIMScheduler"
    for name in ("UNet2DConditionModel", "AutoencoderKL", "StableDiffusionPipeline", "NoSuchScheduler", "os",
                 "__import__", 5, None):
        with pytest.raises(ValueError, match="is not a diffusers scheduler class"):
            scheduler_class(name)
    with pytest.raises(ValueError, match=r"scheduler_config.json, _class_name: 'UNet2DConditionModel' is not a "):
        build_scheduler("UNet2DConditionModel", config, "model", 4, torch.device("cpu"))
    with pytest.raises(ValueError, match="not a diffusers scheduler class"):  # a cache entry cannot name one either
        restore_scheduler({"class": "UNet2DConditionModel", "config": {}, "state": {}})


def test_a_model_whose_scheduler_config_names_a_unet_is_refused_before_anything_is_built(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(video_fixtures.tiny_model_folder("2d"), folder)
    config_file = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "_class_name": "UNet2DConditionModel"}))
    doc = workflow({"model": {"type": "video.load_model", "params": {"model": str(folder)}},
                    "scheduler": {"type": "video.scheduler", "in": {"scheduler_config": "model.scheduler_config"},
                                  "params": {"kind": "model", "steps": 4}}},
                   {"scheduler": "scheduler.scheduler"})
    # validation reads the same config and refuses first (tests/test_trust_attack.py) ...
    with pytest.raises(WorkflowInvalid, match=r"scheduler.kind: .*'UNet2DConditionModel' is not a diffusers "):
        Executor(device="cpu").run(doc)
    # ... and when it cannot know the folder before running (a name made by a node), the node refuses it
    doc["nodes"]["name"] = {"type": "core.format", "params": {"template": str(folder)}}
    doc["nodes"]["model"] = {"type": "video.load_model", "in": {"model": "name.text"}}
    with pytest.raises(NodeRunError, match=r"node 'scheduler' .* _class_name: 'UNet2DConditionModel' is not a "
                                           r"diffusers scheduler class"):
        Executor(device="cpu").run(doc)


def test_small_video_values_round_trip():
    values = {"conditioning": Conditioning(torch.ones(1, 3, 2), torch.zeros(1, 3, 2)),
              "config": SchedulerConfig("DDIMScheduler", {"num_train_timesteps": 1000, "betas": (0.1, 0.2)}),
              "flow": TranslationFlow((0, 1, 2), 0.5, -0.25, "reference")}
    back = decode(encode(values, tensors := {}), tensors)
    assert back["flow"] == values["flow"] and back["config"] == values["config"]
    assert torch.equal(back["conditioning"].cond, values["conditioning"].cond)


# -- the codec protocol -----------------------------------------------------------------------------------------

class _Box:
    def __init__(self, value):
        self.value = value


class _Other:
    pass


def test_codecs_are_looked_up_by_tag_and_unknown_values_are_not_stored():
    register_codec("test.box", _Box, lambda box: {"value": box.value}, lambda data: _Box(data["value"]))
    tree = encode(_Box(torch.arange(3)), tensors := {})
    assert tree["tag"] == "test.box" and "_Box" not in json.dumps(tree)  # the file names a tag, never a class
    assert torch.equal(decode(tree, tensors).value, torch.arange(3))
    with pytest.raises(ValueError, match="already registered"):
        register_codec("test.box", _Other, lambda v: {}, lambda d: _Other())
    with pytest.raises(ValueError, match="has no codec in this process"):
        decode({"t": "value", "tag": "os.system", "v": {"t": "json", "v": "echo hi"}}, {})
    with pytest.raises(NotPersistable, match=r"a model \(Linear\)"):
        encode(torch.nn.Linear(2, 2), {})
    with pytest.raises(NotPersistable, match="a _Other, which has no cache codec"):
        encode([_Other()], {})
    with pytest.raises(TypeError):
        register_dataclass("test.not_a_dataclass", _Other)


# -- resuming the default workflow ------------------------------------------------------------------------------

SMALL = {"frames": 2, "height": 32, "width": 32, "steps": 4, "t0": 1, "t1": 2}


def test_second_process_loads_no_model_and_a_resumed_run_reruns_only_the_interrupted_part(tmp_path):
    complete = Executor(device="cpu", cache_dir=str(tmp_path / "warm")).run(T2V_ZERO, SMALL,
                                                                           output_dir=str(tmp_path / "a"))
    # a second process (a fresh executor: nothing shared but the cache folder) with every final output cached
    again = Executor(device="cpu", cache_dir=str(tmp_path / "warm")).run(T2V_ZERO, SMALL, explain=True,
                                                                        output_dir=str(tmp_path / "b"))
    assert sorted(again.ran) == ["sheet", "write"], "only the file writers (side effects) run; no model is loaded"
    assert torch.equal(again["latents"], complete["latents"]) and torch.equal(again["frames"], complete["frames"])

    # cancelled while the final denoise runs, then resumed by another process
    token = CancelToken()

    def cancel_in_final(event):
        if isinstance(event, Progress) and event.node == "final":
            token.cancel()

    with pytest.raises(Cancelled):
        Executor(device="cpu", cache_dir=str(tmp_path / "cold")).run(
            T2V_ZERO, SMALL, cancel=token, on_event=cancel_in_final, output_dir=str(tmp_path / "c"))
    resumed = Executor(device="cpu", cache_dir=str(tmp_path / "cold")).run(T2V_ZERO, SMALL, explain=True,
                                                                          output_dir=str(tmp_path / "d"))
    reasons = {r.id: r.reason for r in resumed.report if r.status == "ran"}
    assert reasons == {
        "model": "not stored: output 'unet' holds a model (UNetHandle)",
        "cross_frame": "not stored: output 'unet' holds a model (UNetHandle)",
        "final": "cancelled while it ran last time",
        "masks": "the last run stopped before reaching it",
        "smooth": "the last run stopped before reaching it",
        "decode": "the last run stopped before reaching it",
        "write": "side effects: runs every time",
        "sheet": "side effects: runs every time",
    }
    served = {r.id for r in resumed.report if r.status == "cached-disk"}
    assert {"text", "to_t1", "join", "renoise"} <= served  # conditioning, scheduler state and rng came from disk
    assert torch.equal(resumed["latents"], complete["latents"]), "the resumed run continues bit-identically"


# -- code fingerprints ------------------------------------------------------------------------------------------

def _versioned_node(offset: float) -> type[Node]:
    """Two generations of one node: same id, same version, different code."""
    if offset == 1.0:
        class AddOffset(Node):
            """Adds one."""

            id = "fp.offset"
            version = 1
            inputs = [Input("n", int, default=3)]
            outputs = [Output("tensor", TENSOR)]

            def run(self, ctx, n):
                return torch.zeros(n) + 1.0
    else:
        class AddOffset(Node):  # type: ignore[no-redef]
            """Adds one."""

            id = "fp.offset"
            version = 1
            inputs = [Input("n", int, default=3)]
            outputs = [Output("tensor", TENSOR)]

            def run(self, ctx, n):
                return torch.zeros(n) + 2.0  # changed, and nobody bumped the version
    return AddOffset


def test_changed_code_without_a_version_bump_does_not_share_cache_entries(tmp_path):
    doc = workflow({"o": {"type": "fp.offset"}}, {"out": "o.tensor"})
    results = []
    for offset in (1.0, 2.0):
        registry = Registry()
        registry.register(_versioned_node(offset), pack="fp")
        results.append(Executor(registry, device="cpu", cache_dir=str(tmp_path)).run(doc, explain=True))
    assert results[1].ran == ["o"] and results[1].report[0].reason.startswith("code changed")
    assert torch.equal(results[1]["out"], torch.full((3,), 2.0))
    assert results[0].report[0].key != results[1].report[0].key


def test_the_fingerprint_follows_the_modules_of_the_pack_that_the_node_imports(tmp_path, monkeypatch):
    from vdgraph.fingerprint import code_fingerprint, pack_modules

    package = tmp_path / "fppack"
    (package / "ops").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "ops" / "__init__.py").write_text("")
    (package / "ops" / "math.py").write_text("def double(x):\n    return 2 * x\n")
    (package / "helpers.py").write_text("OFFSET = 1\n")
    (package / "unrelated.py").write_text("X = 1\n")
    (package / "nodes.py").write_text(
        "import json\n"
        "from .ops.math import double\n\n\n"
        "class Twice:\n"
        "    def run(self, x):\n"
        "        from fppack import helpers  # imported lazily, still followed\n"
        "        return double(x) + helpers.OFFSET\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import fppack.nodes

    assert pack_modules("fppack.nodes") == {"fppack.nodes", "fppack.ops.math", "fppack", "fppack.helpers"}
    before = code_fingerprint(fppack.nodes.Twice)

    def fingerprint_after(path: Path, text: str) -> str:
        path.write_text(text)
        code_fingerprint.cache_clear()  # what a new process would compute
        return code_fingerprint(fppack.nodes.Twice)

    assert fingerprint_after(package / "unrelated.py", "X = 2\n") == before, "a module it does not import"
    assert fingerprint_after(package / "ops" / "math.py", "def double(x):\n    return x + x + 0\n") != before
    changed = code_fingerprint(fppack.nodes.Twice)
    assert fingerprint_after(package / "helpers.py", "OFFSET = 2\n") != changed


# -- damaged entries --------------------------------------------------------------------------------------------

CHAIN = workflow({"t": {"type": "t.tensor", "params": {"n": 3}},
                  "c": {"type": "t.add_copy", "in": {"tensor": "t.tensor"}, "params": {"amount": 2.0}}},
                 {"c": "c.tensor"})


def _entry(cache: Path, key: str) -> Path:
    return cache / "objects" / key[:2] / key


def _rewrite_meta(folder: Path, change) -> None:
    """Edit meta.json and give it a valid checksum again (a deliberate edit, not bit rot)."""
    meta = json.loads((folder / "meta.json").read_text())
    change(meta)
    meta["sha256"] = _meta_digest(meta)
    (folder / "meta.json").write_text(json.dumps(meta))


def _flip_a_bit(folder: Path) -> None:
    data = bytearray((folder / "tensors.safetensors").read_bytes())
    data[-3] ^= 0x04  # inside the last float: still a valid safetensors file, silently wrong values
    (folder / "tensors.safetensors").write_bytes(bytes(data))


def _truncate(folder: Path) -> None:
    data = (folder / "tensors.safetensors").read_bytes()
    (folder / "tensors.safetensors").write_bytes(data[:40])


def _rename_output(meta: dict) -> None:
    meta["outputs"]["v"]["renamed"] = meta["outputs"]["v"].pop("tensor")


def _set_device(meta: dict) -> None:
    meta["outputs"]["v"]["tensor"]["device"] = "bogus"


DAMAGE = {
    "bit flip": (_flip_a_bit, "cache entry corrupt (checksum mismatch in tensors.safetensors)"),
    "truncated tensors": (_truncate, "cache entry corrupt (tensors.safetensors has 40 bytes, not "),
    "missing tensors": (lambda f: (f / "tensors.safetensors").unlink(),
                        "cache entry corrupt (tensors.safetensors is missing)"),
    "meta is a list": (lambda f: (f / "meta.json").write_text("[]"),
                       "cache entry corrupt (meta.json holds list, not an object)"),
    "meta is a number": (lambda f: (f / "meta.json").write_text("5"),
                         "cache entry corrupt (meta.json holds int, not an object)"),
    "meta is null": (lambda f: (f / "meta.json").write_text("null"),
                     "cache entry corrupt (meta.json holds null, not an object)"),
    "meta is not JSON": (lambda f: (f / "meta.json").write_text('{"format": 2, "ke'),
                         "cache entry corrupt (meta.json is not valid JSON)"),
    "meta lacks keys": (lambda f: (f / "meta.json").write_text('{"format": 2}'),
                        "cache entry corrupt (meta.json lacks key, payload, outputs, sha256)"),
    "meta edited": (lambda f: (f / "meta.json").write_text(
        (f / "meta.json").read_text().replace('"device": "cpu"', '"device": "cuda"')),
        "cache entry corrupt (checksum mismatch in meta.json)"),
    "wrong payload type": (lambda f: _rewrite_meta(f, lambda m: m.update(payload="x")),
                           "cache entry corrupt (meta.json describes the tensor file wrongly)"),
    "renamed output": (lambda f: _rewrite_meta(f, _rename_output),
                       "cache entry corrupt (it holds the outputs 'renamed', not the node's 'tensor')"),
    "bogus device": (lambda f: _rewrite_meta(f, _set_device),
                     "cache entry corrupt (cannot rebuild the outputs: ValueError: unknown device 'bogus')"),
    "wrong tree": (lambda f: _rewrite_meta(f, lambda m: m.update(outputs={"t": "dict", "v": {"tensor": 5}})),
                   "cache entry corrupt (cannot rebuild the outputs: ValueError: expected an entry"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_entry_is_a_reported_miss_of_its_own_node_and_is_rewritten(registry, tmp_path, damage):
    cache = tmp_path / "cache"
    first = Executor(registry, device="cpu", cache_dir=str(cache)).run(CHAIN)
    key = {r.id: r.key for r in first.report}["c"]
    harm, expected = DAMAGE[damage]
    harm(_entry(cache, key))

    events = []
    again = Executor(registry, device="cpu", cache_dir=str(cache)).run(CHAIN, explain=True, on_event=events.append)
    assert again.ran == ["c"], "the damaged node runs again; its upstream value comes from the cache"
    assert again.report[-1].reason.startswith(expected)
    warnings = [e for e in events if isinstance(e, CacheWarning)]
    assert [(w.node, w.path) for w in warnings] == [("c", str(_entry(cache, key)))]
    assert "corrupt" in warnings[0].message and "'c'" in warnings[0].message
    assert torch.equal(again["c"], first["c"])
    assert torch.equal(DiskCache(str(cache)).read(key)["tensor"], first["c"]), "the re-run rewrote the entry"


def test_swapped_entries_are_misses(registry, tmp_path):
    cache = tmp_path / "cache"
    first = Executor(registry, device="cpu", cache_dir=str(cache)).run(
        workflow({"a": {"type": "t.tensor", "params": {"n": 2}}, "b": {"type": "t.tensor", "params": {"n": 5}}},
                 {"a": "a.tensor", "b": "b.tensor"}))
    keys = {r.id: r.key for r in first.report}
    a, b = _entry(cache, keys["a"]), _entry(cache, keys["b"])
    a.rename(tmp_path / "swap")
    b.rename(a)
    (tmp_path / "swap").rename(b)
    again = Executor(registry, device="cpu", cache_dir=str(cache)).run(
        workflow({"a": {"type": "t.tensor", "params": {"n": 2}}, "b": {"type": "t.tensor", "params": {"n": 5}}},
                 {"a": "a.tensor", "b": "b.tensor"}), explain=True)
    assert sorted(again.ran) == ["a", "b"] and again["a"].shape == (2,) and again["b"].shape == (5,)
    assert {r.reason for r in again.report} == {
        "cache entry corrupt (it belongs to another key: a moved or swapped folder)"}


def test_an_entry_of_an_older_format_is_a_quiet_miss(registry, tmp_path):
    cache = tmp_path / "cache"
    key = Executor(registry, device="cpu", cache_dir=str(cache)).run(CHAIN).report[-1].key
    (_entry(cache, key) / "meta.json").write_text('{"format": 1, "tensors": 0, "outputs": {"t": "dict", "v": {}}}')
    events = []
    again = Executor(registry, device="cpu", cache_dir=str(cache)).run(CHAIN, explain=True, on_event=events.append)
    assert again.report[-1].reason == "cache entry unusable (written in cache format 1, this vdgraph reads format 2)"
    assert not [e for e in events if isinstance(e, CacheWarning)]


def test_explain_history_of_the_wrong_shape_is_ignored(registry, tmp_path):
    cache = tmp_path / "cache"
    Executor(registry, device="cpu", cache_dir=str(cache)).run(CHAIN)
    for history in (cache / "explain").iterdir():
        history.write_text('{"nodes": {"c": 5, "t": {"runtime": 3}}}')
    shutil.rmtree(cache / "objects")
    again = Executor(registry, device="cpu", cache_dir=str(cache)).run(CHAIN, explain=True)
    assert {r.id: r.reason for r in again.report} == {"t": "first run", "c": "first run"}


# -- unusable caches and failed writes --------------------------------------------------------------------------

class _UnreachableFileSystem(AbstractFileSystem):
    """A remote cache whose server does not answer (what an http:// or s3:// cache does when it is down)."""

    protocol = "unreachable"

    def makedirs(self, path, exist_ok=False):
        raise ConnectionRefusedError(111, "Connection refused")

    def exists(self, path, **kwargs):
        raise ConnectionRefusedError(111, "Connection refused")


def test_an_unusable_cache_url_fails_before_anything_runs(tmp_path, capsys, core_only):
    fsspec.register_implementation("unreachable", _UnreachableFileSystem, clobber=True)
    (tmp_path / "a-file").write_text("not a folder")
    expected = {"bogus://c": "Protocol not known: bogus",
                "unreachable://host/cache": "ConnectionRefusedError: [Errno 111] Connection refused",
                str(tmp_path / "a-file"): "FileExistsError"}
    for url, why in expected.items():
        with pytest.raises(CacheUnavailable, match=f"cannot use '{url}' as the persistent cache: {re.escape(why)}"):
            Executor(Registry(), device="cpu", cache_dir=url)
        out = tmp_path / "out"
        capsys.readouterr()
        assert main(["run", str(REPO / "workflows" / "hello.json"), "--cache", url, "--output-dir", str(out)]) == 1
        assert why in capsys.readouterr().err
        assert not out.exists(), "nothing ran"


def test_an_entry_that_cannot_be_read_is_a_reported_miss(registry, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = Executor(registry, device="cpu", cache_dir=str(cache)).run(CHAIN)
    executor = Executor(registry, device="cpu", cache_dir=str(cache))

    def connection_lost(path, *args, **kwargs):
        raise TimeoutError("the server did not answer")

    monkeypatch.setattr(executor.disk.fs, "cat_file", connection_lost)
    events = []
    again = executor.run(CHAIN, explain=True, on_event=events.append)
    assert again.ran == ["t", "c"] and torch.equal(again["c"], first["c"])  # no read works: both run again
    assert again.report[-1].reason == "cache entry unreadable (meta.json: TimeoutError: the server did not answer)"
    assert [(e.node, "could not be read" in e.message) for e in events if isinstance(e, CacheWarning)] == [
        ("t", True), ("c", True)]


def test_a_failing_cache_write_names_the_path_and_the_run_goes_on(registry, tmp_path, monkeypatch):
    import vdgraph.diskcache

    cache = tmp_path / "cache"
    executor = Executor(registry, device="cpu", cache_dir=str(cache))

    def disk_full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(vdgraph.diskcache, "atomic_write", disk_full)
    events = []
    result = executor.run(CHAIN, explain=True, on_event=events.append)
    assert torch.equal(result["c"], torch.full((3,), 3.0)) and result.ran == ["t", "c"]
    warnings = [(e.node, e.message) for e in events if isinstance(e, CacheWarning)]
    assert [node for node, _ in warnings] == ["t", "c", None]  # each node, then the explain history
    assert all("No space left on device" in message and str(cache) in message for _, message in warnings)
    assert [e.kind for e in events][-1] == "run_finished", "warnings come before the end of the run"
    monkeypatch.undo()
    fresh = Executor(registry, device="cpu", cache_dir=str(cache)).run(CHAIN, explain=True)
    assert fresh.ran == ["t", "c"], "nothing half-written was left to be served"


def test_the_cli_prints_cache_warnings(tmp_path, monkeypatch, capsys, core_only):
    import vdgraph.diskcache

    def disk_full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(vdgraph.diskcache, "atomic_write", disk_full)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "vdgraph-cache.json").write_text('{"vdgraph_cache_format": 2}')  # created before the disk filled up
    assert main(["run", str(REPO / "workflows" / "hello.json"), "--cache", str(cache), "--output-dir",
                 str(tmp_path / "out"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "vdgraph: warning: cannot write the cache file " + str(cache) in err and "No space left" in err


def test_video_pack_registers_its_codecs():
    """The pack's values are stored because importing the pack registers their codecs (no import by name)."""
    assert "persist" in vars(vdgraph_video)
    assert encode(SchedulerConfig("DDIMScheduler", {}), {})["tag"] == "video.scheduler_config"
