"""Retention on the real PostgreSQL: `hookstream db prune` and the worker's timer delete history past its
age (finished jobs, their requests, retired dead letters) and never what is live (open jobs, open dead
letters, a source's kept plan and write fence, the projections' fences); a projection rebuild prunes
its candidate alike, so it brings nothing back.

The rows are made the way the system makes them: lifecycle events, completions and dead letters are
produced to their topics and applied by the agents' own projection functions; the kept plan and the
write fence by the planner's own store functions."""

from __future__ import annotations

from datetime import timedelta

from app.events import (
    DeadLettered,
    DeliveryOutcome,
    FileChange,
    RedriveAccepted,
    SyncCompleted,
    SyncDeduplicated,
    SyncRejected,
    SyncStarted,
    utcnow,
)
from app.store import documents, plans
from app.store.db import in_transaction, open_pool
from tests.integration.test_dlq_cli import hookstream
from tests.integration.test_projection_rebuild import apply_live, produce_records, query
from tests.support.services import wait_until
from tests.support.stack import WorkerProcess

NOW = utcnow().replace(microsecond=0)
OLD = NOW - timedelta(days=40)
RECENT = NOW - timedelta(days=1)


def started(job_id: str, source_id: str, request_id: str, when) -> SyncStarted:
    return SyncStarted(
        source_id=source_id,
        occurred_at=when,
        request_ids=[request_id],
        job_id=job_id,
        mode="full",
        trigger="manual",
        deadline=when + timedelta(hours=1),
    )


def completed(job_id: str, source_id: str, request_id: str, when) -> SyncCompleted:
    return SyncCompleted(
        job_id=job_id,
        source_id=source_id,
        request_ids=[request_id],
        mode="full",
        trigger="manual",
        status="succeeded",
        started_at=when,
        finished_at=when + timedelta(seconds=5),
        duration_ms=5000,
    )


def dead_letter(ident: str, when) -> DeadLettered:
    return DeadLettered(
        dead_letter_id=ident,
        key=f"src-{ident}",
        stage="batch",
        error="boom",
        failed_at=when,
        source_topic="hookstream.files.batches",
        source_partition=0,
        source_offset=1,
        raw=b"{}",
    )


def accepted(ident: str, when) -> RedriveAccepted:
    return RedriveAccepted(dead_letter_id=ident, key=f"src-{ident}", accepted_at=when)


# What each row is, and whether a prune at 7 days keeps it.
JOBS = {
    "git:a:10": False,  # finished 40 days ago
    "git:a:20": True,  # finished 40 days ago, but the latest planned job of git:a (its kept plan is live)
    "git:b:5": True,  # started 40 days ago and still running: open
    "git:c:7": True,  # finished a day ago
}
REQUESTS = {
    "ra1": False,  # answered 40 days ago, its job is pruned
    "ra2": True,  # its job stays
    "rb1": True,  # its job is open
    "rc1": True,  # recent
    "rx": False,  # rejected 40 days ago (no job)
    "ry": True,  # rejected an hour ago
    "rd": False,  # deduplicated 40 days ago, held by a pruned job
}


def copy(offset: int, when) -> DeliveryOutcome:
    return DeliveryOutcome(
        key=f"github/gh/d{offset}",
        plugin="github",
        instance="gh",
        delivery_id=f"d{offset}",
        received_at=when,
        partition=0,
        offset=offset,
        outcome="ignored",
        rule="ping",
    )


DEAD_LETTERS = {
    "dl-old-retired": False,
    "dl-recent-retired": True,
    "dl-old-open": True,
}


async def seed(settings) -> None:
    events = [
        started("git:a:10", "git:a", "ra1", OLD),
        started("git:a:20", "git:a", "ra2", OLD + timedelta(hours=1)),
        started("git:b:5", "git:b", "rb1", OLD),
        started("git:c:7", "git:c", "rc1", RECENT),
        SyncRejected(source_id="git:x", occurred_at=OLD, request_ids=["rx"], reason="unknown source"),
        SyncRejected(
            source_id="git:x", occurred_at=NOW - timedelta(hours=1), request_ids=["ry"], reason="unknown source"
        ),
        SyncDeduplicated(
            source_id="git:a",
            occurred_at=OLD,
            request_ids=["rd"],
            job_id="git:a:10",
            idempotency_key="k",
            held_by_job_id="git:a:10",
            held_status="running",
        ),
    ]
    await produce_records(settings, "hookstream.sync.events", events)
    await produce_records(
        settings,
        "hookstream.sync.completed",
        [
            completed("git:a:10", "git:a", "ra1", OLD),
            completed("git:a:20", "git:a", "ra2", OLD + timedelta(hours=1)),
            completed("git:c:7", "git:c", "rc1", RECENT),
        ],
    )
    await produce_records(
        settings,
        "hookstream.dlq",
        [
            dead_letter("dl-old-retired", OLD - timedelta(days=1)),
            accepted("dl-old-retired", OLD),
            dead_letter("dl-recent-retired", OLD),
            accepted("dl-recent-retired", RECENT),
            dead_letter("dl-old-open", OLD),
        ],
    )
    await produce_records(settings, "hookstream.deliveries.outcomes", [copy(0, OLD), copy(1, RECENT)])
    await apply_live(settings, names=("sync_jobs", "dlq", "ledger"))
    pool = open_pool(settings, min_size=1, max_size=2)
    await pool.open(wait=True)
    try:

        async def live_state(conn) -> None:
            # git:a's latest job planned, with its documents' write fence: what the stages fence on.
            await plans.keep(
                conn, "git:a", "git:a:20", 20, "c0ffee", [FileChange(path="a.txt", change="upsert")], "full"
            )
            assert await documents.claim_writes(conn, "git:a", 20)

        await in_transaction(pool, live_state)
    finally:
        await pool.close()


