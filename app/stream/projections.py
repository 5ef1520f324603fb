"""`project_sources` and `project_sync_jobs`: fold the sync topics into the PostgreSQL read model.

Thin shells around `app.core.read_model`: decode, then in one offset-fenced
transaction (`app.store.projection`) read the row, merge the record into it and
write it back. A record re-consumed after a crash or a replay is skipped by the
fence, so a rebuild into an empty schema gives the same rows (docs/architecture.md, effects outside Kafka).

- `project_sources` reads `hookstream.sync.control` into `sources`. Most of that
  topic is sync traffic (requests, plans that did not read the config file, one
  `BatchCompleted` per batch) that no row depends on: those records are skipped
  before any transaction and counted
  `not_projected`. Skipping them needs no fence: the fence keeps the highest
  applied offset per partition, and the next source event stores a higher one.
  It runs inside `orchestrate_syncs`, the control topic's one agent (see
  `project_sources_record`).
- `project_sync_jobs` reads `hookstream.sync.events` and `hookstream.sync.completed`
  into `sync_jobs` (and the first answer of each request into `sync_requests`).
  Two topics have no order between them, and two workers may hold the same
  partition number of each: rows are locked (or inserted first) before they are
  merged, and the merge itself does not depend on order.
- `project_sync_progress` reads the job records of `hookstream.sync.control`
  (requests, plans, batch completions, plan failures, deadlines) into the same
  projection: `sync_batches` (each batch index's first completion, from which a
  running job's counts are summed when read) and the plan's batch count in
  `sync_jobs`. Like `project_sources` it runs inside `orchestrate_syncs` (a batch
  completion costs it one fenced insert), and skips the other control records.
- Both put the position of each record they apply in `sync_records` (the batch
  completions' are in `sync_batches`): `hookstream trace` reads Kafka there only.
- A record that does not decode, or that PostgreSQL refuses (its transaction rolls
  back, fence and all), is dead-lettered and counted (`app.stream.poison`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from app import codec
from app.core import read_model
from app.core.labels import one_of
from app.core.poison import CannotApply
from app.events import BatchCompleted, Record, SyncCompleted, SyncPlanned
from app.store import sources as source_rows
from app.store import sync_records
from app.store.projection import apply_with_retry
from app.stream import faust_tuning
from app.stream.app import Worker
from app.stream.poison import DeadLetters, stage

log = logging.getLogger(__name__)

CONTROL = "hookstream.sync.control"
SYNC_EVENTS = "hookstream.sync.events"
SYNC_COMPLETED = "hookstream.sync.completed"
SOURCES_CONSUMER = "project_sources"
SYNC_JOBS_CONSUMER = "project_sync_jobs"
PROGRESS_CONSUMER = "project_sync_progress"

# Outcomes, as counted: the record changed rows, was applied already (the fence),
# changed nothing by rule (an event for a source that never connected), or is not
# this projection's concern.
APPLIED = "applied"
ALREADY_APPLIED = "already_applied"
NO_ROW = "no_row"
NOT_PROJECTED = "not_projected"
UNDECODABLE = "undecodable"
DUPLICATE_BATCH = "duplicate_batch"  # a batch index that had reported already: counted once


# --- sources -----------------------------------------------------------------------------------


def is_source_event(record: Record) -> bool:
    return read_model.is_source_event(record)


async def merge_source_event(conn: AsyncConnection, event: read_model.SourceEvent) -> str:
    row = await source_rows.locked(conn, event.source_id)
    after = read_model.source_after(row, event)
    if after is None:
        return NO_ROW
    if after != row:
        await source_rows.write(conn, after)
    return APPLIED


async def project_source_event(
    pool: AsyncConnectionPool, topic: str, partition: int, offset: int, record: Record
) -> str:
    """Apply one control record to `sources` exactly once; returns the outcome."""
    if not is_source_event(record):
        return NOT_PROJECTED
    outcome = ALREADY_APPLIED

    async def apply(conn: AsyncConnection) -> None:
        nonlocal outcome
        outcome = await merge_source_event(conn, record)  # type: ignore[arg-type]

    await apply_with_retry(pool, SOURCES_CONSUMER, topic, partition, offset, apply)
    return outcome


# --- sync jobs ---------------------------------------------------------------------------------


async def merge_job(
    conn: AsyncConnection, job_id: str, merge: Callable[[read_model.SyncJobRow | None], read_model.SyncJobRow]
) -> None:
    """Lock the job's row (inserting it first if there is none), merge into it, write it back."""
    row = await sync_records.locked_job(conn, job_id)
    if row is None:
        if await sync_records.insert_job(conn, merge(None)):
            return
        # Another consumer inserted it between our read and our write: merge into theirs.
        row = await sync_records.locked_job(conn, job_id)
        assert row is not None
    after = merge(row)
    if after != row:
        await sync_records.write_job(conn, after)


async def merge_job_event(conn: AsyncConnection, event: read_model.JobEvent) -> None:
    await merge_job(conn, event.job_id, lambda row: read_model.job_after(row, event))  # type: ignore[arg-type]


async def record_answers(conn: AsyncConnection, event: read_model.AnswerEvent) -> None:
    await sync_records.add_answers(conn, read_model.request_answers(event))


async def merge_sync_record(conn: AsyncConnection, record: Record, topic: str, partition: int, offset: int) -> str:
    if isinstance(record, read_model.JOB_EVENTS) and record.job_id is not None:
        await merge_job_event(conn, record)
    if isinstance(record, read_model.ANSWER_EVENTS):
        await record_answers(conn, record)
    await sync_records.add_record(conn, read_model.record_row(record, topic, partition, offset))
    return APPLIED


