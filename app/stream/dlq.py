"""`project_dead_letters`: fold `hookstream.dlq` into the PostgreSQL `dlq` table.

A thin shell: decode, then in one offset-fenced transaction read the row,
`core.dlq.fold` the record into it and write it back. Re-consuming a record
(a crash before the commit, a replay) is skipped by the fence, so attempts
count failures, not deliveries of a failure record.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from app import codec
from app.core import dlq
from app.events import DeadLettered, RedriveAccepted
from app.store.projection import apply_with_retry
from app.stream import faust_tuning
from app.stream.app import Worker

log = logging.getLogger(__name__)

DLQ = "hookstream.dlq"
CONSUMER = "project_dead_letters"

_SELECT_FOR_UPDATE = sql.SQL("SELECT {} FROM dlq WHERE dead_letter_id = %s FOR UPDATE").format(
    sql.SQL(", ").join(map(sql.Identifier, dlq.COLUMNS))
)
_UPSERT = sql.SQL("INSERT INTO dlq ({}) VALUES ({}) ON CONFLICT (dead_letter_id) DO UPDATE SET {}").format(
    sql.SQL(", ").join(map(sql.Identifier, dlq.COLUMNS)),
    sql.SQL(", ").join(sql.Placeholder(c) for c in dlq.COLUMNS),
    sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in dlq.COLUMNS if c != "dead_letter_id"
    ),
)


async def fold_into_row(conn: AsyncConnection, record: DeadLettered | RedriveAccepted) -> dlq.DeadLetterRow | None:
    """Read the record's row (locked), fold the record into it, write it back. Returns the new row."""
    cursor = conn.cursor(row_factory=dict_row)
    found = await (await cursor.execute(_SELECT_FOR_UPDATE, (record.dead_letter_id,))).fetchone()
    row = dlq.from_columns(found) if found is not None else None
    after = dlq.fold(row, record)
    if after is None:
        log.warning("%s for %s (%s): no dead letter with that id to retire",
                    record.type, record.dead_letter_id, record.key)
        return None
    if after != row:
        values = dlq.to_columns(after)
        values["original"] = Jsonb(values["original"]) if values["original"] is not None else None
        await conn.execute(_UPSERT, values)
    return after


async def project_dead_letter(pool: AsyncConnectionPool, topic: str, partition: int, offset: int,
                              record: DeadLettered | RedriveAccepted) -> bool:
    """Apply one consumed record exactly once; False when its offset was applied already."""

    async def apply(conn: AsyncConnection) -> None:
        await fold_into_row(conn, record)

    return await apply_with_retry(pool, CONSUMER, topic, partition, offset, apply)


def register(worker: Worker) -> None:
    app = worker.app
    source = worker.topic(DLQ)
    registry = worker.metrics.registry
    projected = Counter("hookstream_dlq_records_projected", "hookstream.dlq records applied to the dlq table",
                        ["type"], registry=registry)
    undecodable = Counter("hookstream_dlq_records_undecodable",
                          "hookstream.dlq records that did not decode and were not projected", registry=registry)

    @app.agent(source, name=CONSUMER, concurrency=1)
    async def project_dead_letters(stream):
        async for event in faust_tuning.events(stream):
            message = event.message
            try:
                record = codec.decode_topic(DLQ, message.value)
            except codec.DecodeError as exc:
                # A dead letter cannot itself be dead-lettered: count it and say where it is.
                undecodable.inc()
                log.error("undecodable record on %s[%d]@%d, not projected: %s",
                          message.topic, message.partition, message.offset, exc)
                continue
            pool = await worker.pool()
            if await project_dead_letter(pool, message.topic, message.partition, message.offset, record):
                projected.labels(record.type).inc()
