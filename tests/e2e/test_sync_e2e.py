"""HTTP/Kafka in, sync.completed and PostgreSQL rows out: a real worker, broker, PostgreSQL and git."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support import gitrepo, globs
from tests.support.flows import (
    completions,
    connected,
    disconnected,
    document_digests,
    documents,
    github_delivery,
    github_push,
    lifecycle,
    now,
    requested,
    send_control,
)
from tests.support.kafka import produce, read_all
from tests.support.services import isolated_settings, wait_until
from tests.support.stack import started_worker, write_instances


@pytest.fixture(scope="module")
async def stack(broker, postgres, tmp_path_factory):
    """One worker for the module (a group join costs seconds); each test uses its own sources."""

    tmp = tmp_path_factory.mktemp("stack")
    instances = write_instances(
        tmp / "instances.toml",
        [
            {"plugin": "github", "id": "gh", "secret": "s3cret"},
            {"plugin": "generic-hmac", "id": "a", "secret": "s1"},
        ],
    )
    s = isolated_settings(
        broker.bootstrap,
        postgres.url,
        instances_file=instances,
        batch_size=20,
        idempotency_ttl_seconds=4.0,
        deadline_check_interval_seconds=0.5,
    )
    worker = await started_worker(s, tmp)
    yield s, worker
    worker.stop()


def repo_with_history(path):
    """Several commits with renames, deletions and a binary file; returns (shas, final tree)."""
    files = gitrepo.synthetic_files(300, seed=3)
    first = dict(files)
    second = {
        "pkg00/mod00/renamed.py": files["pkg00/mod00/file_00000.py"] if "pkg00/mod00/file_00000.py" in files else b"x\n"
    }
    victims = sorted(files)[1:11]
    for v in victims:
        second[v] = None
    second["docs/new guide é.md"] = b"# New guide\n\nhello\n"
    second["assets/logo.png"] = b"\x89PNG\r\n\x1a\n\x00\x00binary"
    third = {sorted(files)[20]: b"changed content\n"}
    shas = gitrepo.build_repo(path, commits=[first, second, third])
    tree = {}
    for change in (first, second, third):
        for p, c in change.items():
            if c is None:
                tree.pop(p, None)
            else:
                tree[p] = c
    return shas, tree


async def test_a_full_sync_writes_exactly_the_commits_tree_and_reports_it(stack, tmp_path):
    settings, worker = stack
    shas, tree = repo_with_history(tmp_path / "repo")
    await send_control(settings, connected("git:full", tmp_path / "repo"), requested("git:full", "full"))

    (done,) = await completions(settings, "git:full", alive=worker.alive)
    rows = await documents(settings, "git:full")
    oracle = gitrepo.tree_of(tmp_path / "repo", shas[-1])
    assert set(rows) == set(oracle), worker.log_tail()
    for path, content in tree.items():
        assert rows[path][1] == len(content)
    assert done.status == "succeeded", done
    assert done.commit == shas[-1]
    assert done.files_listed == len(oracle)
    assert done.documents_written == len(rows)
    assert done.processed + done.skipped == len(rows)
    assert done.skipped == sum(1 for r in rows.values() if r[2])
    assert done.failed == 0 and done.deleted == 0
    assert done.batches == -(-len(oracle) // 20)


async def test_a_redelivered_push_is_processed_once_and_syncs_only_the_pushed_paths(stack, tmp_path):
    """Background case 1: the provider redelivers a push; one sync runs, incremental."""
    settings, worker = stack
    repo = tmp_path / "repo"
    (base,) = gitrepo.build_repo(repo, files={"a.md": b"# A\n", "b.md": b"# B\n", "c.md": b"# C\n"})
    source = "github:4242"  # a git mirror carrying the GitHub repository's id
    await send_control(settings, connected(source, repo), requested(source, "full"))
    await completions(settings, source, alive=worker.alive)

    (head,) = gitrepo.build_repo(repo, commits=[{"a.md": b"# A v2\n", "b.md": None, "d.md": b"# D\n"}])
    body = github_push(4242, base, head, added=["d.md"], modified=["a.md"], removed=["b.md"])
    push = github_delivery("gh", "push-1", body)
    await produce(settings, "hookstream.deliveries", [push, push])  # the redelivery
    runs = await completions(settings, source, at_least=2, alive=worker.alive)
    await assert_no_more_completions(settings, source, len(runs))
    assert len(runs) == 2, runs
    incremental = runs[1]
    assert (incremental.mode, incremental.request_ids, incremental.status) == ("incremental", ["push-1"], "succeeded")
    assert (incremental.processed, incremental.deleted, incremental.files_listed) == (2, 1, 3)
    rows = await documents(settings, source)
    assert set(rows) == set(gitrepo.tree_of(repo, head)) == {"a.md", "c.md", "d.md"}


async def assert_no_more_completions(settings, source, expected: int) -> None:
    """Nothing more arrives once the stage went quiet (a bounded read, not a sleep)."""
    got = await read_all(settings, "hookstream.sync.completed", timeout=4, idle=2.0)
    assert len([r for _, r, _, _ in got if r.source_id == source]) == expected


async def test_rapid_manual_restarts_inside_the_ttl_start_nothing_new_and_after_it_start_one(stack, tmp_path):
    """Background case 2: the idempotency key (source, mode, trigger) holds for its TTL (4 s here)."""
    settings, worker = stack
    repo = tmp_path / "repo"
    gitrepo.build_repo(repo, files=gitrepo.synthetic_files(60, seed=5))
    source = "git:restarts"
    t0 = now()
    burst = [requested(source, "full", occurred_at=t0 + timedelta(milliseconds=100 * i)) for i in range(4)]
    await send_control(settings, connected(source, repo), *burst)
    await completions(settings, source, alive=worker.alive)
    events = await wait_until(
        lambda: _types(settings, source, "sync.deduplicated", 3), timeout=30, what="3 deduplications"
    )
    assert len(events) == 3
    # Past the TTL in event time (the fold's clock is the events' timestamps): one new run.
    later = [requested(source, "full", occurred_at=t0 + timedelta(seconds=10 + i)) for i in range(2)]
    await send_control(settings, *later)
    runs = await completions(settings, source, at_least=2, alive=worker.alive)
    await assert_no_more_completions(settings, source, 2)
    assert runs[1].request_ids == [later[0].request_id]


async def _types(settings, source, type_: str, n: int):
    found = [e for e in await lifecycle(settings, source) if e.type == type_]
    return found if len(found) >= n else None


async def test_a_config_file_change_runs_a_full_sync_that_applies_it_and_a_removal_unconfigures(stack, tmp_path):
    """Background case 3: a push touching .hookstream.yml → a full sync; the worker reads the file at the
    synced commit: its exclude deletes what it no longer selects; a push removing it → `unconfigured`."""
    settings, worker = stack
    repo = tmp_path / "repo"
    (base,) = gitrepo.build_repo(repo, files={"a.md": b"# A\n", "b.md": b"# B\n", "secret/k.md": b"# K\n"})
    source = "github:5151"
    await send_control(settings, connected(source, repo), requested(source, "full"))
    await completions(settings, source, alive=worker.alive)
    (head,) = gitrepo.build_repo(repo, commits=[{".hookstream.yml": b"exclude: ['secret/**']\n", "b.md": b"# B2\n"}])
    body = github_push(5151, base, head, added=[".hookstream.yml"], modified=["b.md"])
    await produce(settings, "hookstream.deliveries", [github_delivery("gh", "cfg-1", body)])
    runs = await completions(settings, source, at_least=2, alive=worker.alive)
    assert (runs[1].mode, runs[1].trigger, runs[1].listing, runs[1].deleted) == ("full", "config_change", "full", 1)
    assert await document_digests(settings, source) == _selected(repo, head, exclude=["secret/**"])
    row = await wait_until(lambda: _config_row(settings, source, head), timeout=30, what="sources.config_status")
    assert row[1:] == ("configured", ".hookstream.yml")

    (gone,) = gitrepo.build_repo(repo, commits=[{".hookstream.yml": None}])
    body = github_push(5151, head, gone, removed=[".hookstream.yml"])
    await produce(settings, "hookstream.deliveries", [github_delivery("gh", "cfg-2", body)])
    runs = await completions(settings, source, at_least=3, alive=worker.alive)
    assert (runs[2].mode, runs[2].trigger) == ("full", "config_change")
    row = await wait_until(lambda: _config_row(settings, source, gone), timeout=30, what="sources.config_status")
    assert row[1:] == ("unconfigured", None), "a push that removes the config file unconfigures the source"
    assert await document_digests(settings, source) == gitrepo.digests_at(repo, gone)


def _selected(repo, commit: str, include=(), exclude=()) -> dict[str, str]:
    return {p: d for p, d in gitrepo.digests_at(repo, commit).items() if globs.written(p, include, exclude)}


async def _config_row(settings, source, commit: str):
    """(status, config_status, config_path) once the config file was read at `commit`."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(
        settings.database_url, options=f"-c search_path={settings.database_schema}"
    ) as conn:
        row = await (
            await conn.execute(
                "SELECT status, config_status, config_path, config_commit FROM sources WHERE source_id = %s", (source,)
            )
        ).fetchone()
    return row[:3] if row is not None and row[3] == commit else None


