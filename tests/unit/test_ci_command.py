"""`.ci/run` runs exactly the README's second command; that command installs the lint tools at
the locked versions and runs lint, the format check and mypy before the tests, with the very
commands `make lint`, `make types` and the pre-commit hooks run."""

from __future__ import annotations

import re

import yaml

from app.settings import REPO_ROOT

CHECKS = [".venv/bin/ruff check .", ".venv/bin/ruff format --check .", ".venv/bin/mypy"]


def _readme_commands() -> list[str]:
    section = (REPO_ROOT / "README.md").read_text().split("## The two commands", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    assert block, "the README's two commands are in a sh block under '## The two commands'"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _steps(command: str) -> list[str]:
    return [step.strip() for step in command.split("&&")]


def _recipe(target: str) -> list[str]:
    """The commands of a Makefile target, with the venv's bin directory spelled out."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^BIN \?= \.venv/bin$", makefile, flags=re.M)
    found = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, flags=re.M)
    assert found, f"no target {target}"
    commands = []
    for line in found.group(1).replace("$(BIN)", ".venv/bin").splitlines():
        for part in line.strip().lstrip("@").split(";"):
            command = part.split("||")[0].strip()
            if command.startswith(".venv/bin/"):
                commands.append(command)
    return commands


def test_ci_runs_exactly_the_readmes_second_command():
    commands = _readme_commands()
    assert len(commands) == 2
    ci = [line for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3 ")]
    assert ci == [commands[1]]


def test_the_second_command_installs_the_locked_lint_tools_and_checks_before_the_tests():
    steps = _steps(_readme_commands()[1])
    assert steps[0] == "python3 -m venv .venv"
    assert steps[1] == ".venv/bin/pip install -q -c constraints.txt -e '.[embedded,test,lint]'"
    assert steps[2:5] == CHECKS
    assert steps[5:] == [".venv/bin/python -m pytest -q -n 2 --dist loadfile"]


def test_make_lint_and_types_run_the_same_commands():
    assert _recipe("lint") + _recipe("types") == CHECKS


def test_the_pre_commit_hooks_run_the_same_commands_over_the_whole_tree():
    config = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text())
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert [hook["entry"] for hook in hooks] == CHECKS
    assert all(hook["pass_filenames"] is False for hook in hooks)
