"""The documentation stays in step with the code it describes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_workflow_input_tables_in_docs_match_the_workflow_files():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "workflow_docs.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_readme_opens_with_the_two_commands_that_ci_runs():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    assert first_block.splitlines()[0].startswith("make demo")
    assert first_block.splitlines()[1].startswith("make test")
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_node_sections_in_docs_match_the_node_declarations():
    """Every video node has a section whose description and port table are its declaration's (tools/node_docs.py
    writes them); a port, default or choice added in code and not in the docs fails here."""
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "node_docs.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_event_kind_is_documented_with_its_fields():
    import dataclasses
    import re

    from vdgraph import events

    text = (ROOT / "docs" / "engine.md").read_text()
    common = {f.name for f in dataclasses.fields(events.Event)}
    kinds = [cls for cls in vars(events).values()
             if isinstance(cls, type) and issubclass(cls, events.Event) and cls is not events.Event]
    assert len(kinds) >= 8
    for cls in kinds:
        kind = cls.__dataclass_fields__["kind"].default
        row = re.search(rf"^\| `{kind}` \| `{cls.__name__}` \|(?P<fields>.*)$", text, re.M)
        assert row, f"docs/engine.md's event table has no row for {kind} ({cls.__name__})"
        for field in dataclasses.fields(cls):
            if field.name not in common:
                assert f"`{field.name}`" in row["fields"], f"event {kind}: field {field.name} is not documented"


def test_cli_synopsis_lists_every_run_option():
    from vdgraph.cli import build_parser

    synopsis = (ROOT / "docs" / "engine.md").read_text().split("## The command line", 1)[1].split("```")[1]
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    common = {"--nodes", "--local-nodes", "--allow-override", "--help"}  # documented below the synopsis
    for action in run._actions:
        longest = max(action.option_strings, key=len, default=None)
        if longest and longest not in common:
            assert longest in synopsis, f"`vdgraph run {longest}` is missing from docs/engine.md's synopsis"