async def test_requests_on_one_source_queue_and_coalesce_while_another_source_runs_in_parallel(stack, tmp_path):
    """Background case 4: one active job per source; later requests coalesce into one queued job."""
    settings, worker = stack
    big, small = tmp_path / "big", tmp_path / "small"
    c0, c1, c2, c3 = gitrepo.build_repo(
        big, commits=[gitrepo.synthetic_files(400, seed=9), {"x.md": b"x\n"}, {"y.md": b"y\n"}, {"z.md": b"z\n"}]
    )
    gitrepo.build_repo(small, files=gitrepo.synthetic_files(30, seed=1))
    t0 = now()
    first = requested("git:busy", "full", occurred_at=t0)
    incrementals = [
        requested(
            "git:busy",
            "incremental",
            trigger="push",
            before=c0,
            after=c1,
            paths=["x.md"],
            occurred_at=t0 + timedelta(milliseconds=10),
        ),
        requested(
            "git:busy",
            "incremental",
            trigger="push",
            before=c1,
            after=c2,
            paths=["y.md"],
            occurred_at=t0 + timedelta(milliseconds=20),
        ),
        requested(
            "git:busy",
            "incremental",
            trigger="push",
            before=c2,
            after=c3,
            paths=["z.md"],
            occurred_at=t0 + timedelta(milliseconds=30),
        ),
    ]
    await send_control(
        settings,
        connected("git:busy", big),
        connected("git:side", small),
        first,
        *incrementals,
        requested("git:side", "full", occurred_at=t0 + timedelta(milliseconds=40)),
    )
    busy = await completions(settings, "git:busy", at_least=2, alive=worker.alive)
    side = await completions(settings, "git:side", alive=worker.alive)
    await assert_no_more_completions(settings, "git:busy", 2)
    assert busy[0].request_ids == [first.request_id]
    merged = busy[1]
    assert merged.request_ids == [r.request_id for r in incrementals]
    assert merged.mode == "incremental" and merged.commit == c3
    # The first incremental's `before` and the last one's `after`: x, y, z all synced.
    assert {"x.md", "y.md", "z.md"} <= set(await documents(settings, "git:busy"))
    # The other source was not serialized behind the busy one.
    assert side[0].started_at < busy[0].finished_at
    kinds = [e.type for e in await lifecycle(settings, "git:busy")]
    assert kinds.count("sync.queued") == 1 and kinds.count("sync.coalesced") == 2


