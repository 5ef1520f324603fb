"""HOOKSTREAM_GIT_ROOTS: a git source's path must resolve to a place under one of the roots."""

from __future__ import annotations

import os

import pytest

from app.settings import Settings
from app.sources import SourceError, SourceOptions, get_adapter
from app.sources.roots import PathOutsideRoots, check_git_path


@pytest.fixture
def roots(tmp_path):
    allowed = tmp_path / "repos"
    (allowed / "app").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (allowed / "escape").symlink_to(tmp_path / "elsewhere")  # inside by name, outside in fact
    (allowed / "app-link").symlink_to(allowed / "app")
    return tmp_path, allowed


def test_a_path_under_a_root_is_allowed_and_resolved(roots):
    tmp, allowed = roots
    assert check_git_path(str(allowed / "app"), [str(allowed)]) == str(allowed / "app")
    assert check_git_path(str(allowed / "app-link"), [str(allowed)]) == str(allowed / "app")
    assert check_git_path(str(allowed), [str(allowed)]) == str(allowed)
    assert check_git_path(str(tmp / "elsewhere"), [str(allowed), str(tmp / "elsewhere")]) == str(tmp / "elsewhere")


@pytest.mark.parametrize(
    "relative",
    ["elsewhere", "repos/escape", "repos/../elsewhere", "repos-sibling", "/etc"],
)
def test_a_path_outside_every_root_is_refused_naming_the_roots(roots, relative):
    tmp, allowed = roots
    path = relative if relative.startswith("/") else str(tmp / relative)
    with pytest.raises(PathOutsideRoots, match="HOOKSTREAM_GIT_ROOTS allows only paths under " + str(allowed)):
        check_git_path(path, [str(allowed)])


def test_a_relative_or_unresolvable_path_is_refused_when_roots_are_set(roots):
    _, allowed = roots
    with pytest.raises(PathOutsideRoots, match="not absolute"):
        check_git_path("repos/app", [str(allowed)])
    with pytest.raises(PathOutsideRoots):
        check_git_path(str(allowed / "a\x00b"), [str(allowed)])


def test_without_roots_any_path_is_allowed_unchanged():
    assert check_git_path("/anything/../at/all", []) == "/anything/../at/all"


def test_the_git_adapter_refuses_a_path_outside_the_roots_where_it_reads(roots):
    tmp, allowed = roots
    options = SourceOptions(git_roots=(str(allowed),))
    with pytest.raises(SourceError, match="outside the allowed roots"):
        get_adapter("git", {"path": str(allowed / "escape")}, options)
    assert get_adapter("git", {"path": str(allowed / "app-link")}, options).path == str(allowed / "app")


def test_settings_read_roots_separated_like_path_and_refuse_relative_ones(roots):
    _, allowed = roots
    assert Settings(git_roots=f"{allowed}{os.pathsep}/srv/git").git_root_paths() == (str(allowed), "/srv/git")
    assert Settings().git_root_paths() == ()
    with pytest.raises(ValueError, match="not an absolute path"):
        Settings(git_roots="repos")
