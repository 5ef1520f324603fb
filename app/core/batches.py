"""Cutting a job's file changes into batches (docs/architecture.md, the flow).

Deterministic: the same listing gives the same batches in the same order, so a
re-planned job (after a crash) publishes the same `jobId/batchIndex` records.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from app.events.control import SourceType
from app.events.sync import FileBatch, FileChange


def plan(job_id: str, files: Sequence[FileChange], size: int) -> list[list[FileChange]]:
    """`files` sorted by path and cut into batches of at most `size`; no files, no batches.

    A path listed twice is an adapter bug that two parallel batches would race
    on: it raises instead of picking one silently.
    """
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    ordered = sorted(files, key=lambda f: f.path)
    for before, after in pairwise(ordered):
        if before.path == after.path:
            raise ValueError(f"job {job_id}: path {before.path!r} is listed more than once")
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def batch_key(job_id: str, batch_index: int) -> str:
    """The Kafka key of a file batch: one job's batches spread over all partitions."""
    return f"{job_id}/{batch_index}"


def file_batches(
    job_id: str,
    source_id: str,
    source_type: SourceType,
    source_config: dict[str, Any],
    commit: str | None,
    files: Sequence[FileChange],
    size: int,
) -> list[FileBatch]:
    """The `FileBatch` records of a job, indexed 0..n-1 and each carrying n."""
    cut = plan(job_id, files, size)
    return [
        FileBatch(
            job_id=job_id,
            source_id=source_id,
            source_type=source_type,
            source_config=source_config,
            batch_index=index,
            batch_count=len(cut),
            commit=commit,
            files=batch,
        )
        for index, batch in enumerate(cut)
    ]
