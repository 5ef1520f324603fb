"""The counts of what a file batch did, summed per job: declared here once.

`BatchCompleted` (one batch) and `SyncCompleted` (a job's sums) carry them on
the wire; the fan-in's sums (`app.core.fanin.Counts`) and a processed batch's
report (`app.core.batch_outcome.BatchCounts`) are built on the same model, and
the read model, the projections, the CLI and the tests name the fields through
`COUNT_FIELDS`. Invariant of a batch: every file is counted once, as processed,
skipped, failed or deleted; `documents_written` is the rows upserted, `bytes`
their size.
"""

from __future__ import annotations

from typing import TypedDict, cast

from pydantic import BaseModel, ConfigDict, Field


class FileCounts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    processed: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    deleted: int = Field(default=0, ge=0)
    skipped: int = Field(default=0, ge=0)
    documents_written: int = Field(default=0, ge=0)
    bytes: int = Field(default=0, ge=0)

    def counts(self) -> CountValues:
        """The six counts by name (for a model that carries them too: `BatchCompleted(**c.counts())`)."""
        return cast(CountValues, {name: getattr(self, name) for name in COUNT_FIELDS})


class CountValues(TypedDict):
    """`FileCounts.counts()`: the same six names (a test holds them equal), typed for `**` in a call."""

    processed: int
    failed: int
    deleted: int
    skipped: int
    documents_written: int
    bytes: int


COUNT_FIELDS: tuple[str, ...] = tuple(FileCounts.model_fields)


def summed(a: FileCounts, b: FileCounts) -> CountValues:
    """The counts of `a` plus those of `b`, by name."""
    return cast(CountValues, {name: getattr(a, name) + getattr(b, name) for name in COUNT_FIELDS})
