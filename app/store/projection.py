"""Offset-fenced projections: exactly-once effects from at-least-once consumption.

Each consumed record is applied in one transaction together with its
topic/partition/offset in `applied_offsets`; a record at or below the stored
offset was applied already and is skipped. Replaying a topic into an empty
schema therefore rebuilds the same rows (DESIGN §5, invariant 6).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import psycopg
from psycopg_pool import AsyncConnectionPool

from app.store.db import retriable

log = logging.getLogger(__name__)

Apply = Callable[[psycopg.AsyncConnection], Awaitable[None]]
# For a run of records: called with the partition's fence (the highest applied offset, -1 for
# none), it applies the records above it.
ApplyRun = Callable[[psycopg.AsyncConnection, int], Awaitable[None]]


async def _locked_fence(conn: psycopg.AsyncConnection, consumer: str, topic: str, partition: int) -> int:
    """The partition's fence, its row locked until the transaction ends; made (at -1) if missing.

    One statement, one round trip: the insert makes the row exist, so a lock is always taken
    (two consumers overlapping in a rebalance serialize even on a partition's first record),
    and on conflict the no-op update locks the existing row and returns its offset.
    """
    row = await (
        await conn.execute(
            'INSERT INTO applied_offsets (consumer, topic, partition, "offset") VALUES (%s, %s, %s, -1) '
            'ON CONFLICT (consumer, topic, partition) DO UPDATE SET "offset" = applied_offsets."offset" '
            'RETURNING "offset"',
            (consumer, topic, partition),
        )
    ).fetchone()
    assert row is not None  # an INSERT ... RETURNING returns its row
    return int(row[0])


async def _store_fence(conn: psycopg.AsyncConnection, consumer: str, topic: str, partition: int, offset: int) -> None:
    await conn.execute(
        'INSERT INTO applied_offsets (consumer, topic, partition, "offset") VALUES (%s, %s, %s, %s) '
        'ON CONFLICT (consumer, topic, partition) DO UPDATE SET "offset" = EXCLUDED."offset", updated_at = now()',
        (consumer, topic, partition, offset),
    )


async def apply_once(
    conn: psycopg.AsyncConnection, consumer: str, topic: str, partition: int, offset: int, apply: Apply
) -> bool:
    """Run `apply(conn)` and record the offset in one transaction. False when already applied."""
    async with conn.transaction():
        if await _locked_fence(conn, consumer, topic, partition) >= offset:
            return False
        await apply(conn)
        await _store_fence(conn, consumer, topic, partition, offset)
    return True


async def apply_run_once(
    conn: psycopg.AsyncConnection, consumer: str, topic: str, partition: int, last_offset: int, apply: ApplyRun
) -> bool:
    """`apply_once` for a run of one partition's records ending at `last_offset`, in one transaction:
    `apply(conn, fence)` applies those above the fence. False when the whole run was applied already."""
    async with conn.transaction():
        fence = await _locked_fence(conn, consumer, topic, partition)
        if fence >= last_offset:
            return False
        await apply(conn, fence)
        await _store_fence(conn, consumer, topic, partition, last_offset)
    return True


async def apply_with_retry(
    pool: AsyncConnectionPool,
    consumer: str,
    topic: str,
    partition: int,
    offset: int,
    apply: Apply,
    max_backoff: float = 5.0,
) -> bool:
    """`apply_once`, retried while PostgreSQL is unreachable: the agent blocks (and does not ack)
    rather than skip a record, so nothing is counted that was not written."""
    return await _retried(
        pool,
        lambda conn: apply_once(conn, consumer, topic, partition, offset, apply),
        consumer,
        topic,
        partition,
        offset,
        max_backoff,
    )


async def apply_run_with_retry(
    pool: AsyncConnectionPool,
    consumer: str,
    topic: str,
    partition: int,
    last_offset: int,
    apply: ApplyRun,
    max_backoff: float = 5.0,
) -> bool:
    """`apply_run_once`, retried like `apply_with_retry`."""
    return await _retried(
        pool,
        lambda conn: apply_run_once(conn, consumer, topic, partition, last_offset, apply),
        consumer,
        topic,
        partition,
        last_offset,
        max_backoff,
    )


async def _retried(
    pool: AsyncConnectionPool,
    attempt: Callable[[psycopg.AsyncConnection], Awaitable[bool]],
    consumer: str,
    topic: str,
    partition: int,
    offset: int,
    max_backoff: float,
) -> bool:
    backoff = 0.1
    while True:
        try:
            async with pool.connection() as conn:
                return await attempt(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if not retriable(exc):
                raise
            log.warning(
                "PostgreSQL unavailable (%s); retrying %s %s[%d]@%d in %.1fs",
                exc.__class__.__name__,
                consumer,
                topic,
                partition,
                offset,
                backoff,
            )
            await asyncio.sleep(backoff)
            backoff = min(max_backoff, backoff * 2)


def fenced_insert(table: str, columns: tuple[str, ...], key: str) -> str:
    """One statement that applies a record whose whole effect is one insert-if-absent, offset-fenced.

    The fence row of (consumer, topic, partition) moves up to the record's offset, or the statement
    inserts nothing (the record was applied already); the row is inserted unless its `key` is
    there. It starts with the insert into `applied_offsets`, like `apply_once`'s transactions, so
    a projection rebuild's lock on that table holds it back the same way. Parameters: the row's
    columns, and `fence_consumer`, `fence_topic`, `fence_partition`, `fence_offset`. It answers
    (fence moved, row inserted). The names are the caller's constants.
    """
    names = ", ".join('"' + c + '"' for c in columns)
    values = ", ".join(f"%({c})s" for c in columns)
    return (
        'WITH fence AS (INSERT INTO applied_offsets (consumer, topic, partition, "offset") '
        "VALUES (%(fence_consumer)s, %(fence_topic)s, %(fence_partition)s, %(fence_offset)s) "
        'ON CONFLICT (consumer, topic, partition) DO UPDATE SET "offset" = EXCLUDED."offset", updated_at = now() '
        'WHERE applied_offsets."offset" < EXCLUDED."offset" RETURNING 1), '
        f'added AS (INSERT INTO "{table}" ({names}) SELECT {values} WHERE EXISTS (SELECT 1 FROM fence) '
        f'ON CONFLICT ("{key}") DO NOTHING RETURNING 1) '
        "SELECT (SELECT count(*) FROM fence), (SELECT count(*) FROM added)"
    )


async def insert_once_with_retry(
    pool: AsyncConnectionPool,
    consumer: str,
    topic: str,
    partition: int,
    offset: int,
    statement: str,
    row: dict[str, object],
    max_backoff: float = 5.0,
) -> tuple[bool, bool]:
    """Run a `fenced_insert` statement as its own transaction (one round trip, no BEGIN/COMMIT of
    its own: a third of `apply_once`'s cost on the orchestrator's path), retried like
    `apply_with_retry`. Returns (applied now, row inserted)."""
    params = {
        **row,
        "fence_consumer": consumer,
        "fence_topic": topic,
        "fence_partition": partition,
        "fence_offset": offset,
    }
    answer = (False, False)

    async def attempt(conn: psycopg.AsyncConnection) -> bool:
        nonlocal answer
        await conn.set_autocommit(True)
        try:
            found = await (await conn.execute(statement, params)).fetchone()
        finally:
            await conn.set_autocommit(False)
        answer = (bool(found and found[0]), bool(found and found[1]))
        return answer[0]

    await _retried(pool, attempt, consumer, topic, partition, offset, max_backoff)
    return answer
