"""What a node's run method receives besides its inputs: where it runs, and how it reports progress."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from vdgraph.errors import Cancelled
from vdgraph.events import Event, Preview, Progress
from vdgraph.outputs import OutputFolder

if TYPE_CHECKING:  # torch is imported by whoever builds a context; `import vdgraph` stays fast without it
    import torch

    from vdgraph.previews import PreviewSettings


class CancelToken:
    """Cancels one run from another thread (or a signal handler). Each executor run gets its own token."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclasses.dataclass
class RunContext:
    """Per-node runtime facts. `device` and `dtype` are part of every cache key (they change results).

    `outputs` is where a node that writes files gets its targets (`ctx.outputs.claim(name, port=...)`, see
    vdgraph.outputs); without one, a context writes into an `OutputFolder(output_dir)` of its own.
    `workflow_document` (the workflow as JSON data), `workflow_inputs` (every workflow input's value in this run)
    and `workflow_source` (the file it was read from) are what a writer records as the file's recipe
    (`vdgraph.recipe.recipe_of(ctx)`), with `linked_values` (the JSON values ports received over links so far in
    the run, "node.port" -> value) and `drawn` (those of them fed by nodes that give another value on every run,
    such as core.random_seed; a value JSON cannot hold is None there).
    """

    node_id: str
    node_type: str
    device: torch.device
    dtype: torch.dtype
    output_dir: str = "out"
    workflow_dir: str | None = None
    emit: Callable[[Event], None] = lambda event: None
    cancel_token: CancelToken = dataclasses.field(default_factory=CancelToken)
    outputs: OutputFolder | None = None
    workflow_document: Mapping[str, Any] | None = None
    workflow_inputs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    workflow_source: str | None = None
    linked_values: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    drawn: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    previews: PreviewSettings | None = None
    """What previews the run wants (None: none); see vdgraph.previews."""

    def __post_init__(self) -> None:
        if self.outputs is None:
            self.outputs = OutputFolder(self.output_dir, node=self.node_id)
        else:
            self.output_dir = self.outputs.root

    def search_dirs(self) -> tuple[str, ...]:
        """Local folders a relative input path is also looked up in, after the working directory: the workflow's
        folder (when the workflow came from a local file)."""
        from vdgraph.filekeys import search_dirs

        return search_dirs(self.workflow_dir)

    def input_path(self, path: str) -> str:
        """The one rule for a relative path a node reads (a video, an image, a model folder, a mask): absolute
        paths and URLs as given; a relative path that exists in the working directory is taken from there, else it
        is relative to the workflow's folder (so a workflow can name files beside it). Output paths follow the
        output folder's rules instead (vdgraph.outputs)."""
        from vdgraph.filekeys import local_input_path

        return local_input_path(path, self.search_dirs())

    def check_cancelled(self) -> None:
        if self.cancel_token.cancelled:
            raise Cancelled(f"cancelled inside node {self.node_id!r}")

    def progress(self, step: int, total: int, message: str = "") -> None:
        """Report `step` of `total` done; also the point where a long node honours cancellation."""
        self.check_cancelled()
        self.emit(Progress(node=self.node_id, node_type=self.node_type, step=step, total=total, message=message))

    def wants_preview(self, step: int, total: int) -> bool:
        """Whether the run wants a preview after step `step` of `total` (a node asks before making one)."""
        return self.previews is not None and self.previews.wants(step, total)

    def preview(self, step: int, total: int, png: bytes, width: int, height: int, frames: int = 1,
                source: str = "") -> None:
        """Send a preview picture (a PNG file's bytes) of what this node is making after `step` of `total`."""
        import base64

        self.emit(Preview(node=self.node_id, node_type=self.node_type, step=step, total=total,
                          image=base64.b64encode(png).decode("ascii"), width=width, height=height, frames=frames,
                          source=source))
