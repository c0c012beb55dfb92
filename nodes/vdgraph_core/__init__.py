"""The core node pack: generic nodes for numbers, text and files (no tensors, no models).

Registered like any third-party pack: the `core` entry point in the `vdgraph.packs` group names this module,
and the engine reads `NODES`.
"""

from vdgraph_core.arithmetic import FloatMath, FloatToInt, IntMath
from vdgraph_core.files import SaveJson
from vdgraph_core.randomness import RandomSeed
from vdgraph_core.text import Format

NODES = [FloatMath, IntMath, FloatToInt, Format, SaveJson, RandomSeed]
