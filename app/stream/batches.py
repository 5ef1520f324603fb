"""`process_file_batches`: read and write one batch of files (`app.sync.writing`), report `BatchCompleted`.

Crash safety by order: documents are committed in PostgreSQL, then
`BatchCompleted` is acknowledged by the broker, then the batch's offset is
committed. A crash in between re-processes the batch: the rows converge and
the fold counts the batch index once. A batch of a job older than the source's
write fence writes nothing (`app.sync.writing`).

Failures: a transient one (a git reader that kept dying, PostgreSQL gone) is
retried with backoff up to HOOKSTREAM_RETRY_ATTEMPTS (the HTTP adapters retry
their own requests). A batch that still fails, as a whole or in some of its
files, is reported with those files counted `failed` (so the job's counts say
so) and dead-lettered (stage `batch`), so that `hookstream dlq redrive` can
process it again after a fix; the row retires once a redrive wrote every file.
"""

from __future__ import annotations

import functools
import logging
import time

from app import codec
from app.core.poison import REDRIVEN_PLAN_HEADER, CannotApply, reason_of
from app.events import BatchCompleted, FileBatch, utcnow
from app.stream import faust_tuning
from app.stream.app import Worker
from app.stream.cancellations import CancelledJobs
from app.stream.poison import DeadLetters, header, is_infrastructure, retry_policy
from app.sync.writing import process_batch

log = logging.getLogger(__name__)

BATCHES = "hookstream.files.batches"
MAX_REASONS = 3


def register(worker: Worker) -> None:
    app, settings = worker.app, worker.settings
    batches_topic = worker.topic(BATCHES)
    control = worker.topic("hookstream.sync.control")
    dead_letters = DeadLetters.of(worker, "process_file_batches", BATCHES)
    cancelled = CancelledJobs(
        settings, on_undecodable=DeadLetters.of(worker, "follow_cancellations", "hookstream.sync.cancellations").send
    )
    policy = retry_policy(settings)
    retries = worker.metrics.retries.labels("batch")

    @app.task
    async def follow_cancellations() -> None:
        await cancelled.follow()

    async def report(batch: FileBatch, **counts) -> None:
        """Attached to the batch's offset: Faust publishes it before that offset is committed,
        so a crash before the publish re-processes the batch (rows converge, the fold counts it once)."""
        done = BatchCompleted(
            source_id=batch.source_id,
            occurred_at=utcnow(),
            job_id=batch.job_id,
            batch_index=batch.batch_index,
            **counts,
        )
        await control.send(key=codec.encode_key(batch.source_id), value=codec.encode(done))

    async def apply(message) -> None:
        try:
            batch: FileBatch = codec.decode(FileBatch, message.value)
        except codec.DecodeError as exc:
            raise CannotApply(
                "decode", f"{exc} (no job to report to: its key says {codec.decode_key(message.key)!r})"
            ) from None
        if batch.job_id in cancelled and header(message, REDRIVEN_PLAN_HEADER) is None:
            await report(batch, cancelled=True)
            return
        started = time.monotonic()
        try:
            counts = await process_batch(
                batch,
                lambda b: worker.adapter(b.source_type, b.source_config),
                await worker.pool(),
                settings.max_text_bytes,
                retry=policy,
                on_retry=lambda exc: retries.inc(),
            )
        except Exception as exc:  # a batch that cannot be written counts all its files failed
            if is_infrastructure(exc):
                raise  # the broker: tried again as it is (DeadLetters.guard)
            reason = reason_of(exc)
            log.warning("batch %s/%d not written: %s", batch.job_id, batch.batch_index, reason)
            await report(batch, failed=len(batch.files), errors=[f"nothing of the batch was written: {reason}"])
            raise CannotApply("batch", reason) from exc
        if counts is None:
            log.info(
                "batch %s/%d not written: a later job of %s has taken its documents",
                batch.job_id,
                batch.batch_index,
                batch.source_id,
            )
            await report(batch, cancelled=True)
            return
        worker.metrics.batch_seconds.observe(time.monotonic() - started)
        await report(batch, **counts.counts(), errors=counts.errors)
        if counts.failed:
            raise CannotApply(
                "batch",
                f"{counts.failed} of {len(batch.files)} files failed: " + "; ".join(counts.errors[:MAX_REASONS]),
            )

    # Several actors share the agent's buffer, so one batch's PostgreSQL round trips and
    # fsync overlap another's fetch. Offsets still commit only once every batch below
    # them is done (Faust commits the contiguous acked offsets): at-least-once as before;
    # batches are independent (write fences, the fold counts each index once).
    @app.agent(batches_topic, name="process_file_batches", concurrency=settings.batch_concurrency)
    async def process_file_batches(stream):
        async for event in faust_tuning.events(stream):
            await dead_letters.guard(event.message, functools.partial(apply, event.message), "batch")
