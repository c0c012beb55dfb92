"""Issue 8, "no run deletes or overwrites a user's file": every writer gets its target from the run's output folder
(vdgraph.outputs), which confines it, never replaces what is there without --overwrite, never deletes what vdgraph
did not write, and cleans up after killed writes. And video.read_video reads with bounded resources."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import REPO
from PIL import Image

import vdgraph
from vdgraph.context import RunContext
from vdgraph.errors import NodeRunError, WorkflowInvalid
from vdgraph.io import atomic_write
from vdgraph.node import Node, Output
from vdgraph.outputs import MARKER, STALE_SECONDS, OutputFolder, OutputRefused
from vdgraph_video.ops import video_io
from vdgraph_video.types import FRAMES

WORKFLOWS = REPO / "workflows"


class TestFrames(Node):
    """Test source: two tiny frames, for the writers."""

    id = "trust.frames"
    inputs = []
    outputs = [Output("frames", FRAMES)]

    def run(self, ctx):
        return torch.rand(2, 8, 8, 3, generator=torch.Generator().manual_seed(0))


# writer node type, its target port, its output, a good file name, whether it writes a folder
WRITERS = [
    ("video.write_video", "path", "file", "clip.mp4", False),
    ("video.write_video", "path", "file", "frames", True),
    ("video.contact_sheet", "path", "file", "sheet.png", False),
    ("core.save_json", "filename", "path", "result.json", False),
]
WRITER_IDS = ["mp4", "png-folder", "contact-sheet", "json"]


def writer_workflow(writer: str, port: str, output: str) -> dict:
    source_port = "value" if writer == "core.save_json" else "frames"
    return {"vdgraph": 1, "name": "trust",
            "inputs": {"target": {"type": "str", "default": "x"}, "seed": {"type": "int", "default": 7},
                       "prompt": {"type": "str", "default": "a red/circle .. on blue"}},
            "nodes": {"src": {"type": "trust.frames"},
                      "w": {"type": writer, "in": {source_port: "src.frames", port: "inputs.target"}}},
            "outputs": {"file": f"w.{output}"}}


@pytest.fixture(scope="module")
def executor():
    registry = vdgraph.Registry.discover()
    registry.register(TestFrames, pack="trust")
    return vdgraph.Executor(registry=registry, device="cpu")


def write(executor, writer, port, output, name, out, **options) -> Path:
    result = executor.run(writer_workflow(writer, port, output), {"target": name}, output_dir=str(out), **options)
    return Path(result["file"])


BEFORE_RUNNING = (WorkflowInvalid, OutputRefused)
"""A target known before the run (a literal or a workflow input) is refused before any node runs: by validation
when it can never be written (`output.target`), by the executor's check against the run's folder otherwise."""


def names_node_and_port(exc: BaseException, node: str, port: str) -> bool:
    text = str(exc)
    return (f"node {node!r}" in text and f"port {port!r}" in text) or f"{node}.{port}: error [output.target]" in text


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` with its bytes (None for folders), to prove nothing changed."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes()) for p in sorted(folder.rglob("*"))}


def user_files(root: Path) -> Path:
    """A user's folder holding the output folder and their own files next to and inside it."""
    (root / "out").mkdir(parents=True)
    (root / "precious.txt").write_text("the user's")
    (root / "out" / "earlier.mp4").write_bytes(b"an earlier result")
    return root / "out"


# -- confinement -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("writer, port, output, good, folder", WRITERS, ids=WRITER_IDS)
@pytest.mark.parametrize("bad", ["..", ".", "", "./", "../escaped.mp4", "a/../../b.mp4", "/etc/vdgraph-test",
                                 "memory://elsewhere/x.mp4"])
