"""A fresh-eyes attack on the day's changes (file contents in cache keys, recipes and `run --from`, the server's
confinement with a token): each test is an attack that broke a promise, kept so that it stays fixed.

Confinement: a list port (video.apply_lora's `lora`) fed by a gathered list of node links escaped both the
server.file-link refusal and the root checks, so a job could read any file the server can. File keys: a folder
holding a FIFO (or a device) hung the key forever, a folder linked into itself walked without end, and a file
rewritten with its size and modification time kept served its old hash. Recipes: a hand-edited recipe that is not
UTF-8 or nests too deep ended `run --from` and `inspect` in a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from vdgraph.cli import main
from vdgraph.filekeys import content_of, file_digest
from vdgraph.registry import Registry
from vdgraph.server.app import confinement_problems
from vdgraph.validate import check
from vdgraph.workflow import load_workflow


def test_a_gathered_list_of_links_into_a_file_port_is_refused_by_a_server_with_a_token(tmp_path):
    graph = {"vdgraph": 1, "nodes": {
        "model": {"type": "video.load_model", "params": {"model": "shapes-64"}},
        "name": {"type": "core.format", "params": {"template": "/etc/passwd"}},
        "lora": {"type": "video.apply_lora", "in": {"unet": "model.unet", "text_encoder": "model.text_encoder",
                                                    "lora": ["name.text"]}}},
        "outputs": {"unet": "lora.unet"}}
    registry = Registry.discover()
    workflow = load_workflow(graph)
    problems, plan = check(workflow, registry, {}, require_inputs=True)
    assert plan is not None and not [p for p in problems if p.severity == "error"]
    found = confinement_problems(workflow, registry, {}, str(tmp_path / "job"), (str(tmp_path),), (str(tmp_path),))
    assert [(p.code, p.node, p.port) for p in found] == [("server.file-link", "lora", "lora")]
    assert "name.text" in found[0].message
