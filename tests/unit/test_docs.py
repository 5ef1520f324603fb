"""The repository's docs follow the code: every `hookstream` command in a shell block of the README,
CONTRIBUTING.md or docs/*.md parses with the real CLI, every `make` target they name exists, and
nothing points to a file outside the repository."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from app.cli.main import build_parser
from app.settings import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", REPO_ROOT / "CONTRIBUTING.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def _shell_lines():
    for path in DOCS:
        for block in re.findall(r"```sh\n(.*?)```", path.read_text(), flags=re.S):
            for line in block.splitlines():
                line = line.split(" #")[0].strip()
                if line and not line.startswith("#"):
                    yield path.name, line


def _commands(program: str):
    for name, line in _shell_lines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, "&&"]:
            if token not in ("&&", "||", ";", "|"):
                words.append(token)
                continue
            while words and "=" in words[0]:
                words = words[1:]  # VAR=value before the command
            if words and words[0].split("/")[-1] == program:
                yield name, words[1:]
            words = []


def _inline_commands():
    """`hookstream …` in inline code of CONTRIBUTING.md and docs/ (the README's tables name commands
    with alternatives, `topics apply / diff`, rather than give them)."""
    for path in DOCS[1:]:
        for span in re.findall(r"`(hookstream [^`]+)`", path.read_text()):
            for part in span.split("&&"):
                yield path.name, shlex.split(part)[1:]


COMMANDS = list(_commands("hookstream")) + list(_inline_commands())


def test_the_docs_show_commands():
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize("where, argv", COMMANDS, ids=[" ".join(a)[:60] for _, a in COMMANDS])
def test_every_documented_hookstream_command_parses(where, argv):
    build_parser().parse_args(argv)


def test_every_documented_make_target_exists():
    targets = set(re.findall(r"^([a-z-]+):", (REPO_ROOT / "Makefile").read_text(), flags=re.M))
    named = {t for path in DOCS for t in re.findall(r"`make ([a-z-]+)`", path.read_text())}
    named |= {argv[0] for _, argv in _commands("make") if argv}
    assert named and named <= targets, named - targets


def test_nothing_in_the_repository_points_outside_it():
    pattern = r"\.\./shared|DESIGN\.md|BROKER\.md|PERF\.md"
    found = subprocess.run(
        ["git", "grep", "-n", "-E", pattern, "--", ".", ":!tests/unit/test_docs.py"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    ).stdout
    assert found == ""
