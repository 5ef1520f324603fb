"""Fan-in of a job's batch completions: each batch index counts once, whatever the order.

Batch completions may arrive before the plan, twice, or out of order. A job's
progress is the plan's batch count (once known) and the counts of the first
report of each batch index. The job is complete when the plan is known and every
index `0 .. batch_count-1` has reported.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ModelWrapValidatorHandler, model_validator

from app.events.control import BatchCompleted
from app.events.counts import FileCounts, summed


class Counts(FileCounts):
    """What one batch (or, summed, one job) did (`FileCounts`). `error` is the first error reported, if any."""

    error: str | None = None


class FanIn(BaseModel):
    """A job's fan-in progress. `batch_count` is None until the plan is known.

    Its size does not grow with the plan: the orchestrator stores the whole state of a
    source after every report, so one record per batch would make a job of n batches
    cost O(n^2) in JSON (2,000 batches: ~200 MB parsed and written). Once the plan is
    known, a report only sets its index's bit in `done` (a hex number) and adds to
    `sums`; reports that arrive before the plan wait in `early`, since the plan may
    not have their index.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_count: int | None = None
    done: str = "0"  # bit i set: index i reported (and counted in `sums`)
    sums: Counts = Counts()
    # The index whose error `sums.error` is: the lowest index that reported one.
    error_index: int | None = None
    early: dict[int, Counts] = {}

    @model_validator(mode="wrap")
    @classmethod
    def _from_per_batch_records(cls, data: Any, handler: ModelWrapValidatorHandler[FanIn]) -> FanIn:
        """State written before the compact form (`reported`: index -> counts) still loads."""
        if isinstance(data, dict) and "reported" in data:
            legacy = {int(i): Counts.model_validate(c) for i, c in data["reported"].items()}
            progress = handler({k: v for k, v in data.items() if k != "reported"})
            progress = progress.model_copy(update={"early": {**progress.early, **legacy}})
            return planned(progress, progress.batch_count) if progress.batch_count is not None else progress
        return handler(data)

    def done_bits(self) -> int:
        """`done` as a number: bit i set when index i reported."""
        return int(self.done, 16)

    def has(self, index: int) -> bool:
        return index in self.early or (self.done_bits() >> index) & 1 == 1

    def in_range(self, index: int) -> bool:
        """Whether `index` can belong to the plan (always true while the plan is unknown)."""
        return self.batch_count is None or index < self.batch_count

    @property
    def reported(self) -> int:
        """How many distinct batch indexes have reported."""
        return self.done_bits().bit_count() + len(self.early)


def _counts(done: BatchCompleted) -> Counts:
    return Counts(**done.counts(), error=done.errors[0] if done.errors else None)


def _add(sums: Counts, error_index: int | None, index: int, c: Counts) -> tuple[Counts, int | None]:
    """`sums` plus batch `index`'s counts; the error kept is the lowest index's."""
    error = sums.error
    if c.error is not None and (error_index is None or index < error_index):
        error, error_index = c.error, index
    return Counts(**summed(sums, c), error=error), error_index


def _counted(progress: FanIn, index: int, c: Counts) -> FanIn:
    sums, error_index = _add(progress.sums, progress.error_index, index, c)
    return progress.model_copy(
        update={"done": format(progress.done_bits() | (1 << index), "x"), "sums": sums, "error_index": error_index}
    )


def record(progress: FanIn, done: BatchCompleted) -> FanIn:
    """Count `done` once. A repeated index, or one outside a known plan, returns `progress` itself."""
    if progress.has(done.batch_index) or not progress.in_range(done.batch_index):
        return progress
    if progress.batch_count is None:
        return progress.model_copy(update={"early": {**progress.early, done.batch_index: _counts(done)}})
    return _counted(progress, done.batch_index, _counts(done))


def planned(progress: FanIn, batch_count: int) -> FanIn:
    """Learn the plan. Reports that arrived early for an index the plan does not have are dropped."""
    known = FanIn(batch_count=batch_count, done=progress.done, sums=progress.sums, error_index=progress.error_index)
    for index, c in sorted(progress.early.items()):
        if index < batch_count:
            known = _counted(known, index, c)
    return known


def is_complete(progress: FanIn) -> bool:
    """The plan is known and every one of its batch indexes has reported."""
    return progress.batch_count is not None and progress.reported == progress.batch_count


def totals(progress: FanIn) -> Counts:
    """The sum over the distinct batch indexes reported; `error` is the lowest index's first error."""
    sums, error_index = progress.sums, progress.error_index
    for index, c in sorted(progress.early.items()):
        sums, error_index = _add(sums, error_index, index, c)
    return sums
