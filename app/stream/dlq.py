"""`project_dead_letters`: fold `hookstream.dlq` into the PostgreSQL `dlq` table.

A thin shell: decode, then in one offset-fenced transaction read the row,
`core.dlq.fold` the record into it and write it back. Re-consuming a record
(a crash before the commit, a replay) is skipped by the fence, so attempts
count failures, not deliveries of a failure record.

A record of the topic that does not decode or that PostgreSQL refuses is
dead-lettered like on every topic: the dead letter is a record of this topic
again, made by hookstream, and projects (its text is ours or stripped of NUL).
If even that one cannot be projected, the chain stops there: it is counted in
`hookstream_dlq_records_unprojectable` and stays on the topic.
"""

from __future__ import annotations

import functools
import logging
from typing import cast

from prometheus_client import Counter
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from app import codec
from app.core import dlq
from app.core.poison import CannotApply, reason_of
from app.events import DeadLettered, RedriveAccepted
from app.store import dead_letters as dead_letter_rows
from app.store.projection import apply_with_retry
from app.stream import faust_tuning
from app.stream.app import Worker
from app.stream.poison import DeadLetters, is_infrastructure

log = logging.getLogger(__name__)

DLQ = "hookstream.dlq"
CONSUMER = "project_dead_letters"


async def fold_into_row(conn: AsyncConnection, record: DeadLettered | RedriveAccepted) -> dlq.DeadLetterRow | None:
    """Read the record's row (locked), fold the record into it, write it back. Returns the new row."""
    row = await dead_letter_rows.locked(conn, record.dead_letter_id)
    after = dlq.fold(row, record)
    if after is None:
        log.warning(
            "%s for %s (%s): no dead letter with that id to retire", record.type, record.dead_letter_id, record.key
        )
        return None
    if after != row:
        await dead_letter_rows.write(conn, after)
    return after


async def project_dead_letter(
    pool: AsyncConnectionPool, topic: str, partition: int, offset: int, record: DeadLettered | RedriveAccepted
) -> bool:
    """Apply one consumed record exactly once; False when its offset was applied already."""

    async def apply(conn: AsyncConnection) -> None:
        await fold_into_row(conn, record)

    return await apply_with_retry(pool, CONSUMER, topic, partition, offset, apply)


def register(worker: Worker) -> None:
    app = worker.app
    source = worker.topic(DLQ)
    registry = worker.metrics.registry
    projected = Counter(
        "hookstream_dlq_records_projected",
        "hookstream.dlq records applied to the dlq table",
        ["type"],
        registry=registry,
    )
    unprojectable = Counter(
        "hookstream_dlq_records_unprojectable",
        "dead letters of hookstream.dlq records that could not be projected either (the chain stops)",
        registry=registry,
    )
    dead_letters = DeadLetters.of(worker, CONSUMER, DLQ)

    async def apply(message) -> None:
        try:
            record = cast(DeadLettered | RedriveAccepted, codec.decode_topic(DLQ, message.value))
        except codec.DecodeError as exc:
            raise CannotApply("decode", str(exc)) from None
        try:
            pool = await worker.pool()
            applied = await project_dead_letter(pool, message.topic, message.partition, message.offset, record)
        except Exception as exc:  # refused by PostgreSQL: dead-lettered (below), or the chain stops
            if is_infrastructure(exc):
                raise
            if isinstance(record, DeadLettered) and record.source_topic == message.topic:
                # The dead letter of a record of this very topic could not be projected either: a
                # dead letter of it would be one more such record. It stays on the topic, counted.
                unprojectable.inc()
                log.error(
                    "dead letter %s of %s[%s]@%s cannot be projected: %s",
                    record.dead_letter_id,
                    record.source_topic,
                    record.source_partition,
                    record.source_offset,
                    reason_of(exc),
                )
                return
            raise CannotApply("project", reason_of(exc)) from exc
        if applied:
            projected.labels(record.type).inc()

    @app.agent(source, name=CONSUMER, concurrency=1)
    async def project_dead_letters(stream):
        async for event in faust_tuning.events(stream):
            await dead_letters.guard(event.message, functools.partial(apply, event.message), "project")
