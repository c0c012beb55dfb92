"""Text: filling a template with linked values (string.Template, never eval or str.format attribute access)."""

from __future__ import annotations

import string
from typing import Any

from vdgraph.context import RunContext
from vdgraph.node import Input, Node, Output
from vdgraph.types import ANY

SLOTS = ("a", "b", "c", "d")


class Format(Node):
    """Fills $a, $b, $c and $d (or ${a} ...) in a template with the linked values; $$ is a literal $.

    Literal text belongs in the template itself; the slots take values from other nodes or workflow inputs.
    """

    id = "core.format"
    category = "text"
    inputs = [
        Input("template", str, doc="text with $a ... $d placeholders, e.g. 'clip_${a}_seed$b.mp4'"),
        *(Input(slot, ANY, optional=True, doc=f"the value for ${slot} (any type; written with str())")
          for slot in SLOTS),
    ]
    outputs = [Output("text", str, doc="the filled template")]

    def run(self, ctx: RunContext, template: str, **slots: Any) -> str:
        values = {name: str(value) for name, value in slots.items() if value is not None}
        try:
            return string.Template(template).substitute(values)
        except KeyError as exc:
            raise KeyError(f"the template uses ${exc.args[0]}, which is not linked") from None
        except ValueError as exc:
            raise ValueError(f"bad placeholder in template {template!r}: {exc}") from None
