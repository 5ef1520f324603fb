"""`process_file_batches`: read and write one batch of files (`app.sync.writing`), report `BatchCompleted`.

Crash safety by order: documents are committed in PostgreSQL, then
`BatchCompleted` is acknowledged by the broker, then the batch's offset is
committed. A crash in between re-processes the batch: the rows converge and
the fold counts the batch index once. A batch of a job older than the source's
write fence writes nothing (`app.sync.writing`).
"""

from __future__ import annotations

import logging
import time

from app import codec
from app.events import BatchCompleted, FileBatch, utcnow
from app.stream.app import Worker
from app.stream.cancellations import CancelledJobs
from app.sync.writing import process_batch

log = logging.getLogger(__name__)


def register(worker: Worker) -> None:
    app, settings = worker.app, worker.settings
    batches_topic = worker.topic("hookstream.files.batches")
    control = worker.topic("hookstream.sync.control")
    cancelled = CancelledJobs(settings)

    @app.task
    async def follow_cancellations() -> None:
        await cancelled.follow()

    async def report(batch: FileBatch, **counts) -> None:
        """Attached to the batch's offset: Faust publishes it before that offset is committed,
        so a crash before the publish re-processes the batch (rows converge, the fold counts it once)."""
        done = BatchCompleted(source_id=batch.source_id, occurred_at=utcnow(), job_id=batch.job_id,
                              batch_index=batch.batch_index, **counts)
        await control.send(key=codec.encode_key(batch.source_id), value=codec.encode(done))

    # Several actors share the agent's buffer, so one batch's PostgreSQL round trips and
    # fsync overlap another's fetch. Offsets still commit only once every batch below
    # them is done (Faust commits the contiguous acked offsets): at-least-once as before;
    # batches are independent (write fences, the fold counts each index once).
    @app.agent(batches_topic, name="process_file_batches", concurrency=settings.batch_concurrency)
    async def process_file_batches(stream):
        async for raw in stream:
            try:
                batch = codec.decode(FileBatch, raw)
            except codec.DecodeError as exc:
                log.error("undecodable file batch skipped by rule: %s", exc)
                continue
            if batch.job_id in cancelled:
                await report(batch, cancelled=True)
                continue
            started = time.monotonic()
            counts = await process_batch(
                batch, lambda b: worker.adapter(b.source_type, b.source_config), await worker.pool(), settings.max_text_bytes,
            )
            if counts is None:
                log.info("batch %s/%d not written: a later job of %s has taken its documents",
                         batch.job_id, batch.batch_index, batch.source_id)
                await report(batch, cancelled=True)
                continue
            worker.metrics.batch_seconds.observe(time.monotonic() - started)
            await report(batch, processed=counts.processed, failed=counts.failed, deleted=counts.deleted,
                         skipped=counts.skipped, documents_written=counts.documents_written, bytes=counts.bytes,
                         errors=counts.errors)