def test_every_writer_refuses_targets_outside_the_output_folder(executor, tmp_path, writer, port, output, good,
                                                                folder, bad):
    out = user_files(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(BEFORE_RUNNING) as caught:
        write(executor, writer, port, output, bad, out)
    assert names_node_and_port(caught.value, "w", port), str(caught.value)
    assert snapshot(tmp_path) == before, "a refused write must leave every file and folder as it was"


def test_the_refusal_says_how_to_write_outside(executor, tmp_path):
    out = user_files(tmp_path)
    with pytest.raises(OutputRefused, match="--allow-outside-output-dir"):
        write(executor, "video.write_video", "path", "file", "../clip.mp4", out)


def test_an_absolute_path_inside_the_output_folder_is_accepted(executor, tmp_path):
    written = write(executor, "video.write_video", "path", "file", str(tmp_path / "sub" / "clip.mp4"), tmp_path)
    assert written == tmp_path / "sub" / "clip.mp4" and written.stat().st_size > 0


def test_a_symbolic_link_out_of_the_output_folder_is_refused(executor, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(OutputRefused, match="symbolic link"):
        write(executor, "video.contact_sheet", "path", "file", "link/sheet.png", out)
    assert list(outside.iterdir()) == []


def test_allow_outside_writes_outside_but_still_never_replaces(executor, tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "clip.mp4").write_bytes(b"keep")
    written = write(executor, "video.write_video", "path", "file", str(elsewhere / "clip.mp4"), out,
                    allow_outside_output_dir=True)
    assert written == elsewhere / "clip_00001.mp4" and written.stat().st_size > 0
    assert (elsewhere / "clip.mp4").read_bytes() == b"keep"
    with pytest.raises(BEFORE_RUNNING, match="names no file|output folder itself"):
        write(executor, "video.write_video", "path", "file", ".", out, allow_outside_output_dir=True)


def test_an_absolute_output_in_a_workflow_never_touches_the_home_folder(executor, tmp_path, monkeypatch):
    """The attack: a workflow's `output` naming a folder in the user's home (the PNG-frame writer deleted it) and
    its contact sheet naming a dotfile (overwritten with a PNG)."""
    home = tmp_path / "home"
    (home / "videos").mkdir(parents=True)
    (home / "videos" / "holiday.mp4").write_bytes(b"irreplaceable")
    (home / ".bashrc").write_text("export PATH=...\n")
    monkeypatch.setenv("HOME", str(home))
    before = snapshot(home)
    for writer, port, output, target in [("video.write_video", "path", "file", home / "videos"),
                                         ("video.contact_sheet", "path", "file", home / ".bashrc"),
                                         ("core.save_json", "filename", "path", "~/.bashrc")]:
        workflow = writer_workflow(writer, port, output)
        workflow["inputs"]["target"]["default"] = str(target)
        for overwrite in (False, True):
            try:
                executor.run(workflow, output_dir=str(tmp_path / "out"), overwrite=overwrite)
            except OutputRefused as exc:
                assert "outside the output folder" in str(exc)
    assert snapshot(home) == before
    assert (tmp_path / "out" / "~" / ".bashrc").is_file(), "'~' is a name like any other, inside the folder"


# -- never replace, never delete ---------------------------------------------------------------------------------

@pytest.mark.parametrize("writer, port, output, good, folder", WRITERS, ids=WRITER_IDS)
def test_an_existing_target_gets_a_counter_instead_of_being_replaced(executor, tmp_path, writer, port, output,
                                                                     good, folder):
    out = tmp_path / "out"
    out.mkdir()
    stem, ext = os.path.splitext(good)
    if folder:
        (out / good).mkdir()
        (out / good / "mine.txt").write_text("the user's")
    else:
        (out / good).write_bytes(b"the user's")
    before = snapshot(out)
    first = write(executor, writer, port, output, good, out)
    second = write(executor, writer, port, output, good, out)
    assert (first.name, second.name) == (f"{stem}_00001{ext}", f"{stem}_00002{ext}")
    assert {k: v for k, v in snapshot(out).items() if k in before} == before, "the user's target is untouched"
    assert first.is_dir() == folder and second.exists()


def test_overwrite_replaces_a_file(executor, tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"old")
    written = write(executor, "video.write_video", "path", "file", "clip.mp4", tmp_path, overwrite=True)
    assert written == tmp_path / "clip.mp4" and written.read_bytes() != b"old"
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4"], "no counter, no temporary left"


def test_overwrite_replaces_a_frame_folder_vdgraph_wrote_and_nothing_else(executor, tmp_path):
    first = write(executor, "video.write_video", "path", "file", "frames", tmp_path)
    assert sorted(os.listdir(first)) == [MARKER, "frame_00000.png", "frame_00001.png", "recipe.json"]
    again = write(executor, "video.write_video", "path", "file", "frames", tmp_path, overwrite=True)
    assert again == first and sorted(os.listdir(tmp_path)) == ["frames"]
    (first / "notes.txt").write_text("the user's")  # now the folder holds something vdgraph did not write
    with pytest.raises(OutputRefused, match="did not write"):  # before any node runs
        write(executor, "video.write_video", "path", "file", "frames", tmp_path, overwrite=True)
    assert (first / "notes.txt").read_text() == "the user's" and (first / "frame_00000.png").exists()


@pytest.mark.parametrize("target", ["folder", "file"])
def test_overwrite_never_deletes_a_folder_vdgraph_did_not_write(executor, tmp_path, target):
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "frame_00000.png").write_bytes(b"the user's own frame")
    (tmp_path / "clip.mp4").mkdir()
    before = snapshot(tmp_path)
    name = "frames" if target == "folder" else "clip.mp4"
    # the user's folder is refused before any node runs; an empty folder where a file goes, when the write comes
    with pytest.raises(OutputRefused if target == "folder" else NodeRunError, match="never deletes|writes a file"):
        write(executor, "video.write_video", "path", "file", name, tmp_path, overwrite=True)
    assert snapshot(tmp_path) == before


def test_overwrite_never_replaces_a_symbolic_link(executor, tmp_path):
    target = tmp_path / "dotfile"
    target.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / "sheet.png").symlink_to(target)
    with pytest.raises(OutputRefused, match="symbolic link"):  # before any node runs
        write(executor, "video.contact_sheet", "path", "file", "sheet.png", out, overwrite=True)
    assert target.read_text() == "keep" and (out / "sheet.png").is_symlink()


