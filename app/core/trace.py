"""The chain of one delivery, request or job across the topics, from the read model's rows. Pure.

`hookstream trace` (and the console's delivery page) gathers rows from the read
model (`app.trace`): the delivery copies and their outcome records (the ledger),
the records of requests and jobs (`sync_records`) and the batch completions
(`sync_batches`). Each row names a record's topic, partition and offset; `hops`
turns them into one time-ordered chain, and the Kafka records read at exactly
those offsets (`Seen`) add the time each record was written. Nothing here
decides what to read: only what the rows recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from app.core.ledger import CopyRow, DeliveryRow, delivery_to_json
from app.core.read_model import BatchRow, RecordRow, RequestAnswer, SyncJobRow, job_to_json

# The stage each record type is a hop of.
STAGES = {
    "delivery": "delivery",
    "delivery.outcome": "dedup",
    "sync.requested": "control",
    "sync.started": "answer",
    "sync.queued": "answer",
    "sync.coalesced": "answer",
    "sync.deduplicated": "answer",
    "sync.rejected": "answer",
    "sync.planned": "plan",
    "sync.plan_failed": "plan",
    "batch.completed": "batch",
    "sync.deadline_reached": "deadline",
    "sync.cancelled": "cancelled",
    "sync.completed": "completed",
}

TopicPartitionOffset = tuple[str, int, int]


@dataclass(frozen=True)
class Hop:
    stage: str
    topic: str
    partition: int
    offset: int
    type: str
    occurred_at: datetime  # the time the read model has (event time)
    detail: str
    key: str | None = None  # the delivery key, for a delivery's hops
    job_id: str | None = None
    request_ids: tuple[str, ...] = ()
    # From the record read back at this offset: when it was written (Kafka's timestamp).
    timestamp: datetime | None = None
    found: bool | None = None  # None: not looked up; False: no such record at that offset

    @property
    def position(self) -> TopicPartitionOffset:
        return (self.topic, self.partition, self.offset)

    @property
    def at(self) -> datetime:
        return self.timestamp or self.occurred_at


@dataclass(frozen=True)
class Seen:
    """What Kafka holds at a recorded offset."""

    timestamp: datetime
    type: str | None


def copy_hops(copies: Iterable[CopyRow], deliveries_topic: str, outcomes_topic: str) -> list[Hop]:
    hops = []
    for c in copies:
        hops.append(
            Hop(
                "delivery",
                deliveries_topic,
                c.partition,
                c.offset,
                "delivery",
                c.received_at,
                f"copy of {c.key}"
                + (f" (replay epoch {c.replay_epoch})" if c.replay_epoch else "")
                + (f" (redrive of {c.redrive_of})" if c.redrive_of else ""),
                key=c.key,
            )
        )
        hops.append(
            Hop(
                "dedup",
                outcomes_topic,
                c.outcome_partition,
                c.outcome_offset,
                "delivery.outcome",
                c.received_at,
                outcome_text(c.outcome, c.rule, c.reason, c.event_types, c.source_ids, c.request_ids),
                key=c.key,
                request_ids=c.request_ids,
            )
        )
    return hops


def outcome_text(
    outcome: str,
    rule: str | None,
    reason: str | None,
    event_types: Iterable[str],
    source_ids: Iterable[str],
    request_ids: Iterable[str],
) -> str:
    if outcome == "duplicate":
        return f"duplicate: {reason or 'redelivery inside its window'}"
    if outcome == "ignored":
        return f"ignored by rule {rule}"
    if outcome == "dead_lettered":
        return f"dead-lettered at stage {rule}: {reason or '-'}"
    events = ", ".join(event_types) or "nothing"
    text = f"routed ({reason or 'first sighting'}): {events}"
    if source_ids:
        text += f" for {', '.join(source_ids)}"
    if request_ids:
        text += f"; request {', '.join(request_ids)}"
    return text


def record_hops(
    records: Iterable[RecordRow], answers: Mapping[str, RequestAnswer], jobs: Mapping[str, SyncJobRow] | None = None
) -> list[Hop]:
    hops = []
    for r in records:
        hops.append(
            Hop(
                STAGES.get(r.type, r.type),
                r.topic,
                r.partition,
                r.offset,
                r.type,
                r.occurred_at,
                _record_text(r, answers, jobs or {}),
                key=r.delivery_key,
                job_id=r.job_id,
                request_ids=r.request_ids,
            )
        )
    return hops


def _record_text(r: RecordRow, answers: Mapping[str, RequestAnswer], jobs: Mapping[str, SyncJobRow]) -> str:
    ids = ", ".join(r.request_ids)
    if r.type == "sync.requested":
        return f"request {ids} for {r.source_id}" + (f" from delivery {r.delivery_key}" if r.delivery_key else "")
    if r.type in ("sync.started", "sync.queued", "sync.coalesced"):
        verb = {"sync.started": "started", "sync.queued": "queued as", "sync.coalesced": "coalesced into"}[r.type]
        return f"request {ids} {verb} job {r.job_id}" if ids else f"job {r.job_id} {verb.split()[0]}"
    if r.type == "sync.deduplicated":
        reason = next((answers[i].reason for i in r.request_ids if i in answers and answers[i].reason), None)
        return f"request {ids} deduplicated by job {r.job_id}" + (f": {reason}" if reason else "")
    if r.type == "sync.rejected":
        reason = next((answers[i].reason for i in r.request_ids if i in answers and answers[i].reason), None)
        return f"request {ids} rejected" + (f": {reason}" if reason else "")
    job = jobs.get(r.job_id or "")
    if r.type == "sync.planned" and job is not None and job.batches_planned is not None:
        return f"job {r.job_id} planned: {job.files_listed} files in {job.batches_planned} batches"
    if r.type == "sync.completed" and job is not None and job.is_final:
        return (
            f"job {r.job_id} {job.status}: {job.processed} processed, {job.failed} failed, {job.deleted} deleted, "
            f"{job.skipped} skipped, {job.documents_written} written"
        )
    return f"job {r.job_id}" + (f" (requests {ids})" if ids else "")


def batch_hops(batches: Iterable[BatchRow]) -> list[Hop]:
    return [
        Hop(
            "batch",
            b.topic,
            b.partition,
            b.offset,
            "batch.completed",
            b.completed_at,
            f"batch {b.batch_index} of job {b.job_id}: "
            + (
                "skipped (job cancelled)"
                if b.cancelled
                else f"{b.processed} processed, {b.failed} failed, {b.deleted} deleted, {b.skipped} skipped"
            ),
            job_id=b.job_id,
        )
        for b in batches
    ]


def chain(hops: Iterable[Hop]) -> list[Hop]:
    """One hop per position, in time order (the read model's time, then where it is)."""
    unique = {h.position: h for h in hops}
    return sorted(
        unique.values(), key=lambda h: (h.occurred_at, _STAGE_ORDER.get(h.stage, 99), h.topic, h.partition, h.offset)
    )


_STAGE_ORDER = {
    s: i
    for i, s in enumerate(
        ("delivery", "dedup", "control", "answer", "plan", "batch", "deadline", "cancelled", "completed")
    )
}


def with_seen(hops: list[Hop], seen: Mapping[TopicPartitionOffset, Seen | None]) -> list[Hop]:
    """The hops with what Kafka holds at their offsets (positions not looked up are left as they are),
    in the order the records were written to their topics (Kafka's timestamps, the producers' clocks)."""
    out = []
    for h in hops:
        if h.position not in seen:
            out.append(h)
            continue
        found = seen[h.position]
        out.append(
            replace(
                h,
                found=found is not None and (found.type is None or found.type == h.type),
                timestamp=found.timestamp if found is not None else None,
            )
        )
    return sorted(out, key=lambda h: (h.at, _STAGE_ORDER.get(h.stage, 99), h.topic, h.partition, h.offset))


def gaps_ms(hops: list[Hop]) -> list[int | None]:
    """Milliseconds from each hop's time to the next one's (None for the first)."""
    out: list[int | None] = [None]
    for before, after in zip(hops, hops[1:], strict=False):
        out.append(int((after.at - before.at).total_seconds() * 1000))
    return out


def as_json(
    ident: str, hops: list[Hop], job: SyncJobRow | None, jobs: list[SyncJobRow], deliveries: list[DeliveryRow]
) -> dict[str, Any]:
    gaps = gaps_ms(hops)
    return {
        "id": ident,
        "hops": [
            {
                "stage": h.stage,
                "topic": h.topic,
                "partition": h.partition,
                "offset": h.offset,
                "timestamp": h.at.isoformat(),
                "type": h.type,
                "occurred_at": h.occurred_at.isoformat(),
                "since_previous_ms": gap,
                "found": h.found,
                "detail": h.detail,
                "key": h.key,
                "job_id": h.job_id,
                "request_ids": list(h.request_ids),
            }
            for h, gap in zip(hops, gaps, strict=False)
        ],
        "job": job_to_json(job) if job is not None else None,
        "jobs": [job_to_json(j) for j in jobs],
        "deliveries": [delivery_to_json(d) for d in deliveries],
    }
