"""Line and column of keys in JSON text, so a problem can point at the exact place in the workflow file.

Built lazily on the first lookup: a valid workflow never pays for it.
"""

from __future__ import annotations

import json
import re

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]')


class SourceMap:
    """Maps a key path such as ('nodes', 'decode', 'params', 'steps') to the (line, column) of that key."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._index: dict[tuple[str, ...], int] | None = None
        self._line_starts: list[int] | None = None

    def locate(self, path: tuple[str, ...]) -> tuple[int | None, int | None]:
        """The 1-based (line, column) of the deepest key of `path` that exists in the text."""
        if self._index is None:
            self._index = _key_offsets(self._text)
        for end in range(len(path), 0, -1):
            offset = self._index.get(tuple(path[:end]))
            if offset is not None:
                return self._line_column(offset)
        return None, None

    def _line_column(self, offset: int) -> tuple[int, int]:
        if self._line_starts is None:
            self._line_starts = [0] + [m.end() for m in re.finditer(r"\n", self._text)]
        lo, hi = 0, len(self._line_starts) - 1
        while lo < hi:  # the last line start at or before offset
            mid = (lo + hi + 1) // 2
            if self._line_starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1, offset - self._line_starts[lo] + 1


def _key_offsets(text: str) -> dict[tuple[str, ...], int]:
    """Offsets of every object key by its path (array items are addressed by their index as a string)."""
    offsets: dict[tuple[str, ...], int] = {}
    stack: list[list] = []  # per open container: [kind, path, current key or index, expecting_key]
    pending: tuple[str, int] | None = None  # a string token that may turn out to be a key
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token == ":" and pending is not None and stack and stack[-1][0] == "{":
            key, offset = pending
            frame = stack[-1]
            frame[2] = key
            offsets.setdefault((*frame[1], key), offset)
        elif token in "{[":
            path = _value_path(stack)
            stack.append([token, path, None if token == "{" else 0])
        elif token in "}]":
            if stack:
                stack.pop()
        elif token == "," and stack and stack[-1][0] == "[":
            stack[-1][2] += 1
        pending = None
        if token.startswith('"'):
            try:
                pending = (json.loads(token), match.start())
            except json.JSONDecodeError:
                pending = None
    return offsets


def _value_path(stack: list[list]) -> tuple[str, ...]:
    """The path of the value that starts now, inside the innermost open container."""
    if not stack:
        return ()
    kind, path, current = stack[-1]
    return (*path, str(current)) if current is not None else path
