"""`hookstream trace` and the console's delivery page: the read model first, then Kafka at its offsets.

`gather` resolves an id (a delivery id or key, a request id, a job id) in the
read model and follows the ids its rows name: a delivery's requests, a request's
answer and job, a job's requests (every one a coalesced job served) and their
deliveries, two rounds deep. `read_records` then reads exactly the recorded
offsets back (no scan of a topic: one seek per gap between wanted offsets of a
partition) to say when each record was written and that it is there.
`app.core.trace` turns the rows into the chain.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from aiokafka.structs import TopicPartition
from psycopg import AsyncConnection

from app.core import trace as core
from app.core.ledger import OUTCOMES_TOPIC, CopyRow, DeliveryRow
from app.core.read_model import RequestAnswer, SyncJobRow
from app.kafka_reader import ReadError, TopicReader
from app.settings import Settings
from app.store import ledger as ledger_store
from app.store import sync_records

log = logging.getLogger(__name__)

SEARCHED = (
    "the delivery ledger (delivery keys, delivery ids, the requests deliveries produced), sync_jobs (job ids), "
    "sync_requests and sync_records (request ids)"
)


class TraceError(Exception):
    """Kafka could not be read; the message says what to do."""


@dataclass
class Trace:
    ident: str
    deliveries: list[DeliveryRow] = field(default_factory=list)
    copies: list[CopyRow] = field(default_factory=list)
    jobs: list[SyncJobRow] = field(default_factory=list)
    job: SyncJobRow | None = None
    answers: dict[str, RequestAnswer] = field(default_factory=dict)
    hops: list[core.Hop] = field(default_factory=list)

    def as_json(self) -> dict:
        return core.as_json(self.ident, self.hops, self.job, self.jobs, self.deliveries)


async def gather(conn: AsyncConnection, settings: Settings, ident: str) -> Trace | None:
    """The trace of `ident` from the read model alone; None when no row names it."""
    keys: set[str] = set()
    requests: set[str] = set()
    job_ids: set[str] = set()
    deliveries = {d.key: d for d in await ledger_store.find(conn, ident)}
    jobs = {j.job_id: j for j in await sync_records.jobs(conn, [ident])}
    answers = {a.request_id: a for a in await sync_records.answers(conn, [ident])}
    named = await sync_records.records(conn, [], [ident], [ident])
    if not (deliveries or jobs or answers or named):
        return None
    job_ids |= set(jobs) | {a.job_id for a in answers.values() if a.job_id} | {r.job_id for r in named if r.job_id}
    requests |= set(answers) | {i for r in named for i in r.request_ids}
    keys |= set(deliveries) | {r.delivery_key for r in named if r.delivery_key}
    for _ in range(2):  # a delivery -> its requests -> their jobs -> the jobs' other requests -> their deliveries
        requests |= {i for d in deliveries.values() for i in d.request_ids}
        for a in await sync_records.answers(conn, sorted(requests - set(answers))):
            answers[a.request_id] = a
        job_ids |= {a.job_id for a in answers.values() if a.job_id}
        for j in await sync_records.jobs(conn, sorted(job_ids - set(jobs))):
            jobs[j.job_id] = j
        requests |= {i for j in jobs.values() for i in j.request_ids}
        for d in await ledger_store.producing(conn, sorted(requests)):
            deliveries.setdefault(d.key, d)
        keys |= set(deliveries)
    records = await sync_records.records(conn, sorted(job_ids), sorted(requests), sorted(keys))
    batches = await sync_records.batches(conn, sorted(job_ids))
    copies = await ledger_store.copies(conn, sorted(keys))
    hops = core.chain(
        [
            *core.copy_hops(copies, settings.topic("hookstream.deliveries"), settings.topic(OUTCOMES_TOPIC)),
            *core.record_hops(records, answers, jobs),
            *core.batch_hops(batches),
        ]
    )
    ordered = sorted(
        jobs.values(), key=lambda j: (j.started_at or j.queued_at or datetime.min.replace(tzinfo=UTC), j.job_id)
    )
    primary = jobs.get(ident) or (ordered[-1] if ordered else None)
    return Trace(
        ident,
        deliveries=sorted(deliveries.values(), key=lambda d: (d.first_received_at, d.key)),
        copies=copies,
        jobs=ordered,
        job=primary,
        answers=answers,
        hops=hops,
    )


async def read_records(
    settings: Settings, positions: list[core.TopicPartitionOffset], timeout: float = 10.0
) -> dict[core.TopicPartitionOffset, core.Seen | None]:
    """The record at each position (its timestamp and type), None where there is none (deleted by
    retention, or a position past the end). Reads only from the wanted offsets on."""
    wanted: dict[TopicPartition, list[int]] = defaultdict(list)
    for topic, partition, offset in positions:
        wanted[TopicPartition(topic, partition)].append(offset)
    if not wanted:
        return {}
    try:
        async with TopicReader(settings, "hookstream-trace", fetch_max_wait_ms=50) as reader:
            records = await reader.read_at(wanted, timeout)
    except ReadError as exc:
        raise TraceError(f"{exc} (--no-kafka traces from the read model alone)") from None
    return {
        position: None
        if record is None
        else core.Seen(datetime.fromtimestamp(record.timestamp / 1000, UTC), _type_of(record.value))
        for position, record in records.items()
    }


def _type_of(value: bytes | None) -> str | None:
    """The record's `type` field, without decoding the whole record into its model."""
    if not value:
        return None
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return decoded.get("type") if isinstance(decoded, dict) else None


async def trace(conn: AsyncConnection, settings: Settings, ident: str, kafka: bool = True) -> Trace | None:
    found = await gather(conn, settings, ident)
    if found is None or not kafka:
        return found
    seen = await read_records(settings, [h.position for h in found.hops])
    found.hops = core.with_seen(found.hops, seen)
    return found
