"""Sweeps: one workflow run over the grid of several inputs' values, through one Executor.

    executor.sweep("workflows/text2video_zero.json", {"seed": range(4), "prompt": ["a red circle ...", ...]})
    vdgraph run workflows/text2video_zero.json --sweep seed=0..3 --sweep prompt=@prompts.txt

Every job shares the executor's cache, so what does not depend on the swept inputs (the model, the text encoding
of an unswept prompt) runs once. Each job writes into its own folder inside the sweep's folder
(`out/<workflow>_sweep/003_seed-3/...`, the sweep folder getting a counter when the name is taken), and a grid
contact sheet of every job's frames is written beside them, rows and columns labelled with the swept values.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from vdgraph.outputs import OutputFolder, mark_folder, safe_field

if TYPE_CHECKING:
    from vdgraph.executor import Executor, RunResult

MAX_JOBS = 10_000
"""A grid larger than this is refused before anything runs (a typo such as seed=0..1000000 would run for days)."""


@dataclasses.dataclass
class SweepJob:
    index: int
    values: dict[str, Any]
    """The swept inputs' values of this job."""
    output_dir: str
    result: RunResult | None = None
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return " ".join(f"{name}={value!r}" if isinstance(value, str) else f"{name}={value}"
                        for name, value in self.values.items())


@dataclasses.dataclass
class SweepResult:
    jobs: list[SweepJob]
    folder: str
    """The sweep's folder (each job's files are in a subfolder)."""
    sheet: str | None
    """The grid contact sheet, or None when no output holds frames or images."""


