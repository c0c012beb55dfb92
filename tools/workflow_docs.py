"""Keep the workflow input tables of docs/video.md in step with the JSON files.

    python tools/workflow_docs.py          # rewrite the tables in place
    python tools/workflow_docs.py --check  # exit 1 if they are stale (the tests run this)

Each table sits under a heading "#### `workflows/<name>.json`" and ends with its "Outputs: ..." line.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "video.md"
SECTION = re.compile(r"(#### `workflows/(?P<name>[\w.-]+)\.json`\n\n)(?P<body>.*?\nOutputs: [^\n]*\n)", re.S)


def table(name: str) -> str:
    workflow = json.loads((ROOT / "workflows" / f"{name}.json").read_text())
    rows = ["| input | type | default | what |", "|---|---|---|---|"]
    for key, spec in workflow["inputs"].items():
        kind = spec["type"] + (" (" + " / ".join(map(str, spec["choices"])) + ")" if "choices" in spec else "")
        default = json.dumps(spec["default"]) if "default" in spec else "required"
        rows.append(f"| `{key}` | {kind} | {default} | {spec.get('description', '')} |")
    outputs = ", ".join(f"`{k}` ({v})" for k, v in workflow["outputs"].items())
    return "\n".join(rows) + f"\n\nOutputs: {outputs}\n"


def render(text: str) -> str:
    return SECTION.sub(lambda m: m.group(1) + table(m.group("name")), text)


def main(argv: list[str]) -> int:
    text = DOC.read_text()
    fresh = render(text)
    if "--check" in argv:
        if fresh != text:
            print(f"{DOC} is stale: run python tools/workflow_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(fresh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
