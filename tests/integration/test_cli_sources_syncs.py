"""`hookstream sources …`, `hookstream syncs …` and `hookstream sync request` on the real broker and
PostgreSQL; the read commands over rows the projection functions wrote, and once behind a real worker."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiohttp import web
from pydantic import SecretStr

from app.cli.main import main
from app.events import SourceConnected, SourceDisconnected, SyncRequested
from app.ingress.app import create_app
from tests.integration.test_projections import (
    JOB1,
    JOB2,
    SRC,
    completion_history,
    control_history,
    lifecycle_history,
    project,
)
from tests.support import gitrepo
from tests.support.kafka import read_all
from tests.support.services import isolated_settings, wait_until
from tests.support.stack import WorkerProcess

CONTROL = "hookstream.sync.control"
EVENTS_TOKEN = "cli-events-token"


async def hookstream(settings, monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    """Run `hookstream ARGV` with these settings in the environment; (exit code, stdout, stderr)."""
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def control_records(settings, n: int = 1) -> list[tuple[str, object]]:
    got = await read_all(settings, CONTROL, min_count=n, timeout=20, idle=0.3)
    return [(key, record) for key, record, _, _ in got]


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "my-app"
    gitrepo.build_repo(path, files={"README.md": b"# app\n", "src/a.py": b"print(1)\n"}, checkout=True)
    gitrepo.git(path, "branch", "release")
    return path


# --- sources connect / disconnect ----------------------------------------------------------------


async def test_connect_git_sends_source_connected_keyed_by_its_id_to_kafka(settings, repo, monkeypatch, capsys):
    code, out, _ = await hookstream(
        settings, monkeypatch, capsys, "sources", "connect", "--type", "git", "--path", str(repo / "src")
    )
    assert code == 0, out
    assert out.startswith(f"connected git:my-app (git {repo}): source.connected written to {settings.topic(CONTROL)}[")
    [(key, event)] = await control_records(settings)
    assert isinstance(event, SourceConnected)
    # The repository's root, absolute, however it was named.
    assert (key, event.source_type, event.name, event.config) == ("git:my-app", "git", "my-app", {"path": str(repo)})


async def test_connect_git_with_a_branch_a_name_and_the_github_repository_id(settings, repo, monkeypatch, capsys):
    code, out, _ = await hookstream(
        settings,
        monkeypatch,
        capsys,
        "sources",
        "connect",
        "--type",
        "git",
        "--path",
        str(repo),
        "--branch",
        "release",
        "--repository-id",
        "4242",
        "--name",
        "mirror",
        "--json",
    )
    assert code == 0
    answer = orjson.loads(out)
    assert (answer["via"], answer["type"], answer["source_id"], answer["config"]) == (
        "kafka",
        "source.connected",
        "github:4242",
        {"path": str(repo), "branch": "release"},
    )
    [(key, event)] = await control_records(settings)
    assert (key, event.name) == ("github:4242", "mirror")


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda tmp, repo: ["--path", str(tmp / "nowhere")], "no such directory"),
        (lambda tmp, repo: ["--path", str(tmp)], "is not a git repository"),
        (lambda tmp, repo: ["--path", str(repo), "--branch", "nope"], "'nope' is not a branch of"),
        (lambda tmp, repo: [], "--type git needs --path REPO"),
        (lambda tmp, repo: ["--path", str(repo), "--repository", "o/n"], "are for --type github"),
    ],
)
async def test_connect_git_refuses_what_is_not_a_usable_repository(
    settings, repo, tmp_path, monkeypatch, capsys, make_args, message
):
    (tmp_path / "plain").mkdir()
    args = make_args(tmp_path / "plain", repo)
    code, _, err = await hookstream(settings, monkeypatch, capsys, "sources", "connect", "--type", "git", *args)
    assert code == 2 and message in err, err
    assert await read_all(settings, CONTROL, timeout=2, idle=0.3) == []


async def test_connect_github_names_the_repository_and_its_installation(settings, monkeypatch, capsys):
    code, _, err = await hookstream(
        settings,
        monkeypatch,
        capsys,
        "sources",
        "connect",
        "--type",
        "github",
        "--repository",
        "octo/app",
        "--installation-id",
        "99",
    )
    assert code == 0
    assert "give --repository-id" in err  # github:octo/app is not the id GitHub's webhooks use
    code, _, _ = await hookstream(
        settings,
        monkeypatch,
        capsys,
        "sources",
        "connect",
        "--type",
        "github",
        "--repository",
        "octo/app",
        "--installation-id",
        "99",
        "--repository-id",
        "7",
    )
    assert code == 0
    events = await control_records(settings, 2)
    assert sorted((k, e.source_type, e.config["repository"], e.config["installation_id"]) for k, e in events) == [
        ("github:7", "github", "octo/app", 99),
        ("github:octo/app", "github", "octo/app", 99),
    ]
    code, _, err = await hookstream(
        settings,
        monkeypatch,
        capsys,
        "sources",
        "connect",
        "--type",
        "github",
        "--repository",
        "not a repo",
        "--installation-id",
        "1",
    )
    assert code == 2 and "expected OWNER/NAME" in err


async def test_disconnect_sends_source_disconnected_with_the_reason(settings, monkeypatch, capsys):
    code, out, _ = await hookstream(
        settings, monkeypatch, capsys, "sources", "disconnect", "git:my-app", "--reason", "moved away"
    )
    assert code == 0 and out.startswith("disconnected git:my-app (reason: moved away): source.disconnected written")
    [(key, event)] = await control_records(settings)
    assert isinstance(event, SourceDisconnected) and (key, event.reason) == ("git:my-app", "moved away")


# --- sync request --------------------------------------------------------------------------------


async def test_sync_request_prints_a_fresh_request_id_and_sends_sync_requested(settings, monkeypatch, capsys):
    code, out, err = await hookstream(settings, monkeypatch, capsys, "sync", "request", "git:my-app", "--full")
    assert code == 0
    request_id = out.strip()
    assert request_id.startswith("cli-") and f"hookstream syncs show {request_id}" in err
    code, out, _ = await hookstream(
        settings,
        monkeypatch,
        capsys,
        "sync",
        "request",
        "git:my-app",
        "--paths",
        "a.md",
        "b.md",
        "--after",
        "abc",
        "--trigger",
        "cron",
    )
    second = out.strip()
    assert code == 0 and second != request_id
    events = [e for _, e in await control_records(settings, 2)]
    assert all(isinstance(e, SyncRequested) for e in events)
    assert [(e.request_id, e.mode, e.trigger, e.paths, e.after) for e in events] == [
        (request_id, "full", "manual", [], None),
        (second, "incremental", "cron", ["a.md", "b.md"], "abc"),
    ]


async def test_sync_request_refuses_incremental_hints_on_a_full_sync(settings, monkeypatch, capsys):
    code, _, err = await hookstream(settings, monkeypatch, capsys, "sync", "request", "git:x", "--full", "--paths", "a")
    assert code == 2 and "--paths and --before describe an incremental sync" in err


@pytest.fixture
async def ingress(settings):
    """An ingress on a loopback port with POST /events enabled; settings that point the CLI at it."""
    settings = settings.model_copy(update={"events_token": SecretStr(EVENTS_TOKEN), "producer_linger_ms": 1})
    runner = web.AppRunner(create_app(settings, {}), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    yield settings.model_copy(update={"ingress_host": host, "ingress_port": port})
    await runner.cleanup()


async def test_connect_request_and_disconnect_through_the_ingress(ingress, repo, monkeypatch, capsys):
    settings = ingress
    code, out, _ = await hookstream(
        settings, monkeypatch, capsys, "sources", "connect", "--type", "git", "--path", str(repo), "--ingress"
    )
    assert code == 0 and "source.connected accepted by the ingress at http://127.0.0.1:" in out
    code, out, _ = await hookstream(
        settings,
        monkeypatch,
        capsys,
        "sync",
        "request",
        "git:my-app",
        "--json",
        "--url",
        f"http://127.0.0.1:{settings.ingress_port}",
    )
    assert code == 0
    answer = orjson.loads(out)
    assert (answer["via"], answer["type"], answer["key"]) == ("ingress", "sync.requested", "git:my-app")
    code, _, _ = await hookstream(settings, monkeypatch, capsys, "sources", "disconnect", "git:my-app", "--ingress")
    assert code == 0
    events = await control_records(settings, 3)
    assert [(k, e.type) for k, e in events] == [
        ("git:my-app", "source.connected"),
        ("git:my-app", "sync.requested"),
        ("git:my-app", "source.disconnected"),
    ]
    assert events[1][1].request_id == answer["request_id"]

    wrong = settings.model_copy(update={"events_token": SecretStr("not the token")})
    code, _, err = await hookstream(wrong, monkeypatch, capsys, "sources", "disconnect", "git:my-app", "--ingress")
    assert code == 1 and "401 invalid_token" in err


# --- reading the read model ----------------------------------------------------------------------


@pytest.fixture
async def projected(settings):
    await project(settings, control_history() + lifecycle_history() + completion_history())
    return settings


async def test_sources_list_shows_each_source_as_a_table_and_as_json(projected, monkeypatch, capsys):
    code, out, _ = await hookstream(projected, monkeypatch, capsys, "sources", "list")
    assert code == 0
    header, demo, github = out.splitlines()
    assert header.split() == ["ID", "TYPE", "STATUS", "NAME", "LOCATION", "CONFIG", "FILE", "UPDATED"]
    assert demo.split()[:5] == [SRC, "git", "disconnected", "(retired)", "demo-renamed"]
    assert (
        "/repo@dev" in demo
        and "configured: .hookstream.yml at c9 (1 include, 0 exclude)" in demo
        and "2026-03-01 12:00:05Z" in demo
    )
    assert github.split()[:5] == ["github:42", "github", "connected", "octo/repo", "octo/repo"]

    code, out, _ = await hookstream(
        projected, monkeypatch, capsys, "sources", "list", "--status", "connected", "--json"
    )
    [only] = orjson.loads(out)
    assert (only["source_id"], only["config"]["installation_id"], only["updated_at"]) == (
        "github:42",
        7,
        "2026-03-01T12:00:06+00:00",
    )


@pytest.mark.parametrize(
    "filters, expected",
    [
        ([], [JOB2, JOB1]),  # latest start first
        (["--source", SRC, "--status", "succeeded"], [JOB1]),
        (["--status", "cancelled"], [JOB2]),
        (["--status", "active"], []),
        (["--source", "git:other"], []),
        (["--limit", "1"], [JOB2]),
    ],
)
async def test_syncs_list_filters(projected, monkeypatch, capsys, filters, expected):
    code, out, _ = await hookstream(projected, monkeypatch, capsys, "syncs", "list", "--json", *filters)
    assert code == 0
    assert [job["job_id"] for job in orjson.loads(out)] == expected


async def test_syncs_list_table_has_the_counts_and_the_error(projected, monkeypatch, capsys):
    code, out, _ = await hookstream(projected, monkeypatch, capsys, "syncs", "list")
    assert code == 0
    header, job2, job1 = out.splitlines()
    assert header.split()[:5] == ["JOB", "SOURCE", "STATUS", "MODE", "TRIGGER"]
    # ... BATCHES (done/planned), LISTED, PROCESSED, WRITTEN
    assert job1.split()[:12] == [
        JOB1,
        SRC,
        "succeeded",
        "full",
        "manual",
        "2026-03-01",
        "12:00:01Z",
        "2.0s",
        "1/1",
        "7",
        "6",
        "7",
    ]
    assert job2.split()[2] == "cancelled" and job2.endswith("cancelled: retired")


async def test_syncs_show_prints_every_field_of_a_job(projected, monkeypatch, capsys):
    code, out, _ = await hookstream(projected, monkeypatch, capsys, "syncs", "show", JOB2)
    assert code == 0
    for expected in (
        f"job            {JOB2}",
        "status         cancelled (final)",
        "mode           incremental",
        "trigger        push",
        "requests       r2, r3",
        "queued         2026-03-01 12:00:02Z",
        "started        2026-03-01 12:00:04Z",
        "finished       2026-03-01 12:00:05Z",
        "duration       1.0s (1000 ms)",
        "cancelled      2026-03-01 12:00:05Z: retired",
        "files listed       4",
        "processed          2",
        "batches            1",
        "  cancelled: retired",
        "r2  queued        2026",
        "r3  coalesced     2026",
    ):
        assert expected in out, (expected, out)


async def test_syncs_show_finds_a_job_by_request_id_and_tells_rejections(projected, monkeypatch, capsys):
    code, out, _ = await hookstream(projected, monkeypatch, capsys, "syncs", "show", "r4")
    assert code == 0
    assert out.startswith(f"request r4 for {SRC} was deduplicated at 2026-03-01 12:00:02Z: idempotency key")
    assert f"job            {JOB1}" in out and "status         succeeded (final)" in out

    code, out, _ = await hookstream(projected, monkeypatch, capsys, "syncs", "show", "r5", "--json")
    shown = orjson.loads(out)
    assert shown["job"] is None and (shown["request"]["answer"], shown["request"]["reason"]) == (
        "rejected",
        "unknown source",
    )

    code, _, err = await hookstream(projected, monkeypatch, capsys, "syncs", "show", "nope")
    assert code == 1 and "no sync job or request 'nope'" in err


async def test_read_commands_say_what_is_wrong_without_a_database_or_its_tables(settings, monkeypatch, capsys):
    unmigrated = isolated_settings(settings.kafka_bootstrap_servers, settings.database_url)
    code, _, err = await hookstream(unmigrated, monkeypatch, capsys, "syncs", "list")
    assert code == 2 and "run `hookstream db migrate`" in err
    nowhere = settings.model_copy(update={"database_url": "postgresql://u:p@127.0.0.1:1/none"})
    for argv in (["sources", "list"], ["syncs", "show", "x"]):
        code, _, err = await hookstream(nowhere, monkeypatch, capsys, *argv)
        assert code == 1 and "cannot reach PostgreSQL at HOOKSTREAM_DATABASE_URL" in err


async def test_trace_and_prune_say_what_is_wrong_as_every_read_command_does(settings, monkeypatch, capsys):
    unmigrated = isolated_settings(settings.kafka_bootstrap_servers, settings.database_url)
    for argv in (["trace", "some-delivery", "--no-kafka"], ["db", "prune", "--dry-run"]):
        code, _, err = await hookstream(unmigrated, monkeypatch, capsys, *argv)
        assert code == 2, (argv, err)
        assert f"the read model in schema {unmigrated.database_schema} is missing or out of date" in err, err
        assert "run `hookstream db migrate`" in err
    nowhere = settings.model_copy(update={"database_url": "postgresql://u:p@127.0.0.1:1/none"})
    for argv in (["trace", "some-delivery"], ["db", "prune"]):
        code, _, err = await hookstream(nowhere, monkeypatch, capsys, *argv)
        assert code == 1 and "cannot reach PostgreSQL at HOOKSTREAM_DATABASE_URL" in err, err
        assert len(err.strip().splitlines()) == 1, err


async def test_sending_without_a_broker_fails_with_a_message(settings, monkeypatch, capsys):
    nowhere = settings.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:1"})
    code, _, err = await hookstream(nowhere, monkeypatch, capsys, "sync", "request", "git:x")
    assert code == 1 and "cannot reach the Kafka broker at 127.0.0.1:1" in err


# --- the whole loop, behind a real worker ---------------------------------------------------------


async def test_connect_request_and_follow_a_sync_from_the_cli(settings, repo, tmp_path, monkeypatch, capsys):
    worker = WorkerProcess(settings, tmp_path / "rocks", tmp_path / "worker.log").start()
    try:
        assert (
            await hookstream(settings, monkeypatch, capsys, "sources", "connect", "--type", "git", "--path", str(repo))
        )[0] == 0
        code, out, _ = await hookstream(settings, monkeypatch, capsys, "sync", "request", "git:my-app", "--full")
        assert code == 0
        request_id = out.strip()

        async def shown():
            code, out, _ = await hookstream(settings, monkeypatch, capsys, "syncs", "show", request_id, "--json")
            assert worker.alive(), worker.log_tail()
            job = orjson.loads(out)["job"] if code == 0 else None
            return job if job is not None and job["status"] == "succeeded" else None

        job = await wait_until(shown, timeout=90, interval=0.5, what="the requested sync to succeed")
        assert (job["request_ids"], job["mode"], job["files_listed"], job["documents_written"]) == (
            [request_id],
            "full",
            2,
            2,
        )
        code, out, _ = await hookstream(settings, monkeypatch, capsys, "sources", "list", "--json")
        [source] = orjson.loads(out)
        assert (source["source_id"], source["status"], source["config"]) == (
            "git:my-app",
            "connected",
            {"path": str(repo)},
        )
    finally:
        worker.stop()