def test_a_failed_write_leaves_no_reserved_name_behind(tmp_path):
    outputs = OutputFolder(tmp_path, node="w")
    with pytest.raises(RuntimeError), outputs.claim("clip.mp4") as target:
        assert os.path.exists(target), "the name is reserved while the writer works"
        raise RuntimeError("encoder crashed")
    with pytest.raises(RuntimeError), outputs.claim("frames", folder=True):
        raise RuntimeError("encoder crashed")
    assert os.listdir(tmp_path) == []


def test_a_failed_overwrite_puts_the_old_folder_back(tmp_path):
    outputs = OutputFolder(tmp_path, overwrite=True, node="w")
    with outputs.claim("frames", folder=True) as target:
        video_io.write_png_frames(np.zeros((2, 4, 4, 3), np.uint8), target)
    before = snapshot(tmp_path)
    with pytest.raises(RuntimeError), outputs.claim("frames", folder=True):
        raise RuntimeError("encoder crashed")
    assert snapshot(tmp_path) == before


# -- names -------------------------------------------------------------------------------------------------------

def test_names_take_a_counter_the_workflow_and_its_inputs(executor, tmp_path):
    name = "{workflow}_{seed}_{counter}.json"
    first = write(executor, "core.save_json", "filename", "path", name, tmp_path)
    second = write(executor, "core.save_json", "filename", "path", name, tmp_path)
    assert (first.name, second.name) == ("trust_7_00001.json", "trust_7_00002.json")
    unsafe = write(executor, "core.save_json", "filename", "path", "{prompt}.json", tmp_path)
    assert unsafe.parent == tmp_path and unsafe.name == "a_red_circle_.._on_blue.json"
    with pytest.raises(BEFORE_RUNNING, match=r"unknown field \{sed\}.*seed"):
        write(executor, "core.save_json", "filename", "path", "{sed}.json", tmp_path)


def test_the_counter_follows_the_highest_one_there(tmp_path):
    (tmp_path / "clip_00041.mp4").write_bytes(b"")
    with OutputFolder(tmp_path).claim("clip_{counter}.mp4") as target:
        assert os.path.basename(target) == "clip_00042.mp4"


