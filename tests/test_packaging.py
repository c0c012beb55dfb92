"""What a wheel of the project carries: every data file a package needs must match its package-data patterns, or a
non-editable install (`pip install .`, a wheel) lacks it; the built-in motion adapter once did."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOT_DATA = {".py", ".pyc", ".md"}


def package_dirs() -> dict[str, Path]:
    found = {}
    for root in (REPO, REPO / "nodes"):
        for init in root.glob("vdgraph*/__init__.py"):
            found[init.parent.name] = init.parent
    return found


def test_every_data_file_of_a_package_is_in_its_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for name, folder in package_dirs().items():
        covered = {path for pattern in config.get(name, []) for path in folder.glob(pattern)}
        data = {path for path in folder.rglob("*") if path.is_file() and path.suffix not in NOT_DATA
                and "__pycache__" not in path.parts}
        missing = sorted(str(path.relative_to(folder)) for path in data - covered)
        assert not missing, f"{name}: not in [tool.setuptools.package-data] {name} of pyproject.toml: {missing}"
    assert package_dirs().keys() >= {"vdgraph", "vdgraph_core", "vdgraph_video", "vdgraph_shapes"}
