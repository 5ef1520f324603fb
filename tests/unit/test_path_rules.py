"""The config file's glob semantics (app/core/path_rules.py): a table, the refusals, and a differential
test against an independent segment-by-segment oracle (tests/support/globs.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.path_rules import check_pattern, compile_rules, digest, same_selection, select
from app.events.config import EVERYTHING, NOTHING, PathRules
from tests.support import globs

MATCHES = [
    # pattern, path, matches
    ("*.md", "README.md", True),
    ("*.md", "docs/guide.md", False),  # anchored at the root: * never crosses a /
    ("**/*.md", "README.md", True),  # ** before something is zero or more segments
    ("**/*.md", "docs/a/b/guide.md", True),
    ("docs/**", "docs/guide.md", True),
    ("docs/**", "docs/a/b/c.txt", True),
    ("docs/**", "docs", False),  # a trailing ** is what is under the directory
    ("docs/**", "documents/x.md", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/x/y/bb", False),
    ("**", "anything/at/all", True),
    ("*", ".hookstream.yml", True),  # a leading dot is matched like any character
    ("?.md", "a.md", True),
    ("?.md", "ab.md", False),
    ("[ab].md", "b.md", True),
    ("[!ab].md", "c.md", True),
    ("[!ab].md", "a.md", False),
    ("[a-c]x", "bx", True),
    ("src/[", "src/[", True),  # never closed: a literal bracket
    ("a+b(c).md", "a+b(c).md", True),  # regular-expression characters are literal
    ("Docs/**", "docs/a.md", False),  # case-sensitive
    ("src/*/main.py", "src/app/main.py", True),
    ("src/*/main.py", "src/app/sub/main.py", False),
]


@pytest.mark.parametrize("pattern, path, expected", MATCHES)
def test_a_glob_matches_what_the_documented_semantics_say(pattern, path, expected):
    assert compile_rules(PathRules(include=(pattern,)))(path) is expected
    assert globs.matches(pattern, path) is expected  # the oracle agrees on the table too


@pytest.mark.parametrize(
    "pattern, says",
    [
        ("", "empty"),
        ("/docs/**", "relative to the repository root"),
        ("docs/", "write 'docs/**'"),
        ("docs//a", "empty segment"),
        ("docs/**.md", "'**' must be a whole segment"),
        ("a**", "'**' must be a whole segment"),
        ("[z-a]", "not a valid glob"),
        ("tab\there", "control character"),
    ],
)
def test_a_bad_pattern_is_refused_with_what_to_write(pattern, says):
    with pytest.raises(ValueError, match=None) as raised:
        check_pattern(pattern)
    assert says in str(raised.value)
    with pytest.raises(ValueError):
        compile_rules(PathRules(include=(pattern,)) if pattern else PathRules(exclude=("x", pattern)))


def test_include_then_exclude_decide_what_is_written():
    rules = PathRules(include=("docs/**", "*.md"), exclude=("docs/private/**", "**/draft-*"))
    paths = ["README.md", "docs/a.md", "docs/private/key.md", "docs/x/draft-1.md", "src/a.py", "draft-2.md"]
    assert select(rules, paths, lambda p: p) == ["README.md", "docs/a.md"]
    assert select(EVERYTHING, paths, lambda p: p) == paths
    assert select(NOTHING, paths, lambda p: p) == []


def test_the_digest_ignores_order_and_repetition_but_not_what_is_selected():
    a = PathRules(include=("b/**", "a/**"), exclude=("x",))
    assert digest(a) == digest(PathRules(include=("a/**", "b/**", "a/**"), exclude=("x",)))
    assert digest(a) != digest(PathRules(include=("a/**", "b/**")))
    assert digest(a) != digest(PathRules(include=("x",), exclude=("a/**", "b/**")))  # include is not exclude
    assert same_selection(a, a) and not same_selection(a, None) and not same_selection(None, None)


# -- differential: the app's regexes against the oracle's segment recursion -----------------

SEGMENTS = st.sampled_from(["a", "b", "docs", "src", "x.md", "y.py", ".hidden", "a.b.c", "[x]", "é"])
PATHS = st.lists(SEGMENTS, min_size=1, max_size=5).map("/".join)
PATTERN_SEGMENTS = st.sampled_from(
    [
        "*",
        "**",
        "?",
        "a",
        "docs",
        "*.md",
        "*.py",
        "?.md",
        "[ab]",
        "[!a]*",
        "[a-c]*",
        ".*",
        "x.*",
        "src",
        "*.*",
        "[",
        "é",
        "[[]x]",
    ]
)
PATTERNS = st.lists(PATTERN_SEGMENTS, min_size=1, max_size=4).map("/".join)


@settings(max_examples=600, deadline=None)
@given(pattern=PATTERNS, path=PATHS)
def test_the_app_matches_a_path_exactly_when_the_oracle_does(pattern, path):
    assert compile_rules(PathRules(include=(pattern,)))(path) is globs.matches(pattern, path), (pattern, path)


@settings(max_examples=300, deadline=None)
@given(
    include=st.lists(PATTERNS, max_size=3), exclude=st.lists(PATTERNS, max_size=3), paths=st.lists(PATHS, max_size=8)
)
def test_rules_select_exactly_the_paths_the_oracle_writes(include, exclude, paths):
    rules = PathRules(include=tuple(include), exclude=tuple(exclude))
    assert select(rules, paths, lambda p: p) == [p for p in paths if globs.written(p, include, exclude)]


@settings(max_examples=300, deadline=None)
@given(pattern=st.text(st.sampled_from("ab*?[]!-/.\\^$()"), max_size=12))
def test_any_pattern_is_refused_with_a_value_error_or_compiled(pattern):
    try:
        check_pattern(pattern)
    except ValueError:
        return
    compile_rules(PathRules(include=(pattern,)))("a/b")  # compiles and runs
