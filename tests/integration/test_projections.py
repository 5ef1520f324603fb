"""The sources and sync_jobs projections on the real PostgreSQL (and, once, behind a real worker):
exactly-once effects under re-consumption, and a replay into a fresh schema gives the same rows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from itertools import zip_longest

import psycopg
from psycopg.rows import dict_row

from app.events import (
    BatchCompleted,
    ConfigFound,
    PathRules,
    SourceConfigChanged,
    SourceConnected,
    SourceDisconnected,
    SourceUpdated,
    SyncCancelled,
    SyncCoalesced,
    SyncCompleted,
    SyncDeduplicated,
    SyncPlanned,
    SyncQueued,
    SyncRejected,
    SyncRequested,
    SyncStarted,
)
from app.store.db import migrate, open_pool
from app.stream.projections import (
    ALREADY_APPLIED,
    APPLIED,
    CONTROL,
    NO_ROW,
    NOT_PROJECTED,
    SOURCES_CONSUMER,
    SYNC_COMPLETED,
    SYNC_EVENTS,
    SYNC_JOBS_CONSUMER,
    project_progress_record,
    project_source_event,
    project_sync_record,
)
from tests.support import gitrepo
from tests.support.flows import connected, disconnected, requested, send_control
from tests.support.kafka import read_all
from tests.support.services import isolated_settings, wait_until
from tests.support.stack import WorkerProcess

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TABLES = {
    "sources": "source_id",
    "sync_jobs": "job_id",
    "sync_requests": "request_id",
    "sync_batches": "batch_id",
    "sync_records": "record_id",
}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- helpers -----------------------------------------------------------------------------------


async def project(settings, records) -> list[str]:
    """Apply (logical topic, partition, offset, record) the way the agents do; the outcome of each
    (of the sources projection, for a control record: both projections of the control topic apply it)."""
    pool = open_pool(settings, min_size=1, max_size=2)
    await pool.open(wait=True)
    try:
        outcomes = []
        for logical, partition, offset, record in records:
            if logical == CONTROL:
                await project_progress_record(pool, settings.topic(logical), partition, offset, record)
            apply = project_source_event if logical == CONTROL else project_sync_record
            outcomes.append(await apply(pool, settings.topic(logical), partition, offset, record))
        return outcomes
    finally:
        await pool.close()


async def rows(settings, table: str) -> list[dict]:
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, options=f"-c search_path={settings.database_schema}"
    ) as conn:
        cursor = conn.cursor(row_factory=dict_row)
        return await (
            await cursor.execute(f"SELECT * FROM {table} ORDER BY {TABLES.get(table, 'consumer, topic, partition')}")
        ).fetchall()


async def read_model(settings) -> dict[str, list[dict]]:
    return {table: await rows(settings, table) for table in TABLES}


async def fresh_schema(settings):
    """The same server and topics, an empty schema of its own: a projection rebuild target."""
    s = isolated_settings(settings.kafka_bootstrap_servers, settings.database_url, topic_prefix=settings.topic_prefix)
    await migrate(s)
    return s


SRC = "git:demo"
JOB1, JOB2 = f"{SRC}:1", f"{SRC}:3"
CONFIG_FOUND = ConfigFound(status="configured", path=".hookstream.yml", rules=PathRules(include=("docs/**",)))


def control_history():
    return [
        (
            CONTROL,
            4,
            0,
            SourceConnected(source_id=SRC, occurred_at=at(0), source_type="git", name="demo", config={"path": "/repo"}),
        ),
        (
            CONTROL,
            4,
            1,
            SyncRequested(source_id=SRC, occurred_at=at(1), request_id="r1", mode="full", trigger="manual"),
        ),
        (CONTROL, 4, 2, BatchCompleted(source_id=SRC, occurred_at=at(2), job_id=JOB1, batch_index=0, processed=5)),
        # The planner read the config file at c9; a superseded claim from an earlier version is not projected.
        (
            CONTROL,
            4,
            3,
            SyncPlanned(
                source_id=SRC,
                occurred_at=at(3),
                job_id=JOB1,
                batch_count=1,
                file_count=7,
                commit="c9",
                listing="full",
                config=CONFIG_FOUND,
            ),
        ),
        (CONTROL, 4, 4, SourceConfigChanged(source_id=SRC, occurred_at=at(3.5), config_path="", commit="c10")),
        (CONTROL, 4, 5, SourceUpdated(source_id=SRC, occurred_at=at(4), name="demo-renamed", config={"branch": "dev"})),
        (CONTROL, 4, 6, SourceDisconnected(source_id=SRC, occurred_at=at(5), reason="retired")),
        (CONTROL, 1, 0, SourceDisconnected(source_id="git:never", occurred_at=at(5))),
        (
            CONTROL,
            1,
            1,
            SourceConnected(
                source_id="github:42",
                occurred_at=at(6),
                source_type="github",
                name="octo/repo",
                config={"repository": "octo/repo", "installation_id": 7},
            ),
        ),
    ]


def lifecycle_history():
    """Job 1 runs at once; requests r2, r3 queue and coalesce into job 2, which is cancelled while running."""
    return [
        (
            SYNC_EVENTS,
            4,
            0,
            SyncStarted(
                source_id=SRC,
                occurred_at=at(1),
                request_ids=["r1"],
                job_id=JOB1,
                mode="full",
                trigger="manual",
                deadline=at(3601),
            ),
        ),
        (
            SYNC_EVENTS,
            4,
            1,
            SyncQueued(source_id=SRC, occurred_at=at(2), request_ids=["r2"], job_id=JOB2, mode="incremental"),
        ),
        (
            SYNC_EVENTS,
            4,
            2,
            SyncCoalesced(source_id=SRC, occurred_at=at(2.5), request_ids=["r3"], job_id=JOB2, mode="incremental"),
        ),
        (
            SYNC_EVENTS,
            4,
            3,
            SyncDeduplicated(
                source_id=SRC,
                occurred_at=at(2.7),
                request_ids=["r4"],
                job_id=JOB1,
                idempotency_key="git:demo|full|manual|-",
                held_by_job_id=JOB1,
                held_status="running",
            ),
        ),
        (
            SYNC_EVENTS,
            4,
            4,
            SyncStarted(
                source_id=SRC,
                occurred_at=at(4),
                request_ids=["r2", "r3"],
                job_id=JOB2,
                mode="incremental",
                trigger="push",
                deadline=at(3604),
            ),
        ),
        (
            SYNC_EVENTS,
            4,
            5,
            SyncCancelled(source_id=SRC, occurred_at=at(5), request_ids=["r2", "r3"], job_id=JOB2, reason="retired"),
        ),
        (
            SYNC_EVENTS,
            0,
            0,
            SyncRejected(source_id="git:never", occurred_at=at(6), request_ids=["r5"], reason="unknown source"),
        ),
    ]


def completion_history():
    return [
        (
            SYNC_COMPLETED,
            4,
            0,
            SyncCompleted(
                job_id=JOB1,
                source_id=SRC,
                request_ids=["r1"],
                mode="full",
                trigger="manual",
                status="succeeded",
                commit="c1",
                files_listed=7,
                processed=6,
                skipped=1,
                documents_written=7,
                bytes=900,
                batches=1,
                started_at=at(1),
                finished_at=at(3),
                duration_ms=2000,
            ),
        ),
        (
            SYNC_COMPLETED,
            4,
            1,
            SyncCompleted(
                job_id=JOB2,
                source_id=SRC,
                request_ids=["r2", "r3"],
                mode="incremental",
                trigger="push",
                status="cancelled",
                error="cancelled: retired",
                files_listed=4,
                processed=2,
                batches=1,
                started_at=at(4),
                finished_at=at(5),
                duration_ms=1000,
            ),
        ),
    ]


# --- the projection functions against PostgreSQL ------------------------------------------------


async def test_source_events_project_into_sources_and_other_control_events_are_skipped(settings):
    outcomes = await project(settings, control_history())
    assert outcomes == [
        APPLIED,
        NOT_PROJECTED,
        NOT_PROJECTED,
        APPLIED,
        NOT_PROJECTED,
        APPLIED,
        APPLIED,
        NO_ROW,
        APPLIED,
    ]
    demo, github = await rows(settings, "sources")
    assert (demo["source_id"], demo["source_type"], demo["name"], demo["status"], demo["status_reason"]) == (
        SRC,
        "git",
        "demo-renamed",
        "disconnected",
        "retired",
    )
    assert demo["config"] == {"path": "/repo", "branch": "dev"}
    assert (demo["config_status"], demo["config_path"], demo["config_commit"], demo["config_error"]) == (
        "configured",
        ".hookstream.yml",
        "c9",
        None,
    )
    assert (demo["config_rules"], demo["config_job_id"]) == ({"include": ["docs/**"], "exclude": []}, JOB1)
    assert demo["updated_at"] == at(5)
    assert (github["source_id"], github["status"], github["config"]["installation_id"]) == ("github:42", "connected", 7)
    # Skipped records take no transaction; the fence holds each partition's last source event.
    fences = {
        (r["topic"], r["partition"]): r["offset"]
        for r in await rows(settings, "applied_offsets")
        if r["consumer"] == SOURCES_CONSUMER
    }
    assert fences == {(settings.topic(CONTROL), 4): 6, (settings.topic(CONTROL), 1): 1}


async def test_lifecycle_events_and_completions_project_into_sync_jobs_and_requests(settings):
    await project(settings, lifecycle_history() + completion_history())
    job1, job2 = await rows(settings, "sync_jobs")
    assert (job1["status"], job1["mode"], job1["trigger"], job1["request_ids"], job1["commit"]) == (
        "succeeded",
        "full",
        "manual",
        ["r1"],
        "c1",
    )
    assert (
        job1["files_listed"],
        job1["processed"],
        job1["skipped"],
        job1["documents_written"],
        job1["bytes"],
        job1["batches"],
    ) == (7, 6, 1, 7, 900, 1)
    assert (job1["queued_at"], job1["started_at"], job1["finished_at"], job1["duration_ms"], job1["deadline"]) == (
        None,
        at(1),
        at(3),
        2000,
        at(3601),
    )
    assert (job2["status"], job2["mode"], job2["trigger"], job2["request_ids"], job2["error"]) == (
        "cancelled",
        "incremental",
        "push",
        ["r2", "r3"],
        "cancelled: retired",
    )
    assert (job2["queued_at"], job2["started_at"], job2["cancelled_at"], job2["cancel_reason"], job2["processed"]) == (
        at(2),
        at(4),
        at(5),
        "retired",
        2,
    )
    answers = {r["request_id"]: (r["answer"], r["job_id"]) for r in await rows(settings, "sync_requests")}
    assert answers == {
        "r1": ("started", JOB1),
        "r2": ("queued", JOB2),
        "r3": ("coalesced", JOB2),
        "r4": ("deduplicated", JOB1),
        "r5": ("rejected", None),
    }


async def test_consuming_the_same_records_again_changes_nothing(settings):
    records = control_history() + lifecycle_history() + completion_history()
    await project(settings, records)
    before = await read_model(settings)
    again = await project(settings, records)
    assert set(again) == {ALREADY_APPLIED, NOT_PROJECTED}
    # Each record twice in a row, as after a crash between the write and the offset commit.
    assert set(await project(settings, [r for r in records[:3] for _ in (0, 1)])) <= {ALREADY_APPLIED, NOT_PROJECTED}
    assert await read_model(settings) == before


async def test_replaying_the_topics_into_a_fresh_schema_gives_the_same_rows_whatever_the_interleaving(settings):
    # Live: completions consumed ahead of the lifecycle events (two topics, no order between them).
    control, lifecycle, completed = control_history(), lifecycle_history(), completion_history()
    await project(settings, control + completed + lifecycle)
    live = await read_model(settings)
    # Replay from offset 0: each topic in turn, then interleaved one record at a time.
    for order in (
        control + lifecycle + completed,
        [r for pair in zip_longest(lifecycle, completed) for r in pair if r is not None] + control,
    ):
        rebuilt = await fresh_schema(settings)
        await project(rebuilt, order)
        assert await read_model(rebuilt) == live


async def test_a_sync_started_replayed_after_the_completion_does_not_regress_the_job(settings):
    started, completed = lifecycle_history()[0], completion_history()[0]
    await project(settings, [started, completed])
    # The same SyncStarted produced again (at-least-once producer): another offset, past the fence.
    assert await project(settings, [(SYNC_EVENTS, 4, 9, started[3])]) == [APPLIED]
    [job] = [r for r in await rows(settings, "sync_jobs") if r["job_id"] == JOB1]
    assert (job["status"], job["finished_at"], job["processed"]) == ("succeeded", at(3), 6)


async def test_two_consumers_racing_on_a_new_job_merge_into_one_row(settings):
    # Partition 4 of sync.events and of sync.completed may be held by two workers: both records land.
    for n in range(5):
        job = f"{SRC}:race{n}"
        started = SyncStarted(
            source_id=SRC,
            occurred_at=at(1),
            request_ids=[f"q{n}"],
            job_id=job,
            mode="full",
            trigger="manual",
            deadline=at(99),
        )
        completed = SyncCompleted(
            job_id=job,
            source_id=SRC,
            request_ids=[f"q{n}"],
            mode="full",
            trigger="manual",
            status="succeeded",
            processed=3,
            started_at=at(1),
            finished_at=at(2),
            duration_ms=1000,
        )
        results = await asyncio.gather(
            project(settings, [(SYNC_EVENTS, 4, 100 + n, started)]),
            project(settings, [(SYNC_COMPLETED, 4, 100 + n, completed)]),
        )
        assert results == [[APPLIED], [APPLIED]]
        [row] = [r for r in await rows(settings, "sync_jobs") if r["job_id"] == job]
        assert (row["status"], row["processed"], row["deadline"]) == ("succeeded", 3, at(99))


async def test_text_with_nul_characters_is_stored_not_crashed_on(settings):
    # The model refuses a NUL in a name now; a record written before that rule still reaches the projection.
    event = SourceConnected.model_construct(
        source_id="git:nul",
        occurred_at=at(0),
        source_type="git",
        name="a\x00b",
        config={"path": "/r\x00"},
        delivery=None,
    )
    assert await project(settings, [(CONTROL, 0, 0, event)]) == [APPLIED]
    [row] = await rows(settings, "sources")
    assert (row["name"], row["config"]) == ("a\ufffdb", {"path": "/r\ufffd"})


def test_the_consumer_names_are_the_agent_names():
    assert (SOURCES_CONSUMER, SYNC_JOBS_CONSUMER) == ("project_sources", "project_sync_jobs")


# --- behind a real worker ----------------------------------------------------------------------


async def test_a_live_worker_projects_a_real_sync_and_a_replay_of_its_topics_gives_the_same_rows(settings, tmp_path):
    repo = tmp_path / "repo"
    gitrepo.build_repo(repo, files=gitrepo.synthetic_files(45, seed=11))
    source = "git:live"
    first = requested(source, "full", request_id="live-1")
    worker = WorkerProcess(settings, tmp_path / "rocks", tmp_path / "worker.log").start()
    try:
        await send_control(settings, connected(source, repo), first)

        async def job_done():
            jobs = [r for r in await rows(settings, "sync_jobs") if r["source_id"] == source]
            assert worker.alive(), worker.log_tail()
            return jobs if jobs and jobs[0]["status"] == "succeeded" else None

        [job] = await wait_until(job_done, timeout=90, interval=0.3, what="a succeeded sync_jobs row")
        [(_, completed, _, _)] = await read_all(settings, SYNC_COMPLETED, min_count=1, timeout=10, idle=0.3)
        assert (job["job_id"], job["request_ids"], job["mode"], job["trigger"]) == (
            completed.job_id,
            ["live-1"],
            "full",
            "manual",
        )
        for column in (
            "files_listed",
            "processed",
            "failed",
            "deleted",
            "skipped",
            "documents_written",
            "bytes",
            "batches",
            "duration_ms",
            "commit",
            "started_at",
            "finished_at",
        ):
            assert job[column] == getattr(completed, column), column
        assert job["files_listed"] == 45 and job["deadline"] is not None

        await send_control(settings, disconnected(source))

        async def source_disconnected():
            found = [r for r in await rows(settings, "sources") if r["source_id"] == source]
            return found if found and found[0]["status"] == "disconnected" else None

        [row] = await wait_until(source_disconnected, timeout=30, what="the source disconnected in `sources`")
        assert (row["source_type"], row["config"], row["status_reason"]) == ("git", {"path": str(repo)}, "test")
        answers = await wait_until(lambda: rows(settings, "sync_requests"), timeout=30, what="the request's answer")
        assert [(a["request_id"], a["answer"], a["job_id"]) for a in answers] == [("live-1", "started", job["job_id"])]
    finally:
        worker.stop()

    # Invariant 6: the three topics replayed from offset 0 into an empty schema give the live rows.
    records = []
    for logical in (CONTROL, SYNC_EVENTS, SYNC_COMPLETED):
        for _, record, partition, offset in await read_all(settings, logical, min_count=1, timeout=20, idle=0.5):
            records.append((logical, partition, offset, record))
    rebuilt = await fresh_schema(settings)
    await project(rebuilt, records)
    assert await read_model(rebuilt) == await read_model(settings)
