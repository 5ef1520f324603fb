"""Plans, file batches, lifecycle events and completions of sync jobs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from app.events.base import Record, Timestamp
from app.events.config import PathRules
from app.events.control import ListingKind, SourceType, SyncMode
from app.events.counts import FileCounts

SyncStatus = Literal["succeeded", "failed", "cancelled", "timed_out"]


class PlanRequested(Record):
    """`hookstream.sync.plans`, key jobId: list the changes of a job's source.

    `base` is the commit the source's documents were last written to completely (the
    last job that succeeded with no failed file), None when unknown: the planner then
    lists everything. The target is always the head of the tracked branch as the
    adapter finds it; `after` (the newest push's) is a lower bound only, and `paths`
    are hints an adapter may use to fetch less. `rules` are the path rules of the source's
    config file the documents were written with (None when unknown): when the config at
    the head selects other paths, the planner lists everything.
    """

    type: Literal["sync.plan_requested"] = "sync.plan_requested"
    job_id: str
    source_id: str
    source_type: SourceType
    source_config: dict[str, Any] = Field(default_factory=dict)
    mode: SyncMode
    paths: list[str] = Field(default_factory=list)
    base: str | None = None
    after: str | None = None
    rules: PathRules | None = None
    requested_at: Timestamp


class FileChange(Record):
    type: Literal["file.change"] = "file.change"
    path: str
    change: Literal["upsert", "delete"]
    # Adapter-specific content handle (a git blob id, a GitHub sha).
    blob: str | None = None
    size: int | None = None


class FileBatch(Record):
    """`hookstream.files.batches`, key jobId/batchIndex: one slice of a job's files."""

    type: Literal["files.batch"] = "files.batch"
    job_id: str
    source_id: str
    source_type: SourceType
    source_config: dict[str, Any] = Field(default_factory=dict)
    batch_index: int = Field(ge=0)
    batch_count: int = Field(ge=1)
    commit: str | None = None
    files: list[FileChange]


class JobCancelled(Record):
    """`hookstream.sync.cancellations`, key jobId, compacted: read as a global table by batch workers."""

    type: Literal["sync.job_cancelled"] = "sync.job_cancelled"
    job_id: str
    source_id: str
    cancelled_at: Timestamp


class Lifecycle(Record):
    """`hookstream.sync.events`, key sourceId: what happened to a request or a job."""

    source_id: str
    occurred_at: Timestamp
    request_ids: list[str] = Field(default_factory=list)
    job_id: str | None = None


class SyncQueued(Lifecycle):
    type: Literal["sync.queued"] = "sync.queued"
    mode: SyncMode


class SyncCoalesced(Lifecycle):
    type: Literal["sync.coalesced"] = "sync.coalesced"
    mode: SyncMode


class SyncDeduplicated(Lifecycle):
    type: Literal["sync.deduplicated"] = "sync.deduplicated"
    idempotency_key: str
    # The job holding the key, and its status or result when known.
    held_by_job_id: str | None = None
    held_status: str | None = None


class SyncStarted(Lifecycle):
    type: Literal["sync.started"] = "sync.started"
    mode: SyncMode
    trigger: str
    deadline: Timestamp


class SyncCancelled(Lifecycle):
    type: Literal["sync.cancelled"] = "sync.cancelled"
    reason: str


class SyncRejected(Lifecycle):
    type: Literal["sync.rejected"] = "sync.rejected"
    reason: str


class SyncIgnored(Lifecycle):
    """A request answered by a counted rule, starting nothing (a push to a branch the source does not track)."""

    type: Literal["sync.ignored"] = "sync.ignored"
    rule: str


class SyncCompleted(FileCounts, Record):  # the counts are FileCounts', summed over the job's batches
    """`hookstream.sync.completed`, key sourceId: a job's result, with the real counts."""

    type: Literal["sync.completed"] = "sync.completed"
    job_id: str
    source_id: str
    request_ids: list[str]
    # Requests served beyond the listed ids (a burst coalesced into one job); each was answered
    # by a `sync.coalesced` naming this job.
    unlisted_requests: int = Field(default=0, ge=0)
    mode: SyncMode
    trigger: str
    status: SyncStatus
    error: str | None = None
    commit: str | None = None
    # How the job listed its changes; `unchanged`: the documents were at the head already.
    listing: ListingKind | None = None
    files_listed: int = 0
    batches: int = 0
    started_at: Timestamp
    finished_at: Timestamp
    duration_ms: int = Field(ge=0)


LIFECYCLE_EVENTS = (SyncQueued, SyncCoalesced, SyncDeduplicated, SyncStarted, SyncCancelled, SyncRejected, SyncIgnored)
