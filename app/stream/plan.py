"""`plan_syncs`: list a job's changes through its source adapter, cut them into batches.

Order matters for crash safety: every batch is acknowledged by the broker
before `SyncPlanned` is sent, and `SyncPlanned` before the plan's offset is
committed. A crash in between re-plans the job: batches are deterministic
(same keys, same content for the same commit) and the fold takes one plan per job.
"""

from __future__ import annotations

import asyncio
import logging

from app import codec
from app.core.batches import batch_key, file_batches
from app.events import FileChange, PlanFailed, PlanRequested, SyncPlanned, utcnow
from app.sources import SourceError
from app.store import documents
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
                listing = await adapter.list_changes(request)
                files = list(listing.files)
                if listing.mode_used == "full":
                    files += await stale_paths(request, files)
                cut = file_batches(request.job_id, request.source_id, request.source_type, request.source_config,
                                   listing.commit, files, settings.batch_size)
            except (SourceError, ValueError) as exc:
                log.warning("job %s: planning failed: %s", request.job_id, exc)
                await send_and_wait(control, request.source_id, PlanFailed(
                    source_id=request.source_id, occurred_at=utcnow(), job_id=request.job_id, error=str(exc)[:2000],
                ))
                continue
            await asyncio.gather(*(send_and_wait(batches_topic, batch_key(b.job_id, b.batch_index), b) for b in cut))
            await send_and_wait(control, request.source_id, SyncPlanned(
                source_id=request.source_id, occurred_at=utcnow(), job_id=request.job_id,
                batch_count=len(cut), file_count=len(files), commit=listing.commit,
            ))
            log.info("job %s: planned %d files in %d batches (%s, commit %s)",
                     request.job_id, len(files), len(cut), listing.mode_used, (listing.commit or "?")[:12])
