"""Keep the node sections of docs/video.md in step with the node declarations.

    python tools/node_docs.py          # rewrite the sections in place
    python tools/node_docs.py --check  # exit 1 if one is stale or a video node has none (the tests run this)

A node's section is a heading "### `video.<id>`" (or "####"), then its description paragraph (the class
docstring), then its port table and, for a node with side effects, one line saying so. All three are generated;
any prose written after them (measurements, notes) is kept as it is. A `video.*` node without a section is an
error: add the heading where it belongs and run this script to fill it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "video.md"
HEADING = re.compile(r"^#{3,4} `(?P<id>video\.[\w.]+)`$")
BOUND_SIGNS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
SIDE_EFFECT = "*Side effect: runs every time (never served from the cache).*"


def video_nodes() -> dict:
    """Node id -> class for every node of the video pack (imported the way `vdgraph nodes` does)."""
    sys.path[:0] = [str(ROOT), str(ROOT / "nodes")]
    import vdgraph_video

    return {cls.id: cls for cls in vdgraph_video.NODES}


def _default(info: dict) -> str:
    if "default" in info and info["default"] is not None:
        return json.dumps(info["default"], ensure_ascii=False)
    return "optional" if info.get("optional") or "default" in info else "required"


def _doc(info: dict) -> str:
    bounds = [f"{BOUND_SIGNS[k]} {info[k]}" for k in BOUND_SIGNS if k in info]
    doc = info["doc"].replace("|", "\\|")
    return f"{doc} ({', '.join(bounds)})" if bounds else doc


def section(cls) -> list[str]:
    """The generated part of a node's section: description, blank, table (and the side-effect line)."""
    rows = ["| port | type | default | what |", "|---|---|---|---|"]
    for port in cls.inputs:
        info = port.describe()
        rows.append(f"| in `{port.name}` | {info['type']} | {_default(info)} | {_doc(info)} |")
    for port in cls.outputs:
        rows.append(f"| out `{port.name}` | {port.type.name} | | {port.doc.replace('|', chr(92) + '|')} |")
    lines = [" ".join(cls.description.split()), "", *rows]
    if cls.side_effects:
        lines += ["", SIDE_EFFECT]
    return lines


def render(text: str, nodes: dict) -> tuple[str, list[str]]:
    """The document with every node section regenerated, and the video nodes that have no section.

    In a node's section (up to the next heading) the first paragraph, every port table and the side-effect line are
    generated; the other paragraphs stay, in their order, after the generated part."""
    lines = text.split("\n")
    out: list[str] = []
    seen: set[str] = set()
    i = 0
    while i < len(lines):
        out.append(lines[i])
        match = HEADING.match(lines[i])
        i += 1
        if not match or match["id"] not in nodes:
            continue
        seen.add(match["id"])
        end = i
        while end < len(lines) and not lines[end].startswith("#"):
            end += 1
        blocks = _blocks(lines[i:end])
        if blocks and not blocks[0][0].startswith(("|", "*")):
            blocks = blocks[1:]  # the old description
        kept = [b for b in blocks if b[0] != "| port | type | default | what |" and b != [SIDE_EFFECT]]
        out += ["", *section(nodes[match["id"]])]
        for block in kept:
            out += ["", *block]
        out.append("")
        i = end
    return "\n".join(out), sorted(set(nodes) - seen)


def _blocks(lines: list[str]) -> list[list[str]]:
    """Paragraphs (runs of non-blank lines); a fenced code block stays whole even with blank lines inside."""
    blocks: list[list[str]] = []
    current: list[str] = []
    fenced = False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        if line.strip() or fenced:
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def main(argv: list[str]) -> int:
    text = DOC.read_text()
    fresh, missing = render(text, video_nodes())
    if missing:
        print(f"{DOC}: no section for {', '.join(missing)}: add a heading \"### `<id>`\" and run "
              "python tools/node_docs.py", file=sys.stderr)
    if "--check" in argv:
        if fresh != text:
            print(f"{DOC}: node sections are stale: run python tools/node_docs.py", file=sys.stderr)
            return 1
        return 1 if missing else 0
    DOC.write_text(fresh)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
