"""Fan-in of a job's batch completions: each batch index counts once, whatever the order.

Batch completions may arrive before the plan, twice, or out of order. A job's
progress is the plan's batch count (once known) and the counts of the first
report of each batch index. The job is complete when the plan is known and every
index `0 .. batch_count-1` has reported.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from app.events.control import BatchCompleted


class Counts(BaseModel):
    """What one batch (or, summed, one job) did. `error` is the first error reported, if any."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    processed: int = 0
    failed: int = 0
    deleted: int = 0
    skipped: int = 0
    documents_written: int = 0
    bytes: int = 0
    error: str | None = None


class FanIn(BaseModel):
    """A job's fan-in progress. `batch_count` is None until the plan is known."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_count: int | None = None
    reported: dict[int, Counts] = {}

    def has(self, index: int) -> bool:
        return index in self.reported

    def in_range(self, index: int) -> bool:
        """Whether `index` can belong to the plan (always true while the plan is unknown)."""
        return self.batch_count is None or index < self.batch_count


def record(progress: FanIn, done: BatchCompleted) -> FanIn:
    """Count `done` once. A repeated index, or one outside a known plan, returns `progress` itself."""
    if progress.has(done.batch_index) or not progress.in_range(done.batch_index):
        return progress
    counts = Counts(
        processed=done.processed,
        failed=done.failed,
        deleted=done.deleted,
        skipped=done.skipped,
        documents_written=done.documents_written,
        bytes=done.bytes,
        error=done.errors[0] if done.errors else None,
    )
    return progress.model_copy(update={"reported": {**progress.reported, done.batch_index: counts}})


def planned(progress: FanIn, batch_count: int) -> FanIn:
    """Learn the plan. Reports that arrived early for an index the plan does not have are dropped."""
    kept = {i: c for i, c in progress.reported.items() if i < batch_count}
    return FanIn(batch_count=batch_count, reported=kept)


def is_complete(progress: FanIn) -> bool:
    """The plan is known and every one of its batch indexes has reported."""
    return progress.batch_count is not None and len(progress.reported) == progress.batch_count


def totals(progress: FanIn) -> Counts:
    """The sum over the distinct batch indexes reported; `error` is the lowest index's first error."""
    ordered = [progress.reported[i] for i in sorted(progress.reported)]
    return Counts(
        processed=sum(c.processed for c in ordered),
        failed=sum(c.failed for c in ordered),
        deleted=sum(c.deleted for c in ordered),
        skipped=sum(c.skipped for c in ordered),
        documents_written=sum(c.documents_written for c in ordered),
        bytes=sum(c.bytes for c in ordered),
        error=next((c.error for c in ordered if c.error is not None), None),
    )
