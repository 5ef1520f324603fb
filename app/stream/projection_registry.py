"""The PostgreSQL projections: which agent folds which topics into which tables, with which function.

Each consumer's `project(pool, topic, partition, offset, record)` is the very
function its live agent calls for a decoded record: one offset-fenced
transaction (`app.store.projection`) against whatever schema the pool's
connections use. `hookstream projections rebuild` replays the topics through
it into a candidate schema, so a rebuild applies exactly what the agents apply.

A projection owns its tables (nothing else writes them) and the
`applied_offsets` rows of its consumers, and a topic is read by one consumer of
a projection: the rebuild moves those tables and rows together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

# The record is one of the consumer's topics' types, decoded by that topic's union (each
# projection declares its own member types, so the parameter is Any here).
Project = Callable[[AsyncConnectionPool, str, int, int, Any], Awaitable[Any]]

# The names, without importing the agents' modules (they import Faust): the CLI lists them in --help.
NAMES = ("sources", "sync_jobs", "dlq", "ledger")


@dataclass(frozen=True)
class Table:
    name: str
    key: str  # the primary key column
    # Columns --verify leaves out: bookkeeping a replay cannot reproduce (a wall-clock time).
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True)
class Consumer:
    name: str  # the agent's name, and the `consumer` of its fence rows
    topics: tuple[str, ...]  # logical names (topics/)
    project: Project


@dataclass(frozen=True)
class Projection:
    name: str
    summary: str
    consumers: tuple[Consumer, ...]
    tables: tuple[Table, ...]

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(t for c in self.consumers for t in c.topics)

    @property
    def consumer_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.consumers)

    def consumer_of(self, logical_topic: str) -> Consumer:
        return next(c for c in self.consumers if logical_topic in c.topics)


def projections() -> dict[str, Projection]:
    """Every projection by name, in `NAMES` order."""
    from app.stream import dlq, ledger
    from app.stream import projections as read_model

    found = (
        Projection(
            "sources",
            "sources: connection, config and config status per source",
            (Consumer(read_model.SOURCES_CONSUMER, (read_model.CONTROL,), read_model.project_source_event),),
            (Table("sources", "source_id"),),
        ),
        Projection(
            "sync_jobs",
            "sync_jobs, sync_requests, sync_batches and sync_records: every job's lifecycle, counts "
            "(live while it runs) and batches, every request's answer, and where each of their records is",
            (
                Consumer(
                    read_model.SYNC_JOBS_CONSUMER,
                    (read_model.SYNC_EVENTS, read_model.SYNC_COMPLETED),
                    read_model.project_sync_record,
                ),
                Consumer(read_model.PROGRESS_CONSUMER, (read_model.CONTROL,), read_model.project_progress_record),
            ),
            (
                Table("sync_jobs", "job_id"),
                Table("sync_requests", "request_id"),
                Table("sync_batches", "batch_id"),
                Table("sync_records", "record_id"),
            ),
        ),
        Projection(
            "dlq",
            "dlq: one row per dead letter, its attempts and whether a redrive retired it",
            (Consumer(dlq.CONSUMER, (dlq.DLQ,), dlq.project_dead_letter),),
            (Table("dlq", "dead_letter_id"),),
        ),
        Projection(
            "ledger",
            "delivery_copies and deliveries: every delivery copy the dedup stage consumed, and its outcome",
            (Consumer(ledger.CONSUMER, (ledger.OUTCOMES_TOPIC,), ledger.project_outcome),),
            (Table("delivery_copies", "copy_id"), Table("deliveries", "key")),
        ),
    )
    return {p.name: p for p in found}
