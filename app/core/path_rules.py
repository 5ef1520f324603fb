"""Which paths a sync writes: the include/exclude globs of a source's config file. Pure.

Glob semantics (docs/architecture.md, "The config file"). A pattern is matched
against the whole path relative to the repository root, segment by segment
(`/` separates segments; matching is case-sensitive):

- `*` matches any run of characters within one segment, `?` exactly one; both
  match a leading dot too (`*` matches `.hookstream.yml`);
- `[abc]`, `[a-z]`, `[!abc]` match one character of (or not of) the set within
  a segment; a `[` with no closing `]` in its segment is a literal `[`;
- `**` as a whole segment matches any number of segments: zero or more when
  something follows it (`**/*.md` is every `.md` file, the root's included;
  `a/**/b` includes `a/b`), one or more at the end (`docs/**` is everything
  under `docs/`). `**` inside a segment (`a**b`) is invalid;
- a pattern is never empty and has no empty segment: no leading `/` (paths are
  relative already), no trailing `/` (write `docs/**`), no `//`.

A path is written when it matches an `include` pattern (every path when there is
none) and no `exclude` pattern.

Invariant: `check_pattern` accepts exactly the patterns `compile_rules` compiles;
a pattern that fails either never raises anything but `ValueError`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import TypeVar

import orjson

from app.events.config import PathRules

T = TypeVar("T")


def check_pattern(pattern: str) -> None:
    """Raise ValueError, saying what is wrong and how to write it, unless `pattern` is a valid glob."""
    if not pattern:
        raise ValueError("a pattern is empty")
    if any(ord(c) < 32 for c in pattern):
        raise ValueError(f"pattern {pattern!r} contains a control character")
    if pattern.startswith("/"):
        raise ValueError(
            f"pattern {pattern!r} starts with '/': paths are relative to the repository root "
            f"(write {pattern.lstrip('/')!r})"
        )
    if pattern.endswith("/"):
        raise ValueError(f"pattern {pattern!r} ends with '/': write {pattern + '**'!r} for everything under it")
    for segment in pattern.split("/"):
        if not segment:
            raise ValueError(f"pattern {pattern!r} has an empty segment ('//')")
        if "**" in segment and segment != "**":
            raise ValueError(f"pattern {pattern!r}: '**' must be a whole segment (e.g. 'docs/**/*.md')")
    _regex(pattern)


def _segment(segment: str) -> str:
    """The regular expression of one segment (no `/` in it, never matching `/`)."""
    out, i, n = [], 0, len(segment)
    while i < n:
        c = segment[i]
        i += 1
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i
            if j < n and segment[j] == "!":
                j += 1
            if j < n and segment[j] == "]":  # a `]` right after `[` or `[!` is a member
                j += 1
            while j < n and segment[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape("["))  # never closed: a literal bracket
                continue
            body, i = segment[i:j], j + 1
            negate = body.startswith("!")
            if negate:
                body = body[1:]
            members = "".join(ch if ch == "-" else re.escape(ch) for ch in body)
            out.append(f"[^/{members}]" if negate else f"[{members}]")
        else:
            out.append(re.escape(c))
    return "".join(out)


def _regex(pattern: str) -> re.Pattern[str]:
    segments = pattern.split("/")
    parts = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            parts.append("[^/]+(?:/[^/]+)*" if last else "(?:[^/]+/)*")
        else:
            parts.append(_segment(segment) + ("" if last else "/"))
    try:
        return re.compile("".join(parts), re.DOTALL)
    except re.error as exc:  # e.g. a character range out of order, [z-a]
        raise ValueError(f"pattern {pattern!r} is not a valid glob: {exc}") from None


@lru_cache(maxsize=256)
def compile_rules(rules: PathRules) -> Callable[[str], bool]:
    """A predicate: whether `rules` write `path`. ValueError for a pattern `check_pattern` refuses."""
    for pattern in (*rules.include, *rules.exclude):
        check_pattern(pattern)
    include = [_regex(p) for p in rules.include]
    exclude = [_regex(p) for p in rules.exclude]

    def written(path: str) -> bool:
        if include and not any(r.fullmatch(path) for r in include):
            return False
        return not any(r.fullmatch(path) for r in exclude)

    return written


def select(rules: PathRules, items: Iterable[T], path_of: Callable[[T], str]) -> list[T]:
    """The items whose path `rules` write, in their order."""
    written = compile_rules(rules)
    return [item for item in items if written(path_of(item))]


def digest(rules: PathRules) -> str:
    """What the rules select, as a hash: equal for rules that differ only in order or repetition.

    The config file's comments, formatting and order of patterns do not change it,
    so only a change of what is written makes a sync list everything again.
    """
    canonical = {"include": sorted(set(rules.include)), "exclude": sorted(set(rules.exclude))}
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()


def same_selection(a: PathRules | None, b: PathRules | None) -> bool:
    """Whether two rule sets are known and select the same paths (by `digest`)."""
    return a is not None and b is not None and digest(a) == digest(b)
