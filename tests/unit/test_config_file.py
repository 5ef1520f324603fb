"""A repository's config file, bytes in (app/core/config_file.py): what is valid, what is refused and
with which message, and that no file, however hostile, makes the parser raise."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.config_file import MAX_CONFIG_BYTES, MAX_DEPTH, config_files, is_newer_config, parse
from app.events.config import EVERYTHING, NOTHING, ConfigFound, PathRules

PATH = ".hookstream.yml"
BEFORE = PathRules(include=("docs/**",))


def configured(include=(), exclude=()) -> ConfigFound:
    return ConfigFound(status="configured", path=PATH, rules=PathRules(include=tuple(include), exclude=tuple(exclude)))


@pytest.mark.parametrize(
    "text, expected",
    [
        (b"", configured()),  # empty: every path
        (b"# only a comment\n", configured()),
        (b"include: ['*.md', 'docs/**']\n", configured(include=["*.md", "docs/**"])),
        (
            b"version: 1\ninclude:\n  - '**/*.md'\nexclude:\n  - docs/private/**\n",
            configured(include=["**/*.md"], exclude=["docs/private/**"]),
        ),
        (b"exclude: [vendor/**]\n", configured(exclude=["vendor/**"])),
        (b'{"include": ["a/**"]}', configured(include=["a/**"])),  # JSON is YAML
        (b"\xef\xbb\xbfinclude: [a]\n", configured(include=["a"])),  # a UTF-8 byte order mark
    ],
)
def test_a_valid_config_file_is_configured_with_its_rules(text, expected):
    assert parse(PATH, text, BEFORE) == expected


@pytest.mark.parametrize(
    "text, says",
    [
        (b"include: [a\n", "line 2, column 1"),
        (b"include: ['a']\nexclude: *.md\n", "must be quoted: '*.md'"),
        (b"include: [docs/]\n", "include[0]: pattern 'docs/' ends with '/': write 'docs/**'"),
        (b"include: docs/**\n", "include: Input should be a valid list"),
        (b"include: [1]\n", "include[0]: Input should be a valid string"),
        (b"include: [on]\n", "include[0]: Input should be a valid string"),  # YAML 1.1's booleans
        (b"exlude: [a]\n", "exlude: unknown key (the keys are version, include, exclude)"),
        (b"version: 2\n", "version: Input should be 1"),
        (b"- a\n- b\n", "must be a mapping of keys (include, exclude), not a list"),
        (b"just text\n", "not a string"),
        (b"exclude: [a]\nexclude: [b]\n", "line 2, column 1: the key 'exclude' is given twice"),
        (b"a: &x [1]\nb: *x\n", "anchors (&name) are not allowed"),
        (b"include: !!python/object:os.system [x]\n", "could not determine a constructor"),
        (b"include: !custom [x]\n", "could not determine a constructor"),
        (b"include: [" + b"[" * 50 + b"]" * 50 + b"]\n", f"nested deeper than {MAX_DEPTH} levels"),
        (b"include: ['\xff']\n", "not UTF-8 text (byte 11)"),
        (b"include: [\x07]\n", "character 11 is not allowed in YAML (special characters are not allowed)"),
        (b"when: 2024-13-45\n", "not a readable YAML value (ValueError"),
        (b"include: ['" + b"a" * 300 + b"']\n", "at most 256 characters"),
        (b"include: [" + b"a," * 101 + b"]\n", "at most 100 items"),
    ],
)
def test_an_invalid_config_file_says_why_and_keeps_the_rules_in_effect(text, says):
    found = parse(PATH, text, BEFORE)
    assert (found.status, found.path, found.rules) == ("invalid", PATH, BEFORE)
    assert found.error.startswith(f"{PATH}: ") and says in found.error, found.error


def test_an_invalid_config_file_writes_nothing_when_no_valid_config_was_ever_applied():
    found = parse(PATH, b"include: [\n", None)
    assert (found.status, found.rules) == ("invalid", NOTHING)


def test_a_file_larger_than_the_bound_is_refused_unread():
    found = parse(PATH, b"#" * (MAX_CONFIG_BYTES + 1), EVERYTHING)
    assert found.status == "invalid" and f"more than the {MAX_CONFIG_BYTES}" in found.error


def test_an_exponential_alias_bomb_is_refused_at_once():
    # The classic "billion laughs": nine lists of nine references, nine levels deep.
    bomb = b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        bomb += f"{name}: &{name} [{','.join(['*' + prev] * 9)}]\n".encode()
    started = time.monotonic()
    found = parse(PATH, bomb, EVERYTHING)
    assert found.status == "invalid" and "anchors (&name) are not allowed" in found.error
    assert time.monotonic() - started < 1.0


def test_deep_nesting_is_refused_before_it_is_built():
    deep = b"include: " + b"[" * 30000 + b"]" * 30000 + b"\n"  # 60 KB: under the size bound
    assert len(deep) < MAX_CONFIG_BYTES
    found = parse(PATH, deep, EVERYTHING)
    assert found.status == "invalid" and "nested deeper" in found.error


@settings(max_examples=400, deadline=None)
@given(raw=st.binary(max_size=300))
def test_no_bytes_make_the_parser_raise(raw):
    found = parse(PATH, raw, BEFORE)
    assert found.status in ("configured", "invalid")
    assert found.status == "configured" or found.rules == BEFORE


YAMLISH = st.text(
    st.sampled_from(list("include:exclude- []{}'\"*&!|>#%@`,?\n\t\\.x1") + ["\u00e9", "\x00", "\ufeff"]), max_size=120
)


@settings(max_examples=600, deadline=None)
@given(text=YAMLISH)
def test_no_yaml_like_text_makes_the_parser_raise(text):
    found = parse(PATH, text.encode("utf-8"), None)
    assert found.status in ("configured", "invalid")
    assert found.status == "configured" or (found.rules == NOTHING and found.error)


@pytest.mark.parametrize(
    "config, expected",
    [
        ({}, (".hookstream.yml", ".hookstream.yaml")),
        ({"config_files": ["docs/hookstream.yml"]}, ("docs/hookstream.yml",)),
    ],
)
def test_the_config_file_names_come_from_the_source_config(config, expected):
    assert config_files(config) == expected


@pytest.mark.parametrize(
    "names", [[], "x.yml", [1], ["/abs.yml"], ["../up.yml"], ["a//b"], ["./a"], ["a\nb"], ["x"] * 9]
)
def test_config_file_names_that_are_not_relative_paths_are_refused(names):
    with pytest.raises(ValueError):
        config_files({"config_files": names})


def test_a_later_jobs_finding_replaces_an_earlier_ones_never_the_reverse():
    assert is_newer_config(None, "github:1:5")
    assert is_newer_config("github:1:5", "github:1:9")
    assert is_newer_config("github:1:9", "github:1:9")  # the same plan again
    assert not is_newer_config("github:1:9", "github:1:5")
    assert is_newer_config("github:1:9", "github:1:local-3")  # a fold run without offsets
