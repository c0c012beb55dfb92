"""Previews while a node runs: what a run asks for, and the listener that saves preview events as PNG files.

The engine knows no model: a node that can show its work (the video pack's denoiser shows its x0 prediction) reads
`ctx.previews` and, when `ctx.wants_preview(step, total)` says so, calls `ctx.preview(...)` with a PNG it made; the
context emits it as a `preview` event (vdgraph.events.Preview) on the run's ordinary event stream, so the CLI
(`--previews DIR`), the Python API (`on_event`) and the server (`vdgraph serve`) all get the same events.
Previews never change a result or a cache key: they only read what the node computes anyway.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from typing import Literal

from vdgraph.events import Event, Preview
from vdgraph.outputs import OutputFolder, safe_field

PREVIEW_SOURCES = ("latent", "vae")


@dataclasses.dataclass(frozen=True)
class PreviewSettings:
    """What previews a run wants.

    `every`: a preview every N steps (and always after the last one); `source`: `latent` for the cheap latent-to-RGB
    map fitted for the model (nothing is sent for a model that ships none), `vae` for a real decode with the
    model's VAE (slower); `frames`: at most this many frames of a video, evenly spaced, side by side;
    `size`: each frame is scaled (nearest) to at least this many pixels on its short side.
    """

    every: int = 1
    source: Literal["latent", "vae"] = "latent"
    frames: int = 4
    size: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.every, int) or isinstance(self.every, bool) or self.every < 1:
            raise ValueError(f"previews every N steps: N must be an int >= 1, got {self.every!r}")
        if self.source not in PREVIEW_SOURCES:
            raise ValueError(f"preview source must be one of {', '.join(PREVIEW_SOURCES)}, got {self.source!r}")
        if not isinstance(self.frames, int) or isinstance(self.frames, bool) or not 1 <= self.frames <= 64:
            raise ValueError(f"preview frames must be an int from 1 to 64, got {self.frames!r}")
        if not isinstance(self.size, int) or isinstance(self.size, bool) or not 8 <= self.size <= 1024:
            raise ValueError(f"preview size must be an int from 8 to 1024, got {self.size!r}")

    def wants(self, step: int, total: int) -> bool:
        """Whether step `step` (1-based, of `total`) gets a preview: every N-th, and the last."""
        return step >= 1 and (step % self.every == 0 or step == total)


def preview_png(event: Preview) -> bytes:
    """The PNG file carried by a preview event."""
    return base64.b64decode(event.image)


class PreviewWriter:
    """A listener that writes every preview event into a folder as `<node>_<step>.png` (CLI `--previews DIR`).

    Files go through an OutputFolder, so the usual rules hold: a taken name gets a counter unless `overwrite`,
    nothing is written outside the folder, each file is written atomically.
    """

    def __init__(self, folder: str | os.PathLike, overwrite: bool = False) -> None:
        self.outputs = OutputFolder(folder, overwrite=overwrite, option="--previews DIR")
        self.written: list[str] = []

    def __call__(self, event: Event) -> None:
        if not isinstance(event, Preview):
            return
        from vdgraph.io import atomic_write

        name = f"{safe_field(event.node or 'preview')}_{event.step:04d}.png"
        with self.outputs.claim(name, port="previews") as target, atomic_write(target, "wb") as handle:
            handle.write(preview_png(event))
        self.written.append(target)