def parse_sweep(text: str, read_file: Callable[[str], str]) -> tuple[str, list[str]]:
    """`name=SPEC` -> (name, raw values). SPEC: `A..B` (integers A to B inclusive), `A..B..STEP`, `@FILE` (one
    value a line, blank lines skipped) or values separated by commas. Values stay text here; the workflow input's
    type converts them as for `--set`."""
    name, sep, spec = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ValueError(f"--sweep expects name=values (e.g. seed=0..7, prompt=@prompts.txt or guidance=5,7.5), "
                         f"got {text!r}")
    if spec.startswith("@"):
        values = [line.strip() for line in read_file(spec[1:]).splitlines() if line.strip()]
        if not values:
            raise ValueError(f"--sweep {name}: {spec[1:]!r} has no values (one a line)")
        return name, values
    parts = spec.split("..")
    if len(parts) in (2, 3) and all(_is_int(p) for p in parts):
        first, last = int(parts[0]), int(parts[1])
        step = int(parts[2]) if len(parts) == 3 else (1 if last >= first else -1)
        if step == 0 or (last - first) * step < 0:
            raise ValueError(f"--sweep {name}={spec}: the step {step} never goes from {first} to {last}")
        count = (last - first) // step + 1
        if count > MAX_JOBS:
            raise ValueError(f"--sweep {name}={spec} has {count} values; at most {MAX_JOBS} jobs run in one sweep")
        return name, [str(v) for v in range(first, last + (1 if step > 0 else -1), step)]
    values = [v.strip() for v in spec.split(",")]
    if not spec.strip() or any(not v for v in values):
        raise ValueError(f"--sweep {name}={spec!r}: an empty value; give A..B, @FILE or comma-separated values")
    return name, values


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def grid(sweeps: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination, the last input varying fastest (rows: the earlier inputs, columns: the last one)."""
    names = list(sweeps)
    total = 1
    for name in names:
        if not len(sweeps[name]):
            raise ValueError(f"sweep {name!r} has no values")
        total *= len(sweeps[name])
    if total > MAX_JOBS:
        raise ValueError(f"the sweep makes {total} jobs; at most {MAX_JOBS} run in one sweep")
    return [dict(zip(names, combo)) for combo in itertools.product(*(sweeps[n] for n in names))]


def job_folder_name(index: int, values: Mapping[str, Any]) -> str:
    slug = "_".join(f"{name}-{safe_field(value)}" for name, value in values.items())
    return f"{index:03d}_{slug[:80].rstrip('_-.')}"


def run_sweep(executor: Executor, workflow: Any, sweeps: Mapping[str, Iterable[Any]],
              inputs: Mapping[str, Any] | None = None, outputs: Iterable[str] | None = None, *,
              output_dir: str | os.PathLike = "out", overwrite: bool = False,
              allow_outside_output_dir: bool = False, on_job: Callable[[SweepJob, int], None] | None = None,
              sheet: bool = True, **run_kwargs: Any) -> SweepResult:
    """See `Executor.sweep`."""
    from vdgraph.errors import WorkflowInvalid

    from vdgraph.workflow import load_workflow

    workflow = load_workflow(workflow)  # a file is read once for all jobs
    sweeps = {name: list(values) for name, values in sweeps.items()}
    base = dict(inputs or {})
    clash = sorted(set(base) & set(sweeps))
    if clash:
        raise ValueError(f"input {clash[0]!r} is both set and swept; sweep it or set it, not both")
    combos = grid(sweeps)
    plans = []
    problems = []
    for values in combos:  # every job is validated before the first one runs
        try:
            plans.append(executor.plan(workflow, {**base, **values}))
        except WorkflowInvalid as exc:
            label = ", ".join(f"{k}={v!r}" for k, v in values.items())
            problems += [dataclasses.replace(p, message=f"{p.message} (sweep job {label})") for p in exc.problems]
    if problems:
        raise WorkflowInvalid(problems)
    name = plans[0].workflow.display_name
    folder = OutputFolder(output_dir, overwrite=overwrite, allow_outside=allow_outside_output_dir)
    jobs: list[SweepJob] = []
    with folder.claim(f"{name}_sweep", port="--sweep", folder=True) as sweep_dir:
        for index, (values, plan) in enumerate(zip(combos, plans)):
            job = SweepJob(index, values, f"{sweep_dir.rstrip('/')}/{job_folder_name(index, values)}")
            started = time.perf_counter()
            job.result = executor.run(plan, outputs, output_dir=job.output_dir, overwrite=overwrite,
                                      allow_outside_output_dir=allow_outside_output_dir, **run_kwargs)
            job.seconds = time.perf_counter() - started
            mark_folder(job.output_dir)  # so that a later --overwrite may replace the sweep
            jobs.append(job)
            if on_job is not None:
                on_job(job, len(combos))
        sheet_path = write_grid_sheet(jobs, list(sweeps), sweep_dir) if sheet else None
    return SweepResult(jobs, sweep_dir, sheet_path)


# -- the grid contact sheet ------------------------------------------------------------------------------------------

CELL_FRAMES = 4
"""Frames shown per job (evenly spaced over its clip)."""


def _images(value: Any) -> Any | None:
    """(N, H, W, 3) float frames of an output that holds frames (F, H, W, 3) or an image (H, W, 3), else None."""
    try:
        import torch
    except ImportError:  # pragma: no cover - the video packs need torch; the engine does not
        return None
    if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.shape[-1:] != (3,):
        return None
    if value.ndim == 3:
        return value.unsqueeze(0)
    return value if value.ndim == 4 and value.shape[0] > 0 else None


def write_grid_sheet(jobs: list[SweepJob], names: list[str], folder: str) -> str | None:
    """One PNG: a row per combination of all swept inputs but the last, a column per value of the last; each cell
    shows CELL_FRAMES frames of the job's first output holding frames. Labels name the values."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw, ImageFont

    from vdgraph.io import atomic_write

    cells = []
    for job in jobs:
        frames = next((f for f in map(_images, (job.result.outputs if job.result else {}).values()) if f is not None),
                      None)
        cells.append(frames)
    if all(c is None for c in cells):
        return None
    shape = next(c for c in cells if c is not None).shape[1:3]
    strips = []
    for frames in cells:
        if frames is None or tuple(frames.shape[1:3]) != tuple(shape):
            strips.append(np.full((shape[0], shape[1] * CELL_FRAMES, 3), 255, np.uint8))  # nothing comparable
            continue
        pick = np.linspace(0, frames.shape[0] - 1, min(CELL_FRAMES, frames.shape[0])).round().astype(int)
        chosen = (frames[list(pick)].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        strip = np.full((shape[0], shape[1] * CELL_FRAMES, 3), 255, np.uint8)
        strip[:, :shape[1] * len(pick)] = np.concatenate(list(chosen), axis=1)
        strips.append(strip)
    last = names[-1]
    columns = list(dict.fromkeys(_text(job.values[last]) for job in jobs))
    rows = list(dict.fromkeys(_row_label(job, names[:-1]) for job in jobs))
    font = ImageFont.load_default()
    gap, header = 4, 14
    label_width = max([6 * len(r) for r in rows] + [6 * len(last) + 12]) + 8 if rows != [""] else 0
    cell_h, cell_w = strips[0].shape[:2]
    width = label_width + len(columns) * (cell_w + gap)
    height = header + len(rows) * (cell_h + gap)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for c, text in enumerate(columns):
        draw.text((label_width + c * (cell_w + gap), 1), f"{last}={text}"[: cell_w // 6], fill="black", font=font)
    for r, text in enumerate(rows):
        draw.text((2, header + r * (cell_h + gap) + cell_h // 2 - 6), text, fill="black", font=font)
    for job, strip in zip(jobs, strips):
        r = rows.index(_row_label(job, names[:-1]))
        c = columns.index(_text(job.values[last]))
        sheet.paste(Image.fromarray(strip), (label_width + c * (cell_w + gap), header + r * (cell_h + gap)))
    target = f"{folder.rstrip('/')}/sweep_sheet.png"
    data = io.BytesIO()
    sheet.save(data, format="PNG")
    with atomic_write(target) as handle:
        handle.write(data.getvalue())
    return target


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _row_label(job: SweepJob, names: list[str]) -> str:
    return " ".join(f"{n}={_text(job.values[n])}" for n in names)
