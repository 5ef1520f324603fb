"""Writing one file batch: fetch its files through the adapter, transform, upsert and delete documents.

A batch re-consumed after a crash or a rebalance may come after a later job of
its source already wrote or planned (a source's jobs are serialized, its
batches are not on one partition): the source's write fence
(`documents.claim_writes`) makes such a batch write nothing, so it cannot bring
back old content or deleted paths. Its job has completed; the fold ignores its
report.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from app.core.batch_outcome import BatchCounts, count
from app.core.documents import Document, to_document
from app.core.jobs import job_sequence
from app.core.retry import RetryPolicy
from app.events import FileBatch
from app.sources import SourceAdapter, SourceError
from app.sources.retries import retry_transient
from app.store import documents
from app.store.db import in_transaction


async def write_batch(conn, batch: FileBatch, docs: list[Document], deletes: list[str]) -> int | None:
    """Upsert and delete one batch's documents in the caller's transaction; returns the deletes
    counted, or None, writing nothing, when a later job of the source has taken the write fence."""
    seq = job_sequence(batch.job_id)
    if seq is not None and not await documents.claim_writes(conn, batch.source_id, seq):
        return None
    await documents.upsert(conn, batch.source_id, docs, batch.commit, batch.job_id)
    return await documents.delete(conn, batch.source_id, deletes)


AdapterFor = Callable[[FileBatch], Awaitable[SourceAdapter]]


async def read_batch(
    batch: FileBatch,
    adapter_for: AdapterFor,
    max_text_bytes: int,
    on_retry: Callable[[SourceError], None] | None = None,
) -> tuple[list[Document], list[tuple[str, str]]]:
    """The batch's upserts as documents, and (path, why) for every file that could not be read.

    A transient failure of the whole read (a git reader that kept dying) is retried with
    backoff (`retry_transient`, the adapter's options) before its files count as failed.
    """
    upserts = [f for f in batch.files if f.change == "upsert"]

    async def read(adapter: SourceAdapter) -> tuple[list[Document], list[tuple[str, str]]]:
        docs: list[Document] = []
        failures: list[tuple[str, str]] = []
        async with contextlib.aclosing(adapter.fetch(upserts)) as fetched:
            async for change, content, error in fetched:
                if content is None:
                    failures.append((change.path, error or "unreadable"))
                else:
                    docs.append(to_document(change.path, content, max_text_bytes))
        return docs, failures

    try:
        adapter = await adapter_for(batch)
        return await retry_transient(
            lambda: read(adapter), adapter.options, f"reading batch {batch.job_id}/{batch.batch_index}", on_retry
        )
    except SourceError as exc:
        # The whole batch is unreadable: every file in it failed, nothing written.
        return [], [(f.path, str(exc)) for f in upserts]


async def process_batch(
    batch: FileBatch,
    adapter_for: AdapterFor,
    pool,
    max_text_bytes: int,
    retry: RetryPolicy | None = None,
    on_retry: Callable[[SourceError], None] | None = None,
) -> BatchCounts | None:
    """Read and write one batch; its counts, or None when a later job of its source holds the fence.

    With `retry`, a PostgreSQL that stays unreachable past it raises `StoreUnavailable`
    (nothing of the batch is written: the transaction never committed)."""
    docs, failures = await read_batch(batch, adapter_for, max_text_bytes, on_retry)
    deletes = [f.path for f in batch.files if f.change == "delete"]
    deleted = await in_transaction(
        pool,
        lambda conn: write_batch(conn, batch, docs, deletes),
        f"batch {batch.job_id}/{batch.batch_index}",
        retry=retry,
    )
    if deleted is None:
        return None
    return count(docs, failures, deleted)
