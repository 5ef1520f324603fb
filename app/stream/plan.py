"""`plan_syncs`: plan a job through its source adapter (`app.sync.planning`), publish its batches.

Order matters for crash safety: the plan is kept in PostgreSQL, then every
batch is acknowledged by the broker, then `SyncPlanned` is sent, then the plan
request's offset is committed. A crash in between plans the job again from the
kept plan: the same batches under the same keys; the fold takes one plan per job.
A replayed request of a job older than the kept one plans nothing.
"""

from __future__ import annotations

import asyncio
import logging

from app import codec
from app.core.batches import batch_key
from app.events import PlanFailed, PlanRequested, SyncPlanned, utcnow
from app.sources import SourceError
from app.stream.app import Worker
from app.sync.planning import plan_job

log = logging.getLogger(__name__)


def register(worker: Worker) -> None:
    app, settings = worker.app, worker.settings
    plans = worker.topic("hookstream.sync.plans")
    batches_topic = worker.topic("hookstream.files.batches")
    control = worker.topic("hookstream.sync.control")

    async def send_and_wait(topic, key: str, record) -> None:
        fut = await topic.send(key=codec.encode_key(key), value=codec.encode(record), force=True)
        await fut

    @app.agent(plans, name="plan_syncs", concurrency=1)
    async def plan_syncs(stream):
        async for raw in stream:
            try:
                request = codec.decode(PlanRequested, raw)
            except codec.DecodeError as exc:
                log.error("undecodable plan request skipped by rule (no job to fail): %s", exc)
                continue
            try:
                adapter = await worker.adapter(request.source_type, request.source_config)
                plan = await plan_job(request, adapter, await worker.pool(), settings.batch_size)
            except (SourceError, ValueError) as exc:
                log.warning("job %s: planning failed: %s", request.job_id, exc)
                await send_and_wait(control, request.source_id, PlanFailed(
                    source_id=request.source_id, occurred_at=utcnow(), job_id=request.job_id, error=str(exc)[:2000],
                ))
                continue
            if plan is None:
                log.info("job %s: not planned, a later job of %s was planned since", request.job_id, request.source_id)
                continue
            await asyncio.gather(*(send_and_wait(batches_topic, batch_key(b.job_id, b.batch_index), b) for b in plan.batches))
            await send_and_wait(control, request.source_id, SyncPlanned(
                source_id=request.source_id, occurred_at=utcnow(), job_id=request.job_id,
                batch_count=len(plan.batches), file_count=len(plan.files), commit=plan.commit, listing=plan.listing,
                config=plan.config,
            ))
            log.info("job %s: planned %d files in %d batches (%s, commit %s)",
                     request.job_id, len(plan.files), len(plan.batches), plan.how, (plan.commit or "?")[:12])
