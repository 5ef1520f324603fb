"""`process_file_batches`: fetch, transform and upsert one batch of files, report `BatchCompleted`.

Crash safety by order: documents are committed in PostgreSQL, then
`BatchCompleted` is acknowledged by the broker, then the batch's offset is
committed. A crash in between re-processes the batch: the rows converge and
the fold counts the batch index once.

A batch re-consumed after a crash or a rebalance may come after a later job of
its source already wrote (a source's jobs are serialized, its batches are not
on one partition): the source's write fence (`documents.claim_writes`) makes
such a batch write nothing, so it cannot bring back old content or deleted
paths. Its job has completed; the fold ignores its report.
"""

from __future__ import annotations

import contextlib
import logging
import time

from app import codec
from app.core.batch_outcome import count
from app.core.documents import Document, to_document
from app.core.jobs import job_sequence
from app.events import BatchCompleted, FileBatch, utcnow
from app.sources import SourceError
from app.store import documents
from app.store.db import in_transaction
from app.stream.app import Worker
from app.stream.cancellations import CancelledJobs

log = logging.getLogger(__name__)


async def write_batch(conn, batch: FileBatch, docs: list[Document], deletes: list[str]) -> int | None:
    """Upsert and delete one batch's documents in the caller's transaction; returns the deletes
    counted, or None, writing nothing, when a later job of the source has already written."""
    seq = job_sequence(batch.job_id)
    if seq is not None and not await documents.claim_writes(conn, batch.source_id, seq):
        return None
    await documents.upsert(conn, batch.source_id, docs, batch.commit, batch.job_id)
    return await documents.delete(conn, batch.source_id, deletes)


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
            upserts = [f for f in batch.files if f.change == "upsert"]
            deletes = [f.path for f in batch.files if f.change == "delete"]
            docs, failures = [], []
            try:
                adapter = await worker.adapter(batch.source_type, batch.source_config)
                async with contextlib.aclosing(adapter.fetch(upserts)) as fetched:
                    async for change, content, error in fetched:
                        if content is None:
                            failures.append((change.path, error or "unreadable"))
                        else:
                            docs.append(to_document(change.path, content, settings.max_text_bytes))
            except SourceError as exc:
                # The whole batch is unreadable: every file in it failed, nothing written.
                failures = [(f.path, str(exc)) for f in upserts]
                docs = []

            deleted = await in_transaction(await worker.pool(), lambda conn: write_batch(conn, batch, docs, deletes),
                                           f"batch {batch.job_id}/{batch.batch_index}")
            if deleted is None:
                log.info("batch %s/%d not written: a later job of %s already wrote its documents",
                         batch.job_id, batch.batch_index, batch.source_id)
                await report(batch, cancelled=True)
                continue
            c = count(docs, failures, deleted)
            worker.metrics.batch_seconds.observe(time.monotonic() - started)
            await report(batch, processed=c.processed, failed=c.failed, deleted=c.deleted, skipped=c.skipped,
                         documents_written=c.documents_written, bytes=c.bytes, errors=c.errors)
