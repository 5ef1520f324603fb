"""`project_delivery_ledger`: fold `hookstream.deliveries.outcomes` into the ledger tables; prune them.

A thin shell: decode, then per partition one offset-fenced transaction for a run
of records (`app.store.projection.apply_run_once`), in which `app.store.ledger`
applies the records above the fence. The stream is read in runs
(`Stream.take_events`), which acks a run's events only after the body returned:
every record is written before its offset can be committed.

Retention (app/store/retention.py: the workers' timer and `hookstream db prune`) deletes
the ledger's rows past HOOKSTREAM_RETENTION_DAYS (`prune_ledger`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from app import codec
from app.core.ledger import OUTCOMES_TOPIC
from app.events import DeliveryOutcome
from app.store import ledger as store
from app.store.projection import apply_run_with_retry
from app.stream.app import Worker

log = logging.getLogger(__name__)

CONSUMER = "project_delivery_ledger"
DELIVERIES = "hookstream.deliveries"
RUN = 500  # records per transaction at most
RUN_WAIT = 0.05  # seconds a run waits to fill


def _deliveries_topic(outcomes_topic: str) -> str:
    """The deliveries topic beside an outcomes topic (same prefix): copy ids name it."""
    return outcomes_topic[: -len(OUTCOMES_TOPIC)] + DELIVERIES


async def project_outcomes(
    pool: AsyncConnectionPool, topic: str, partition: int, records: Sequence[tuple[int, DeliveryOutcome]]
) -> int:
    """Apply a run of one partition's records (offset order) exactly once; returns the new copies."""
    if not records:
        return 0
    applied = 0
    deliveries = _deliveries_topic(topic)

    async def apply(conn: AsyncConnection, fence: int) -> None:
        nonlocal applied
        applied = await store.apply_outcomes(conn, deliveries, partition, [(o, r) for o, r in records if o > fence])

    await apply_run_with_retry(pool, CONSUMER, topic, partition, records[-1][0], apply)
    return applied


async def project_outcome(
    pool: AsyncConnectionPool, topic: str, partition: int, offset: int, record: DeliveryOutcome
) -> str:
    """One record: what `hookstream projections rebuild` calls (the live agent applies runs of them)."""
    return "applied" if await project_outcomes(pool, topic, partition, [(offset, record)]) else "already_applied"


def register(worker: Worker) -> None:
    app = worker.app
    source = worker.topic(OUTCOMES_TOPIC)
    projected = worker.metrics.projected

    @app.agent(source, name=CONSUMER, concurrency=1)
    async def project_delivery_ledger(stream):
        async for events in stream.take_events(RUN, within=RUN_WAIT):
            runs: dict[tuple[str, int], list[tuple[int, DeliveryOutcome]]] = defaultdict(list)
            for event in events:
                message = event.message
                try:
                    runs[(message.topic, message.partition)].append(
                        (message.offset, codec.decode(DeliveryOutcome, message.value))
                    )
                except codec.DecodeError as exc:
                    projected.labels(CONSUMER, "undecodable").inc()
                    log.error(
                        "undecodable record on %s[%d]@%d, not projected: %s",
                        message.topic,
                        message.partition,
                        message.offset,
                        exc,
                    )
            pool = await worker.pool()
            for (topic, partition), records in runs.items():
                records.sort(key=_offset)
                applied = await project_outcomes(pool, topic, partition, records)
                projected.labels(CONSUMER, "applied").inc(applied)
                if len(records) > applied:
                    projected.labels(CONSUMER, "already_applied").inc(len(records) - applied)


def _offset(item: tuple[int, Any]) -> int:
    return item[0]
