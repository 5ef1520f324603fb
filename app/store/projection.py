"""Offset-fenced projections: exactly-once effects from at-least-once consumption.

Each consumed record is applied in one transaction together with its
topic/partition/offset in `applied_offsets`; a record at or below the stored
offset was applied already and is skipped. Replaying a topic into an empty
schema therefore rebuilds the same rows (DESIGN §5, invariant 6).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

import psycopg
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

Apply = Callable[[psycopg.AsyncConnection], Awaitable[None]]


async def apply_once(conn: psycopg.AsyncConnection, consumer: str, topic: str, partition: int, offset: int, apply: Apply) -> bool:
    """Run `apply(conn)` and record the offset in one transaction. False when already applied."""
    async with conn.transaction():
        # Make the fence row exist first, so FOR UPDATE below always locks something: two
        # consumers overlapping in a rebalance serialize even on a partition's first record.
        await conn.execute(
            'INSERT INTO applied_offsets (consumer, topic, partition, "offset") VALUES (%s, %s, %s, -1) '
            "ON CONFLICT (consumer, topic, partition) DO NOTHING",
            (consumer, topic, partition),
        )
        row = await (await conn.execute(
            'SELECT "offset" FROM applied_offsets WHERE consumer = %s AND topic = %s AND partition = %s FOR UPDATE',
            (consumer, topic, partition),
        )).fetchone()
        if row is not None and row[0] >= offset:
            return False
        await apply(conn)
        await conn.execute(
            'INSERT INTO applied_offsets (consumer, topic, partition, "offset") VALUES (%s, %s, %s, %s) '
            'ON CONFLICT (consumer, topic, partition) DO UPDATE SET "offset" = EXCLUDED."offset", updated_at = now()',
            (consumer, topic, partition, offset),
        )
    return True


async def apply_with_retry(pool: AsyncConnectionPool, consumer: str, topic: str, partition: int, offset: int,
                           apply: Apply, max_backoff: float = 5.0) -> bool:
    """`apply_once`, retried while PostgreSQL is unreachable: the agent blocks (and does not ack)
    rather than skip a record, so nothing is counted that was not written."""
    backoff = 0.1
    while True:
        try:
            async with pool.connection() as conn:
                return await apply_once(conn, consumer, topic, partition, offset, apply)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            log.warning("PostgreSQL unavailable (%s); retrying %s %s[%d]@%d in %.1fs",
                        exc.__class__.__name__, consumer, topic, partition, offset, backoff)
            await asyncio.sleep(backoff)
            backoff = min(max_backoff, backoff * 2)
