"""`plan_syncs`: list a job's changes through its source adapter, cut them into batches.

Order matters for crash safety: the plan is kept in PostgreSQL, then every
batch is acknowledged by the broker, then `SyncPlanned` is sent, then the plan
request's offset is committed. A crash in between plans the job again from the
kept plan (`app.store.plans`): the same batches under the same keys, whatever
the branch or the documents became meanwhile; the fold takes one plan per job.
A replayed request of a job older than the kept one plans nothing.
"""

from __future__ import annotations

import asyncio
import logging

from app import codec
from app.core.batches import batch_key, file_batches
from app.core.jobs import job_sequence, plan_again
from app.events import FileChange, PlanFailed, PlanRequested, SyncPlanned, utcnow
from app.sources import SourceError
from app.store import documents, plans as kept_plans
from app.store.db import in_transaction
from app.stream.app import Worker

log = logging.getLogger(__name__)


def register(worker: Worker) -> None:
    app, settings = worker.app, worker.settings
    plans = worker.topic("hookstream.sync.plans")
    batches_topic = worker.topic("hookstream.files.batches")
    control = worker.topic("hookstream.sync.control")

    async def send_and_wait(topic, key: str, record) -> None:
        fut = await topic.send(key=codec.encode_key(key), value=codec.encode(record), force=True)
        await fut

    async def stale_paths(request: PlanRequested, listed: list[FileChange]) -> list[FileChange]:
        """A full sync also deletes the documents whose paths the source no longer has."""
        have = await in_transaction(await worker.pool(), lambda conn: documents.paths(conn, request.source_id), "listing documents")
        keep = {f.path for f in listed}
        return [FileChange(path=p, change="delete") for p in sorted(have - keep)]

    async def list_anew(request: PlanRequested) -> tuple[str | None, list[FileChange], str]:
        adapter = await worker.adapter(request.source_type, request.source_config)
        listing = await adapter.list_changes(request)
        files = list(listing.files)
        if listing.mode_used == "full":
            files += await stale_paths(request, files)
        return listing.commit, files, listing.mode_used

    async def the_plan(request: PlanRequested) -> tuple[str | None, list[FileChange], str] | None:
        """(commit, files, how) of the job: its kept plan when it was planned before; None when a later
        job of the source was planned (this request is a replay of a finished job's)."""
        seq = job_sequence(request.job_id)
        if seq is None:  # no offset in the job id: nothing to order or keep plans by
            return await list_anew(request)
        pool = await worker.pool()
        kept = await in_transaction(pool, lambda conn: kept_plans.kept(conn, request.source_id), "reading the kept plan")
        decision = plan_again(request.job_id, kept.job_id if kept is not None else None)
        if decision == "list":
            commit, files, how = await list_anew(request)
            kept = await in_transaction(pool, lambda conn: kept_plans.keep(
                conn, request.source_id, request.job_id, seq, commit, files), "keeping the plan")
            if kept.job_id == request.job_id:
                return kept.commit, kept.files, how
        elif decision == "reuse":
            return kept.commit, kept.files, "the kept plan, again"
        log.info("job %s: not planned, %s of the same source was planned since", request.job_id, kept.job_id)
        return None

    @app.agent(plans, name="plan_syncs", concurrency=1)
    async def plan_syncs(stream):
        async for raw in stream:
            try:
                request = codec.decode(PlanRequested, raw)
            except codec.DecodeError as exc:
                log.error("undecodable plan request skipped by rule (no job to fail): %s", exc)
                continue
            try:
                planned = await the_plan(request)
                if planned is None:
                    continue
                commit, files, how = planned
                cut = file_batches(request.job_id, request.source_id, request.source_type, request.source_config,
                                   commit, files, settings.batch_size)
            except (SourceError, ValueError) as exc:
                log.warning("job %s: planning failed: %s", request.job_id, exc)
                await send_and_wait(control, request.source_id, PlanFailed(
                    source_id=request.source_id, occurred_at=utcnow(), job_id=request.job_id, error=str(exc)[:2000],
                ))
                continue
            await asyncio.gather(*(send_and_wait(batches_topic, batch_key(b.job_id, b.batch_index), b) for b in cut))
            await send_and_wait(control, request.source_id, SyncPlanned(
                source_id=request.source_id, occurred_at=utcnow(), job_id=request.job_id,
                batch_count=len(cut), file_count=len(files), commit=commit,
            ))
            log.info("job %s: planned %d files in %d batches (%s, commit %s)",
                     request.job_id, len(files), len(cut), how, (commit or "?")[:12])