def test_concurrent_claims_never_get_the_same_name(tmp_path):
    outputs = OutputFolder(tmp_path)
    barrier = threading.Barrier(12)
    names: list[str] = []

    def claim(folder: bool) -> None:
        barrier.wait()
        with outputs.claim("clip" if folder else "clip.mp4", folder=folder) as target:
            names.append(target)
            time.sleep(0.01)

    threads = [threading.Thread(target=claim, args=(i % 2 == 0,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(names)) == 12 and len(os.listdir(tmp_path)) == 12


def test_concurrent_processes_never_get_the_same_name(tmp_path):
    code = ("import sys; from vdgraph.outputs import OutputFolder\n"
            "with OutputFolder(sys.argv[1]).claim('clip.mp4') as t: print(t)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(4)]
    names = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert len(set(names)) == 4 and sorted(os.listdir(tmp_path)) == sorted(os.path.basename(n) for n in names)


def test_output_dir_is_checked_before_anything_runs(executor):
    workflow = writer_workflow("core.save_json", "filename", "path")
    with pytest.raises(TypeError, match="output_dir must be a folder path"):
        executor.run(workflow, output_dir=None)
    with pytest.raises(TypeError, match="output_dir must be a folder path"):
        vdgraph.run(WORKFLOWS / "hello.json", output_dir=None, device="cpu")
    with pytest.raises(ValueError, match="output_dir is empty"):
        executor.run(workflow, output_dir="")
    assert not Path("None").exists()


def test_the_default_output_folder_is_out(executor, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = executor.run(writer_workflow("core.save_json", "filename", "path"), {"target": "r.json"})
    assert result["file"] == os.path.join("out", "r.json") and (tmp_path / "out" / "r.json").is_file()


def test_a_remote_output_folder_follows_the_same_rules(executor):
    import fsspec

    fs = fsspec.filesystem("memory")
    try:
        first = executor.run(writer_workflow("video.write_video", "path", "file"), {"target": "frames"},
                             output_dir="memory://trust-out")["file"]
        second = executor.run(writer_workflow("video.write_video", "path", "file"), {"target": "frames"},
                              output_dir="memory://trust-out")["file"]
        assert (first, second) == ("memory://trust-out/frames", "memory://trust-out/frames_00001")
        assert fs.exists(f"/trust-out/frames/{MARKER}") and len(fs.ls("/trust-out/frames_00001")) == 4  # 2 frames, recipe, marker
        with pytest.raises(OutputRefused, match="leaves the output folder"):
            executor.run(writer_workflow("video.write_video", "path", "file"), {"target": "../x.mp4"},
                         output_dir="memory://trust-out")
    finally:
        fs.rm("/trust-out", recursive=True)


# -- the command line -----------------------------------------------------------------------------------------------

def cli(*args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "nodes")])}
    return subprocess.run([sys.executable, "-m", "vdgraph", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_running_hello_in_the_workflows_folder_leaves_hello_json_untouched(tmp_path):
    """`cd workflows && vdgraph run hello.json` once replaced hello.json with its own output."""
    folder = tmp_path / "workflows"
    folder.mkdir()
    shutil.copy(WORKFLOWS / "hello.json", folder / "hello.json")
    original = (folder / "hello.json").read_bytes()
    done = cli("run", "hello.json", "--quiet", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert (folder / "hello.json").read_bytes() == original
    assert json.loads((folder / "out" / "hello.json").read_text()).startswith("Hello, world!")
    done = cli("run", "hello.json", "--quiet", "--output-dir", ".", cwd=folder)  # even when asked to write there
    assert done.returncode == 0, done.stderr
    assert (folder / "hello.json").read_bytes() == original and (folder / "hello_00001.json").is_file()


@pytest.mark.parametrize("value", ["..", ".", ""])
def test_set_output_to_a_folder_leaves_the_parent_and_the_folder_intact(tmp_path, value):
    """The attack: `--set output=..` deleted the output folder's parent, `output=.` emptied the output folder."""
    workflow = {"vdgraph": 1, "inputs": {"output": {"type": "str", "default": "result.json"}},
                "nodes": {"text": {"type": "core.format", "params": {"template": "hi"}},
                          "save": {"type": "core.save_json",
                                   "in": {"value": "text.text", "filename": "inputs.output"}}},
                "outputs": {"file": "save.path"}}
    (tmp_path / "w.json").write_text(json.dumps(workflow))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "earlier.json").write_text("1")
    before = snapshot(tmp_path)
    done = cli("run", "w.json", "--quiet", "--set", f"output={value}", cwd=tmp_path)
    assert done.returncode == 1
    assert ("node 'save' port 'filename'" in done.stderr or "save.filename: error [output.target]" in done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert snapshot(tmp_path) == before


def test_events_file_is_not_replaced_without_overwrite_and_a_full_disk_names_it(tmp_path):
    (tmp_path / "events.jsonl").write_text("an earlier log\n")
    done = cli("run", str(WORKFLOWS / "hello.json"), "--quiet", "--events", "events.jsonl", cwd=tmp_path)
    assert done.returncode == 2 and "--overwrite" in done.stderr, done.stderr
    assert (tmp_path / "events.jsonl").read_text() == "an earlier log\n"
    done = cli("run", str(WORKFLOWS / "hello.json"), "--quiet", "--events", "events.jsonl", "--overwrite",
               cwd=tmp_path)
    assert done.returncode == 0 and "run_started" in (tmp_path / "events.jsonl").read_text()
    if os.path.exists("/dev/full"):
        done = cli("run", str(WORKFLOWS / "hello.json"), "--quiet", "--events", "/dev/full", cwd=tmp_path)
        assert done.returncode == 1 and "/dev/full" in done.stderr and "No space left" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_make_demo_replaces_its_outputs_on_every_run():
    makefile = (REPO / "Makefile").read_text()
    demo = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "--output-dir out" in demo and "--overwrite" in demo, demo


# -- disk full, stale temporaries -----------------------------------------------------------------------------------

def test_a_full_disk_names_the_file_being_written(executor, tmp_path, monkeypatch):
    with pytest.raises(OSError, match="No space left on device: .*x.bin"), atomic_write(str(tmp_path / "x.bin")):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    real_replace = os.replace

    def full(source, target, *args, **kwargs):
        if ".tmp-" in str(source):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(NodeRunError, match=r"No space left on device: .*clip\.mp4"):
        write(executor, "video.write_video", "path", "file", "clip.mp4", tmp_path)
    assert os.listdir(tmp_path) == [], "no temporary, no empty reserved name"


def test_stale_temporaries_of_a_killed_write_are_removed_on_the_next_write(executor, tmp_path):
    old = time.time() - STALE_SECONDS - 60
    stale_file = tmp_path / "clip.mp4.tmp-0123456789ab"
    stale_folder = tmp_path / "frames.tmp-abcdefabcdef"
    fresh = tmp_path / "other.mp4.tmp-00112233aabb"  # perhaps a write under way in another run
    stale_file.write_bytes(b"half")
    stale_folder.mkdir()
    (stale_folder / "frame_00000.png").write_bytes(b"half")
    fresh.write_bytes(b"busy")
    lookalike = tmp_path / "notes.tmp-not-ours"
    lookalike.write_text("the user's")
    users_folder = tmp_path / "photos.tmp-0123456789ab"  # named like a temporary, holding what vdgraph never writes
    (users_folder / "sub").mkdir(parents=True)
    (users_folder / "sub" / "p.txt").write_text("precious")
    (users_folder / "frame_00000.png").write_bytes(b"a user's frame beside it")
    for path in (stale_folder / "frame_00000.png", stale_folder, stale_file, lookalike, users_folder):
        os.utime(path, (old, old))
    write(executor, "video.write_video", "path", "file", "clip.mp4", tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4", "notes.tmp-not-ours", "other.mp4.tmp-00112233aabb",
                                            "photos.tmp-0123456789ab"]
    assert (users_folder / "sub" / "p.txt").read_text() == "precious"


# -- reading with bounded resources ---------------------------------------------------------------------------------

def encode(path: Path, frames: int, width: int, height: int, codec: str = "libx264") -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=8)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "40"}
        for i in range(frames):
            image = np.full((height, width, 3), 20 * i % 255, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_a_huge_frame_size_is_refused_before_anything_is_allocated(tmp_path):
    """The attack: a 52 KB 4096x4096 mp4 needed more than 12 GB."""
    path = encode(tmp_path / "big.mp4", 3, 4096, 4096)
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"4096x4096 .* over max_pixels=8,294,400; raise max_pixels"):
            video_io.read_video(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000, f"{peak} bytes traced before the refusal"


class Counting:
    """Wraps av.open: counts the frames decoded and the frames converted to arrays."""

    def __init__(self, monkeypatch):
        self.decoded = self.converted = 0
        real_open = av.open
        counter = self

        class Frame:
            def __init__(self, frame):
                self.frame, self.width, self.height = frame, frame.width, frame.height

            def to_ndarray(self, **kwargs):
                counter.converted += 1
                return self.frame.to_ndarray(**kwargs)

        class Container:
            def __init__(self, container):
                self.container = container

            def __getattr__(self, name):
                return getattr(self.container, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return self.container.__exit__(*exc)

            def decode(self, stream):
                for frame in self.container.decode(stream):
                    counter.decoded += 1
                    yield Frame(frame)

        monkeypatch.setattr(av, "open", lambda *a, **k: Container(real_open(*a, **k)))


def test_decoding_is_lazy_and_stops_at_max_frames(tmp_path, monkeypatch):
    path = str(encode(tmp_path / "clip.mp4", 12, 32, 32))
    counting = Counting(monkeypatch)
    frames, _ = video_io.read_video(path, max_frames=1)
    assert frames.shape == (1, 32, 32, 3) and (counting.decoded, counting.converted) == (1, 1)
    counting.decoded = counting.converted = 0
    frames, _ = video_io.read_video(path, start=5, stride=2, max_frames=2)  # positions 5 and 7
    assert frames.shape[0] == 2 and (counting.decoded, counting.converted) == (8, 2)


def test_the_selection_is_bounded_in_total(tmp_path):
    path = str(encode(tmp_path / "clip.mp4", 10, 32, 32))
    with pytest.raises(ValueError, match="would hold more than max_total_pixels=3,072"):
        video_io.read_video(path, max_total_pixels=3 * 32 * 32)
    assert video_io.read_video(path, max_frames=3, max_total_pixels=3 * 32 * 32)[0].shape[0] == 3


def test_files_without_a_video_stream_give_a_clear_error(tmp_path):
    audio = tmp_path / "voice.wav"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(ValueError, match="has no video stream .*only audio"):
        video_io.read_video(str(audio))
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(ValueError, match="cannot read .* as a video"):
        video_io.read_video(str(text))


def test_an_empty_path_is_an_error_not_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    video_io.write_png_frames(np.zeros((2, 4, 4, 3), np.uint8), str(tmp_path / "frames"))
    for path in ("", " "):
        with pytest.raises(ValueError, match="path is empty"):
            video_io.read_video(path)
    import vdgraph_video

    ctx = RunContext("read", "video.read_video", torch.device("cpu"), torch.float32, workflow_dir=str(tmp_path))
    with pytest.raises(ValueError, match="path is empty"):
        vdgraph_video.ReadVideo().run(ctx, "", 0.0, 0, 1, 0, 0, 0, 10**7, 10**8)


def read_in_thread(path: str, **options):
    """read_video in a thread; (finished, error) after at most 10 s, unblocking a reader stuck on a FIFO."""
    outcome: list = []

    def target():
        try:
            video_io.read_video(path, **options)
            outcome.append(None)
        except Exception as exc:  # noqa: BLE001 (the test inspects it)
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():
        fifo = os.open(path, os.O_WRONLY | os.O_NONBLOCK) if os.path.exists(path) else None
        if fifo is not None:
            os.close(fifo)
        thread.join(5)
        return False, None
    return True, outcome[0]


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    finished, error = read_in_thread(str(fifo))
    assert finished, "read_video blocked on a FIFO"
    assert isinstance(error, ValueError) and "FIFO" in str(error)
    folder = tmp_path / "frames"
    video_io.write_png_frames(np.zeros((3, 4, 4, 3), np.uint8), str(folder))
    os.remove(folder / "frame_00001.png")
    os.mkfifo(folder / "frame_00001.png")
    finished, error = read_in_thread(str(folder))
    assert finished and isinstance(error, ValueError) and "not a regular file" in str(error)


def test_png_folders_are_read_lazily_and_bounded(tmp_path):
    folder = tmp_path / "frames"
    images = np.stack([np.full((16, 16, 3), 40 * i, np.uint8) for i in range(5)])
    video_io.write_png_frames(images, str(folder))
    (folder / "frame_00003.png").write_bytes(b"not a png")  # never opened unless selected
    frames, _ = video_io.read_video(str(folder), max_frames=3)
    assert frames.shape == (3, 16, 16, 3)
    frames, _ = video_io.read_video(str(folder), start=4)
    assert frames.shape[0] == 1 and round(float(frames[0, 0, 0, 0]) * 255) == 160
    with pytest.raises(ValueError, match="frame_00003.png' is not a readable PNG"):
        video_io.read_video(str(folder))
    with pytest.raises(ValueError, match="16x16 .* over max_pixels=100"):
        video_io.read_video(str(folder), max_pixels=100)
    Image.new("RGB", (8, 8)).save(folder / "frame_00003.png")
    with pytest.raises(ValueError, match="frame 3 is 8x8 but the first selected frame is 16x16"):
        video_io.read_video(str(folder))


def test_read_video_node_reports_the_limit_as_a_node_error(tmp_path):
    path = encode(tmp_path / "big.mp4", 1, 4096, 4096)
    workflow = {"vdgraph": 1, "nodes": {"read": {"type": "video.read_video", "params": {"path": str(path)}}},
                "outputs": {"frames": "read.frames"}}
    with pytest.raises(NodeRunError, match=r"node 'read' .*max_pixels"):
        vdgraph.run(workflow, device="cpu")


SAVE_VAL = {"vdgraph": 1, "name": "w2",
            "inputs": {"val": {"type": "int", "default": 1}, "fn": {"type": "str", "default": "a.json"}},
            "nodes": {"save": {"type": "core.save_json", "in": {"value": "inputs.val", "filename": "inputs.fn"}}},
            "outputs": {"file": "save.path"}}


def test_events_never_replace_the_workflow_a_folder_or_a_link_and_leave_no_empty_file(tmp_path):
    (tmp_path / "w.json").write_text(json.dumps(SAVE_VAL))
    workflow = (tmp_path / "w.json").read_text()
    (tmp_path / "victim").write_text("keep me")
    (tmp_path / "link").symlink_to(tmp_path / "victim")
    (tmp_path / "folder").mkdir()
    for target, says in (("w.json", "a file this run reads"), ("link", "symbolic link"), ("folder", "is a folder")):
        done = cli("run", "w.json", "--quiet", "--overwrite", "--events", target, cwd=tmp_path)
        assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert (tmp_path / "w.json").read_text() == workflow and (tmp_path / "victim").read_text() == "keep me"
    # a run that fails before its first event leaves no empty events file to block the retry
    (tmp_path / "not_a_folder").write_text("x")
    done = cli("run", "w.json", "--quiet", "--events", "ev.jsonl", "--output-dir", "not_a_folder", cwd=tmp_path)
    assert done.returncode != 0 and not (tmp_path / "ev.jsonl").exists(), done.stderr
    done = cli("run", "w.json", "--quiet", "--events", "ev.jsonl", "--output-dir", "out", cwd=tmp_path)
    assert done.returncode == 0 and "run_started" in (tmp_path / "ev.jsonl").read_text(), done.stderr


def test_run_from_an_output_never_replaces_that_output_even_with_overwrite(tmp_path):
    (tmp_path / "w.json").write_text(json.dumps(SAVE_VAL))
    assert cli("run", "w.json", "--quiet", "--output-dir", "o", cwd=tmp_path).returncode == 0
    made = (tmp_path / "o" / "a.json").read_text()
    for source in ("o/a.json", "o/a.json.recipe.json"):
        done = cli("run", "--from", source, "--set", "val=2", "--output-dir", "o", "--overwrite", "--quiet",
                   cwd=tmp_path)
        assert done.returncode == 1 and "what this run reads" in done.stderr, done.stderr
        assert (tmp_path / "o" / "a.json").read_text() == made
    done = cli("run", "--from", "o/a.json", "--set", "val=2", "--output-dir", "o", "--quiet", cwd=tmp_path)
    assert done.returncode == 0 and json.loads((tmp_path / "o" / "a_00001.json").read_text()) == 2, done.stderr


def test_a_leftover_sidecar_never_passes_for_a_new_files_recipe(tmp_path):
    """a.json was removed but its a.json.recipe.json stayed: the new file takes a name whose sidecar is free too."""
    (tmp_path / "w.json").write_text(json.dumps(SAVE_VAL))
    assert cli("run", "w.json", "--quiet", "--output-dir", "o", "--set", "val=1", cwd=tmp_path).returncode == 0
    (tmp_path / "o" / "a.json").unlink()
    done = cli("run", "w.json", "--quiet", "--output-dir", "o", "--set", "val=2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(tmp_path / "o")) == ["a.json.recipe.json", "a_00001.json", "a_00001.json.recipe.json"]
    done = cli("inspect", "o/a_00001.json", cwd=tmp_path)
    assert "val" in done.stdout and "= 2" in done.stdout, done.stdout


def test_overwrite_replaces_a_sweep_vdgraph_wrote_and_names_only_a_users_file_in_one(tmp_path):
    (tmp_path / "w.json").write_text(json.dumps(SAVE_VAL))
    sweep = ("run", "w.json", "--quiet", "--output-dir", "o", "--sweep", "val=1..2")
    assert cli(*sweep, cwd=tmp_path).returncode == 0
    done = cli(*sweep, "--set", "fn=b.json", "--overwrite", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    jobs = sorted((tmp_path / "o" / "w2_sweep").glob("*/b.json"))
    assert len(jobs) == 2 and not list((tmp_path / "o" / "w2_sweep").glob("*/a.json"))  # replaced, not merged
    (tmp_path / "o" / "w2_sweep" / "mine.txt").write_text("a user's")
    done = cli(*sweep, "--overwrite", cwd=tmp_path)
    assert done.returncode != 0 and "('mine.txt')" in done.stderr, done.stderr
    assert (tmp_path / "o" / "w2_sweep" / "mine.txt").read_text() == "a user's"


def test_overwrite_refuses_a_target_no_write_may_replace_before_any_node_runs(tmp_path):
    workflow = {"vdgraph": 1, "name": "two",
                "nodes": {"text": {"type": "core.int_math", "params": {"a": 6, "b": 7, "op": "mul"}},
                          "save": {"type": "core.save_json", "in": {"value": "text.result"},
                                   "params": {"filename": "a.json"}}},
                "outputs": {"file": "save.path"}}
    (tmp_path / "w.json").write_text(json.dumps(workflow))
    (tmp_path / "o" / "a.json").mkdir(parents=True)
    (tmp_path / "o" / "a.json" / "mine.txt").write_text("a user's")
    (tmp_path / "victim").write_text("keep")
    (tmp_path / "o" / "b.json").symlink_to(tmp_path / "victim")
    for name, says in (("a.json", "was not written by vdgraph"), ("b.json", "symbolic link")):
        workflow["nodes"]["save"]["params"]["filename"] = name
        (tmp_path / "w.json").write_text(json.dumps(workflow))
        done = cli("run", "w.json", "--overwrite", "--quiet", "--output-dir", "o", "--events", f"{name}.jsonl",
                   cwd=tmp_path)
        assert done.returncode != 0 and says in done.stderr, done.stderr
        events = (tmp_path / f"{name}.jsonl").read_text() if (tmp_path / f"{name}.jsonl").exists() else ""
        assert "node_started" not in events, events  # refused before the first node
    assert (tmp_path / "o" / "a.json" / "mine.txt").read_text() == "a user's"
    assert (tmp_path / "victim").read_text() == "keep"


def test_previews_into_a_file_names_the_previews_option(tmp_path):
    (tmp_path / "pvfile").write_text("x")
    done = cli("run", str(WORKFLOWS / "hello.json"), "--quiet", "--previews", "pvfile", "--output-dir", "o",
               cwd=tmp_path)
    assert done.returncode != 0 and "(--previews DIR)" in done.stderr and "--output-dir" not in done.stderr, \
        done.stderr
