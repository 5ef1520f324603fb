"""What the console shows, as JSON-ready dicts: the `/api/...` answers, which the pages render.

Everything is read from the PostgreSQL read model (app/store/views.py, the
ledger, the sync projections), but the consumer lag, which comes from Kafka
(the workers' committed offsets against the true end offsets), cached for a few
seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from app.core import ledger as ledger_core
from app.core import read_model
from app.core.dlq import DeadLetterRow
from app.core.lag import lag
from app.core.replay import CONSUMED_TOPICS, STAGES
from app.settings import Settings
from app.store import dead_letters as dead_letter_rows
from app.store import ledger as ledger_store
from app.store import sync_records, views

OVERVIEW_MINUTES = 15
LAG_CACHE_SECONDS = 5.0


def iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def job_json(job: read_model.SyncJobRow) -> dict[str, Any]:
    return {**read_model.job_to_json(job), "final": job.is_final}


def dead_letter_json(row: DeadLetterRow) -> dict[str, Any]:
    return {
        "dead_letter_id": row.dead_letter_id,
        "key": row.key,
        "plugin": row.plugin,
        "instance": row.instance,
        "stage": row.stage,
        "error": row.error,
        "attempts": row.attempts,
        "status": row.status,
        "first_failed_at": iso(row.first_failed_at),
        "last_failed_at": iso(row.last_failed_at),
        "retired_at": iso(row.retired_at),
        "redrivable": row.redrivable and row.status == "open",
    }


@dataclass
class LagCache:
    """The workers' lag per stage, read from Kafka at most every `LAG_CACHE_SECONDS`."""

    settings: Settings
    at: float = 0.0
    value: dict[str, Any] | None = None

    async def get(self) -> dict[str, Any]:
        if self.value is None or time.monotonic() - self.at > LAG_CACHE_SECONDS:
            self.value, self.at = await self._read(), time.monotonic()
        return self.value

    async def _read(self) -> dict[str, Any]:
        """The lag per stage; `error` instead when Kafka could not be read (the overview still answers)."""
        from aiokafka.errors import KafkaError

        from app.embedded import tansu_quirks
        from app.offsets import Cluster, OffsetsError

        tansu_quirks.install(self.settings)
        group = f"{self.settings.topic_prefix}{self.settings.worker_id}"  # the workers' Faust app id
        try:
            async with Cluster(self.settings) as cluster:
                existing = await cluster.topics()
                topics = [self.settings.topic(t) for t in CONSUMED_TOPICS if self.settings.topic(t) in existing]
                state = await cluster.describe_group(group)
                positions = await cluster.positions(group, topics) if topics else []
        except (OffsetsError, KafkaError, OSError) as exc:
            return {"group": group, "error": str(exc) or type(exc).__name__, "stages": {}}
        logical = {self.settings.topic(t): t for t in CONSUMED_TOPICS}
        stages: dict[str, int] = {}
        for p in positions:
            stage = STAGES[logical[p.topic]].consumer.split(",")[0]  # the agent (its projections run inside it)
            stages[stage] = stages.get(stage, 0) + lag(p)
        return {"group": group, "state": state.state, "members": len(state.members), "stages": stages}


async def overview(conn: AsyncConnection, now: datetime | None = None) -> dict[str, Any]:
    """The overview from the read model; its `lag` is added from Kafka (`LagCache`), off the connection."""
    now = now or datetime.now(UTC)
    since = now - timedelta(minutes=OVERVIEW_MINUTES)
    return {
        "since": iso(since),
        "deliveries": await ledger_store.outcome_counts(conn, since),
        "syncs": await views.job_counts(conn),
        "dead_letters_open": await dead_letter_rows.open_count(conn),
    }


async def sources(conn: AsyncConnection) -> list[dict[str, Any]]:
    out = []
    for v in await views.sources(conn):
        s = v.source
        out.append(
            {
                "source_id": s.source_id,
                "type": s.source_type,
                "name": s.name,
                "status": s.status,
                "config_status": s.config_status,
                "state": v.state,
                "running": job_json(v.running) if v.running else None,
                "queued": job_json(v.queued) if v.queued else None,
                "last": job_json(v.last) if v.last else None,
            }
        )
    return out


async def jobs(conn: AsyncConnection, status: str | None, source: str | None, limit: int) -> list[dict[str, Any]]:
    return [job_json(j) for j in await views.jobs(conn, status, source, limit)]


async def job(conn: AsyncConnection, job_id: str) -> dict[str, Any] | None:
    found = await sync_records.jobs(conn, [job_id])
    if not found:
        return None
    row = found[0]
    answers = await sync_records.answers(conn, list(row.request_ids))
    batches = await sync_records.batches(conn, [job_id])
    return {
        "job": job_json(row),
        "requests": [{**{k: iso(v) for k, v in read_model.answer_to_columns(a).items()}} for a in answers]
        + [{"request_id": r, "answer": None} for r in row.request_ids if r not in {a.request_id for a in answers}],
        "batches": [{k: iso(v) for k, v in read_model.batch_to_columns(b).items()} for b in batches],
    }


async def deliveries(conn: AsyncConnection, filters: ledger_store.Filters) -> list[dict[str, Any]]:
    return [ledger_core.delivery_to_json(d) for d in await ledger_store.listing(conn, filters)]


async def dead_letters(conn: AsyncConnection, status: str | None) -> list[dict[str, Any]]:
    return [dead_letter_json(r) for r in await dead_letter_rows.listing(conn, status or None, limit=100)]