async def project_sync_record(
    pool: AsyncConnectionPool, topic: str, partition: int, offset: int, record: Record
) -> str:
    """Apply one lifecycle event or completion exactly once; returns the outcome."""
    outcome = ALREADY_APPLIED

    async def apply(conn: AsyncConnection) -> None:
        nonlocal outcome
        outcome = await merge_sync_record(conn, record, topic, partition, offset)

    await apply_with_retry(pool, SYNC_JOBS_CONSUMER, topic, partition, offset, apply)
    return outcome


# --- sync progress (control records of jobs and requests) -------------------------------------


def is_progress_record(record: Record) -> bool:
    return isinstance(record, (BatchCompleted, *read_model.CONTROL_JOB_RECORDS))


async def merge_progress_record(conn: AsyncConnection, record: Record, topic: str, partition: int, offset: int) -> str:
    await sync_records.add_record(conn, read_model.record_row(record, topic, partition, offset))
    if isinstance(record, SyncPlanned):
        await merge_job(conn, record.job_id, lambda row: read_model.job_planned(row, record))
    return APPLIED


async def project_progress_record(
    pool: AsyncConnectionPool, topic: str, partition: int, offset: int, record: Record
) -> str:
    """Apply one job or request record of the control topic exactly once; returns the outcome."""
    if not is_progress_record(record):
        return NOT_PROJECTED
    if isinstance(record, BatchCompleted):
        # One row in one statement, no job row to lock: the orchestrator folds every batch
        # completion, and a running job's counts are summed from these rows when read.
        applied, added = await sync_records.add_batch(
            pool, PROGRESS_CONSUMER, read_model.batch_row(record, topic, partition, offset)
        )
        return (APPLIED if added else DUPLICATE_BATCH) if applied else ALREADY_APPLIED
    outcome = ALREADY_APPLIED

    async def apply(conn: AsyncConnection) -> None:
        nonlocal outcome
        outcome = await merge_progress_record(conn, record, topic, partition, offset)

    await apply_with_retry(pool, PROGRESS_CONSUMER, topic, partition, offset, apply)
    return outcome


# --- agents ------------------------------------------------------------------------------------


async def project_sources_record(worker: Worker, message: Any, record: Record | None) -> None:
    """`project_sources` for one control record, called by `orchestrate_syncs` for each it consumes.

    Not an agent of its own: Faust hangs a rebalance (and a clean stop) for ever when two
    agents read one topic. It counts a record once per agent, clears the agents' queues
    on a revocation without releasing the copies they held, then waits until every record
    an agent began is finished by all (`Consumer.wait_empty`). Found by
    tests/faults/test_rebalance.py: a second worker joining under load never got a partition.
    """
    metrics = worker.metrics
    projected = metrics.projected
    if record is None:
        projected.labels(SOURCES_CONSUMER, UNDECODABLE).inc()
        return
    # A record may concern both projections (a SyncPlanned: the job's plan, and the source's config file).
    if is_progress_record(record):
        outcome = await project_progress_record(
            await worker.pool(), message.topic, message.partition, message.offset, record
        )
        projected.labels(PROGRESS_CONSUMER, outcome).inc()
        if outcome == APPLIED and isinstance(record, BatchCompleted):
            files = metrics.files
            files.labels("processed").inc(record.processed)
            files.labels("failed").inc(record.failed)
            files.labels("deleted").inc(record.deleted)
            files.labels("skipped").inc(record.skipped)
    if not is_source_event(record):
        if not is_progress_record(record):
            projected.labels(SOURCES_CONSUMER, NOT_PROJECTED).inc()
        return
    outcome = await project_source_event(await worker.pool(), message.topic, message.partition, message.offset, record)
    projected.labels(SOURCES_CONSUMER, outcome).inc()


def register(worker: Worker) -> None:
    app, settings = worker.app, worker.settings
    projected = worker.metrics.projected
    sync_topics = {settings.topic(name): name for name in (SYNC_EVENTS, SYNC_COMPLETED)}
    dead_letters = DeadLetters(worker, SYNC_JOBS_CONSUMER, sync_topics)

    async def apply(message: Any) -> None:
        try:
            record = codec.decode_topic(sync_topics[message.topic], message.value)
        except codec.DecodeError as exc:
            projected.labels(SYNC_JOBS_CONSUMER, UNDECODABLE).inc()
            raise CannotApply("decode", str(exc)) from None
        with stage("project"):  # PostgreSQL refused it: the transaction (and its fence) rolled back
            outcome = await project_sync_record(
                await worker.pool(), message.topic, message.partition, message.offset, record
            )
        projected.labels(SYNC_JOBS_CONSUMER, outcome).inc()
        if outcome == APPLIED:
            count_sync_record(worker.metrics, record)

    sync_channel = app.topic(
        *sync_topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    @app.agent(sync_channel, name=SYNC_JOBS_CONSUMER, concurrency=1)
    async def project_sync_jobs(stream):
        async for event in faust_tuning.events(stream):
            await dead_letters.guard(event.message, functools.partial(apply, event.message), "project")


def count_sync_record(metrics: Any, record: Record) -> None:
    """A lifecycle event or completion applied once: the completions and the answers it counts."""
    if isinstance(record, SyncCompleted):
        metrics.syncs_completed.labels(record.status).inc()
        metrics.sync_seconds.labels(record.status).observe(record.duration_ms / 1000)
    if isinstance(record, read_model.ANSWER_EVENTS):
        answer = read_model.request_answers(record)
        if answer:
            metrics.requests_answered.labels(one_of(answer[0].answer, ANSWERS)).inc(len(answer))


ANSWERS = ("started", "queued", "coalesced", "deduplicated", "rejected")
