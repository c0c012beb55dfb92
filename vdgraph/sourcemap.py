"""Line and column of keys in JSON text, so a problem can point at the exact place in the workflow file.

Built lazily on the first lookup: a valid workflow never pays for it. One iterative pass over the tokens (no
recursion, so any nesting depth is safe); the loader bounds the depth before building it.
"""

from __future__ import annotations

import dataclasses
import json
import re

_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]:,]')


@dataclasses.dataclass(frozen=True)
class DuplicateKey:
    """A key written twice in one JSON object: JSON readers silently keep only the later value."""

    path: tuple[str, ...]
    """The key's path: ('nodes', 'decode') for a second "decode" inside "nodes"."""
    first: int
    """Offset of the first occurrence (the one that is dropped)."""
    again: int
    """Offset of the repeated occurrence."""


class SourceMap:
    """Maps a key path such as ('nodes', 'decode', 'params', 'steps') to the (line, column) of that key."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._index: dict[tuple[str, ...], int] | None = None
        self._duplicates: list[DuplicateKey] = []
        self._line_starts: list[int] | None = None

    def locate(self, path: tuple[str, ...]) -> tuple[int | None, int | None]:
        """The 1-based (line, column) of the deepest key of `path` that exists in the text."""
        index = self._scan()
        for end in range(len(path), 0, -1):
            offset = index.get(tuple(path[:end]))
            if offset is not None:
                return self.position(offset)
        return None, None

    def duplicates(self) -> list[DuplicateKey]:
        """Every key repeated inside one object, in the order of the text."""
        self._scan()
        return list(self._duplicates)

    def position(self, offset: int) -> tuple[int, int]:
        """The 1-based (line, column) of a character offset."""
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

    def _scan(self) -> dict[tuple[str, ...], int]:
        if self._index is None:
            self._index, self._duplicates = _key_offsets(self._text)
        return self._index


def _key_offsets(text: str) -> tuple[dict[tuple[str, ...], int], list[DuplicateKey]]:
    """Offsets of every object key by its path (array items are addressed by their index as a string), and the
    keys repeated within one object. A repeated key points at its last occurrence: that is the value JSON keeps."""
    offsets: dict[tuple[str, ...], int] = {}
    duplicates: list[DuplicateKey] = []
    stack: list[list] = []  # per open container: [kind, path, current key or index, keys seen in an object]
    pending: tuple[str, int] | None = None  # a string token that may turn out to be a key
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token == ":" and pending is not None and stack and stack[-1][0] == "{":
            key, offset = pending
            frame = stack[-1]
            frame[2] = key
            path = (*frame[1], key)
            seen = frame[3]
            if key in seen:
                duplicates.append(DuplicateKey(path, seen[key], offset))
            seen[key] = offset
            offsets[path] = offset
        elif token in "{[":
            path = _value_path(stack)
            stack.append([token, path, None if token == "{" else 0, {}])
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
    return offsets, duplicates


def _value_path(stack: list[list]) -> tuple[str, ...]:
    """The path of the value that starts now, inside the innermost open container."""
    if not stack:
        return ()
    kind, path, current, _ = stack[-1]
    return (*path, str(current)) if current is not None else path
