"""vdgraph_shapes: the shapes world, a tiny built-in text-to-image model trained on it, and a classic judge.

Importing the package is cheap (no torch): submodules `world`, `judge`, `metrics` need only numpy; `train`,
`evaluate` and `components` need torch / diffusers / transformers.
"""

from vdgraph_shapes.models import BUILTIN_MODELS

__all__ = ["BUILTIN_MODELS"]