async def test_a_disconnect_mid_sync_cancels_with_partial_counts_and_skips_unstarted_batches(stack, tmp_path):
    settings, worker = stack
    repo = tmp_path / "repo"
    # Large enough that the disconnect is folded while batches remain: it waits behind the batch
    # completions already on the source's control partition (3,000 files were all written first
    # now and then on a loaded machine).
    gitrepo.build_repo(repo, files=gitrepo.synthetic_files(10_000, seed=2))
    source = "git:cancel"
    await send_control(settings, connected(source, repo), requested(source, "full"))
    await wait_until(lambda: _has_rows(settings, source), timeout=60, what="the first batch written")
    await send_control(settings, disconnected(source))
    (done,) = await completions(settings, source, alive=worker.alive)
    assert done.status == "cancelled"
    # Partial: the disconnect may be folded before or after the first BatchCompleted.
    assert 0 <= done.processed + done.skipped < 10_000
    # What the job reports is what it wrote before the cancellation, nothing more.
    await wait_until(_rows_unchanged_since_last_call(settings, source), timeout=60, what="batches drained")
    rows = await documents(settings, source)
    assert done.documents_written <= len(rows) < 10_000


async def _has_rows(settings, source):
    return len(await documents(settings, source)) > 0


def _rows_unchanged_since_last_call(settings, source):
    """A condition for wait_until: true once two polls in a row count the same rows."""
    last: int | None = None

    async def unchanged() -> bool:
        nonlocal last
        n = len(await documents(settings, source))
        prev, last = last, n
        return prev == n

    return unchanged


async def test_a_job_past_its_deadline_completes_timed_out_and_ignores_late_batches(stack, tmp_path):
    settings, worker = stack
    repo = tmp_path / "repo"
    gitrepo.build_repo(repo, files=gitrepo.synthetic_files(3000, seed=4))
    source = "git:deadline"
    # Requested two hours ago in event time: its one-hour deadline has passed when it starts.
    await send_control(
        settings, connected(source, repo), requested(source, "full", occurred_at=now() - timedelta(hours=2))
    )
    (done,) = await completions(settings, source, alive=worker.alive)
    assert done.status == "timed_out", done
    assert done.processed + done.skipped < 3000
    await assert_no_more_completions(settings, source, 1)
