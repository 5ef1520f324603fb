"""HOOKSTREAM_GIT_ROOTS where a git source is connected: `POST /events` and `hookstream sources connect`.

(Where it is read, the git adapter, is in tests/unit/test_git_roots.py.)
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import aiohttp
import orjson
import pytest
from pydantic import SecretStr

from tests.integration.test_ingress import Ingress, records_on
from tests.integration.test_ingress_hostile import SOURCE_CONNECTED, assert_answer, hostile_instances, serve
from tests.support import gitrepo

EVENTS_TOKEN = "roots-token"
AUTH = {"Authorization": f"Bearer {EVENTS_TOKEN}", "Content-Type": "application/json"}


@pytest.fixture
def layout(tmp_path):
    roots = tmp_path / "repos"
    gitrepo.build_repo(roots / "app", files={"README.md": b"# app\n"}, checkout=True)
    gitrepo.build_repo(tmp_path / "private", files={"secret.txt": b"not yours\n"}, checkout=True)
    (roots / "escape").symlink_to(tmp_path / "private")
    return tmp_path, roots


@pytest.fixture
async def rooted(settings, layout):
    _, roots = layout
    settings = settings.model_copy(
        update={"events_token": SecretStr(EVENTS_TOKEN), "git_roots": str(roots), "producer_linger_ms": 1}
    )
    runner, _ = await serve(settings)
    async with aiohttp.ClientSession() as session:
        yield Ingress(settings, hostile_instances(), runner, session)
    await runner.cleanup()


def connected(source_id: str, path: str, **extra) -> bytes:
    return orjson.dumps({**SOURCE_CONNECTED, "source_id": source_id, "config": {"path": path}, **extra})


async def test_a_git_source_outside_the_roots_is_422_naming_them_and_one_inside_is_accepted(rooted, layout):
    tmp, roots = layout
    for source_id, path in (
        ("outside", str(tmp / "private")),
        ("escape", str(roots / "escape")),
        ("dotdot", str(roots / ".." / "private")),
        ("relative", "repos/app"),
    ):
        answer = assert_answer(
            await rooted.post("/events", connected(source_id, path), AUTH), 422, "git_path_not_allowed"
        )
        assert str(roots) in answer["message"], answer
    update = orjson.dumps(
        {
            "type": "source.updated",
            "source_id": "inside",
            "occurred_at": "2024-01-01T00:00:00Z",
            "config": {"path": str(tmp / "private")},
        }
    )
    assert_answer(await rooted.post("/events", update, AUTH), 422, "git_path_not_allowed")

    status, answer, _ = await rooted.post("/events", connected("inside", str(roots / "app")), AUTH)
    assert (status, answer) == (202, {"type": "source.connected", "key": "inside"})
    # Only the allowed one reached the control topic.
    assert [key for key, _ in await records_on(rooted.settings, "hookstream.sync.control", 1)] == ["inside"]


async def test_a_github_source_is_not_a_path_and_passes(rooted):
    body = orjson.dumps(
        {
            **SOURCE_CONNECTED,
            "source_id": "github:1",
            "source_type": "github",
            "config": {"repository": "octo/app", "installation_id": 1},
        }
    )
    assert (await rooted.post("/events", body, AUTH))[0] == 202


async def test_the_ingress_says_at_start_whether_git_paths_are_restricted(settings, layout, caplog):
    _, roots = layout
    caplog.set_level(logging.INFO, logger="hookstream.ingress")
    runner, _ = await serve(settings)
    await runner.cleanup()
    assert any(
        r.levelno == logging.WARNING and "git source paths are unrestricted" in r.getMessage() for r in caplog.records
    )
    caplog.clear()
    runner, _ = await serve(settings.model_copy(update={"git_roots": str(roots)}))
    await runner.cleanup()
    assert any(str(roots) in r.getMessage() for r in caplog.records)
    assert not any("unrestricted" in r.getMessage() for r in caplog.records)


def _connect(settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **settings.to_env()}
    return subprocess.run(
        [sys.executable, "-m", "app.cli.main", "sources", "connect", "--type", "git", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_sources_connect_refuses_a_repository_outside_the_roots(settings, layout):
    tmp, roots = layout
    rooted = settings.model_copy(update={"git_roots": str(roots)})
    refused = _connect(rooted, "--path", str(roots / "escape"), "--id", "git:escape")
    assert refused.returncode == 2, refused
    assert "Traceback" not in refused.stderr
    assert f"HOOKSTREAM_GIT_ROOTS allows only paths under {roots}" in refused.stderr

    accepted = _connect(rooted, "--path", str(roots / "app"), "--id", "git:app")
    assert accepted.returncode == 0, accepted.stderr
    assert [key for key, _ in await records_on(settings, "hookstream.sync.control", 1)] == ["git:app"]
