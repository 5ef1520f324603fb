"""`plan_syncs`: plan a job through its source adapter (`app.sync.planning`), publish its batches.

Order matters for crash safety: the plan is kept in PostgreSQL, then every
batch is acknowledged by the broker, then `SyncPlanned` is sent, then the plan
request's offset is committed. A crash in between plans the job again from the
kept plan: the same batches under the same keys; the fold takes one plan per job.
A replayed request of a job older than the kept one plans nothing.

Failures: a transient one (a git reader that died, a git command killed; an HTTP
adapter's 5xx, 429 and timeouts are retried by the adapter itself; PostgreSQL
gone) is retried with backoff up to HOOKSTREAM_RETRY_ATTEMPTS. What still fails,
and every permanent failure (a missing path, a 404, a bad config), ends the job
`failed` (`PlanFailed`: its next sync lists everything) and dead-letters the plan
request (stage `plan`), so that `hookstream dlq redrive` can plan it again after
a fix; the row retires once a redrive was planned. The batches of a redriven plan
carry the `hookstream-redriven-plan` header: their job has ended, and they are
written all the same (the write fences keep a later job's documents).
"""

from __future__ import annotations

import asyncio
import functools
import logging

from app import codec
from app.core.batches import batch_key
from app.core.poison import REDRIVEN_PLAN_HEADER, CannotApply, reason_of
from app.events import PlanFailed, PlanRequested, SyncPlanned, utcnow
from app.sources.retries import retry_transient
from app.stream import faust_tuning
from app.stream.app import Worker
from app.stream.poison import DeadLetters, is_infrastructure, redrive_of, retry_policy
from app.sync.planning import plan_job

log = logging.getLogger(__name__)

PLANS = "hookstream.sync.plans"


def register(worker: Worker) -> None:
    app, settings = worker.app, worker.settings
    plans = worker.topic(PLANS)
    batches_topic = worker.topic("hookstream.files.batches")
    control = worker.topic("hookstream.sync.control")
    dead_letters = DeadLetters.of(worker, "plan_syncs", PLANS)
    policy = retry_policy(settings)
    retries = worker.metrics.retries.labels("plan")

    async def send_and_wait(topic, key: str, record, headers=None) -> None:
        fut = await topic.send(key=codec.encode_key(key), value=codec.encode(record), headers=headers, force=True)
        await fut

    async def plan(request: PlanRequested):
        """The job's plan, its transient failures retried (`retry_transient`; PostgreSQL's inside `plan_job`)."""
        adapter = await worker.adapter(request.source_type, request.source_config)

        async def once():
            return await plan_job(request, adapter, await worker.pool(), settings.batch_size, retry=policy)

        return await retry_transient(
            once, adapter.options, f"planning job {request.job_id}", on_retry=lambda exc: retries.inc()
        )

    async def apply(message) -> None:
        try:
            request: PlanRequested = codec.decode(PlanRequested, message.value)
        except codec.DecodeError as exc:
            raise CannotApply(
                "decode", f"{exc} (no job to fail: its key says {codec.decode_key(message.key)!r})"
            ) from None
        try:
            planned = await plan(request)
        except Exception as exc:  # every failure ends the job, and its plan request is dead-lettered
            if is_infrastructure(exc):
                raise  # the broker or PostgreSQL: tried again as it is (DeadLetters.guard)
            log.warning("job %s: planning failed: %s", request.job_id, exc)
            await send_and_wait(
                control,
                request.source_id,
                PlanFailed(
                    source_id=request.source_id,
                    occurred_at=utcnow(),
                    job_id=request.job_id,
                    error=reason_of(exc),
                ),
            )
            raise CannotApply("plan", reason_of(exc)) from exc
        if planned is None:
            log.info("job %s: not planned, a later job of %s was planned since", request.job_id, request.source_id)
            return
        # A redriven plan's job has ended (its plan had failed): its batches say so, to be written all the same.
        headers = [(REDRIVEN_PLAN_HEADER, b"1")] if redrive_of(message) is not None else None
        await asyncio.gather(
            *(send_and_wait(batches_topic, batch_key(b.job_id, b.batch_index), b, headers) for b in planned.batches)
        )
        await send_and_wait(
            control,
            request.source_id,
            SyncPlanned(
                source_id=request.source_id,
                occurred_at=utcnow(),
                job_id=request.job_id,
                batch_count=len(planned.batches),
                file_count=len(planned.files),
                commit=planned.commit,
                listing=planned.listing,
                config=planned.config,
            ),
        )
        log.info(
            "job %s: planned %d files in %d batches (%s, commit %s)",
            request.job_id,
            len(planned.files),
            len(planned.batches),
            planned.how,
            (planned.commit or "?")[:12],
        )

    @app.agent(plans, name="plan_syncs", concurrency=1)
    async def plan_syncs(stream):
        async for event in faust_tuning.events(stream):
            await dead_letters.guard(event.message, functools.partial(apply, event.message), "plan")
