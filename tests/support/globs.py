"""An oracle for the config file's glob semantics, written apart from `app.core.path_rules`.

The app translates a whole pattern into one regular expression; this matches
segment by segment, with `fnmatch.fnmatchcase` for each segment and recursion for
`**`, as docs/architecture.md describes the semantics. Tests compare the two, so
neither checks itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase


def _match(pattern: Sequence[str], path: Sequence[str]) -> bool:
    if not pattern:
        return not path
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        if not rest:
            return len(path) >= 1  # a trailing ** is one or more segments: what is under a directory
        return any(_match(rest, path[i:]) for i in range(len(path) + 1))
    return bool(path) and fnmatchcase(path[0], head) and _match(rest, path[1:])


def matches(pattern: str, path: str) -> bool:
    return _match(pattern.split("/"), path.split("/"))


def written(path: str, include: Iterable[str], exclude: Iterable[str]) -> bool:
    include = list(include)
    if include and not any(matches(p, path) for p in include):
        return False
    return not any(matches(p, path) for p in exclude)