async def ids(settings, table: str, key: str, schema: str | None = None) -> set[str]:
    return {r[key] for r in await query(settings, f"SELECT {key} FROM {table}", schema=schema)}


def kept(expected: dict[str, bool]) -> set[str]:
    return {name for name, stays in expected.items() if stays}


async def live_rows(settings) -> dict:
    return {
        "fences": await query(
            settings, 'SELECT consumer, topic, partition, "offset" FROM applied_offsets ORDER BY 1, 2, 3'
        ),
        "plans": await query(settings, "SELECT source_id, job_id FROM sync_plans"),
        "write_fences": await query(settings, "SELECT source_id, job_seq FROM document_write_fences"),
    }


async def test_prune_deletes_old_history_and_never_what_is_live(settings, monkeypatch, capsys):
    await seed(settings)
    assert await ids(settings, "sync_jobs", "job_id") == set(JOBS)
    assert await ids(settings, "sync_requests", "request_id") == set(REQUESTS)
    assert await ids(settings, "dlq", "dead_letter_id") == set(DEAD_LETTERS)
    assert len(await ids(settings, "delivery_copies", "copy_id")) == 2  # received 40 days ago, and a day ago
    live = await live_rows(settings)
    assert live["plans"] and live["write_fences"] and live["fences"]

    code, out, err = await hookstream(settings, monkeypatch, capsys, "db", "prune", "--older-than", "7d", "--dry-run")
    assert code == 0, err
    for line in (
        "would delete        1  sync_jobs",
        "would delete        3  sync_requests",
        "would delete        1  dlq",
        "would delete        1  delivery_copies",
        "would delete        1  deliveries",
    ):
        assert line in out, out
    assert await ids(settings, "sync_jobs", "job_id") == set(JOBS), "a dry run deletes nothing"

    code, out, err = await hookstream(settings, monkeypatch, capsys, "db", "prune", "--older-than", "7d")
    assert code == 0, err
    assert "deleted        1  sync_jobs" in out and "11 rows older than" in out, out
    # Where the records of the pruned job and requests were (trace's positions) goes with them.
    assert "deleted        4  sync_records" in out, out
    left = await query(settings, "SELECT job_id, request_ids FROM sync_records")
    assert {r["job_id"] for r in left} <= set(kept(JOBS)) | {None} and ["rx"] not in [r["request_ids"] for r in left]
    assert await ids(settings, "sync_jobs", "job_id") == kept(JOBS)
    assert await ids(settings, "sync_requests", "request_id") == kept(REQUESTS)
    assert await ids(settings, "dlq", "dead_letter_id") == kept(DEAD_LETTERS)
    assert {r["key"] for r in await query(settings, "SELECT key FROM deliveries")} == {"github/gh/d1"}
    assert len(await ids(settings, "delivery_copies", "copy_id")) == 1
    assert await live_rows(settings) == live, "fences, kept plans and write fences are never pruned"

    # A rebuild replays the topics, which still hold the pruned history: it prunes its candidate alike.
    code, out, err = await hookstream(
        settings,
        monkeypatch,
        capsys,
        "projections",
        "rebuild",
        "--projection",
        "sync_jobs",
        "--projection",
        "dlq",
        "--projection",
        "ledger",
        "--dry-run",
        "--verify",
        "--verify-wait",
        "0",
    )
    assert code == 0, out + err  # --verify exits 1 when the rebuilt tables differ from the live ones


async def test_an_unreadable_age_is_a_usage_error(settings, monkeypatch, capsys):
    code, _, err = await hookstream(settings, monkeypatch, capsys, "db", "prune", "--older-than", "soon")
    assert code == 2 and "--older-than 'soon'" in err


async def test_the_worker_prunes_on_its_timer(settings, tmp_path):
    await seed(settings)
    s = settings.model_copy(update={"retention_days": 7.0, "prune_interval_seconds": 1.0})
    worker = WorkerProcess(s, tmp_path / "rocks", tmp_path / "worker.log").start()
    try:

        async def pruned():
            assert worker.alive(), worker.log_tail()
            return await ids(settings, "sync_jobs", "job_id") == kept(JOBS)

        await wait_until(pruned, timeout=60, interval=0.5, what="the worker's timer to prune the old jobs")
        assert await ids(settings, "sync_requests", "request_id") == kept(REQUESTS)
        assert await ids(settings, "dlq", "dead_letter_id") == kept(DEAD_LETTERS)
    finally:
        worker.stop()
