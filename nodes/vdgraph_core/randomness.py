"""Randomness: a fresh seed per run (the one non-deterministic core node)."""

from __future__ import annotations

import secrets

from vdgraph.context import RunContext
from vdgraph.node import Input, Node, Output


class RandomSeed(Node):
    """Draws a new random seed on every run (never cached), for exploring variations."""

    id = "core.random_seed"
    category = "math"
    deterministic = False
    inputs = [Input("high", int, default=2**31 - 1, ge=1, le=2**64, doc="seeds are drawn from [0, high)")]
    outputs = [Output("seed", int, doc="the drawn seed")]

    def run(self, ctx: RunContext, high: int) -> int:
        return secrets.randbelow(high)
