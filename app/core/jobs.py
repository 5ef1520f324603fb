"""A started job, and the wire records that announce, plan and complete it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from app.core.coalesce import JobRequest
from app.core.fanin import Counts, FanIn, totals
from app.events.config import PathRules
from app.events.control import ListingKind, SourceType
from app.events.sync import PlanRequested, SyncCompleted, SyncStarted, SyncStatus

_MILLISECOND = timedelta(milliseconds=1)


class ActiveJob(BaseModel):
    """The job a source is running: what it does, when it must end, and its fan-in so far."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job: JobRequest
    started_at: datetime
    deadline: datetime
    progress: FanIn = FanIn()
    files_listed: int = 0
    commit: str | None = None
    listing: ListingKind | None = None

    @property
    def job_id(self) -> str:
        return self.job.job_id


def job_sequence(job_id: str) -> int | None:
    """The order of a source's jobs: a job id is `<sourceId>:<offset of the request that made it>`,
    and a source's control events share one partition, so a later job has a larger offset.
    None for ids that carry no offset (a fold run without offsets)."""
    _, _, tail = job_id.rpartition(":")
    return int(tail) if tail.isdigit() else None


def plan_again(job_id: str, kept_job_id: str | None) -> Literal["list", "reuse", "stale"]:
    """What the planner does with a plan request, given the job whose plan its source keeps.

    `reuse`: the same job planned again (after a crash): publish the kept plan, the same
    batches. `stale`: a job older than the kept one, finished long ago (a source's jobs run
    one at a time): plan nothing. `list`: list the changes anew.
    """
    if kept_job_id == job_id:
        return "reuse"
    seq, kept_seq = job_sequence(job_id), job_sequence(kept_job_id) if kept_job_id else None
    if seq is not None and kept_seq is not None and seq < kept_seq:
        return "stale"
    return "list"


def sync_started(source_id: str, active: ActiveJob) -> SyncStarted:
    job = active.job
    return SyncStarted(
        source_id=source_id,
        occurred_at=active.started_at,
        request_ids=list(job.request_ids),
        job_id=job.job_id,
        mode=job.mode,
        trigger=job.trigger,
        deadline=active.deadline,
    )


def plan_requested(
    source_id: str,
    source_type: SourceType,
    config: dict[str, Any],
    active: ActiveJob,
    base: str | None,
    rules: PathRules | None = None,
) -> PlanRequested:
    """The plan request of `active`; `base` is the commit the documents were last written to completely,
    `rules` the path rules of the source's config file they were written with."""
    job = active.job
    return PlanRequested(
        job_id=job.job_id,
        source_id=source_id,
        source_type=source_type,
        source_config=dict(config),
        mode=job.mode,
        paths=list(job.paths),
        base=base,
        after=job.after,
        rules=rules,
        requested_at=active.started_at,
    )


def sync_completed(
    source_id: str, active: ActiveJob, status: SyncStatus, error: str | None, now: datetime
) -> SyncCompleted:
    """The job's one completion: its counts are the sum over the distinct batch indexes reported."""
    job, counted = active.job, totals(active.progress)
    return SyncCompleted(
        job_id=job.job_id,
        source_id=source_id,
        request_ids=list(job.request_ids),
        unlisted_requests=job.unlisted_requests,
        mode=job.mode,
        trigger=job.trigger,
        status=status,
        error=error,
        # The commit the planner listed (the head it converged to). Unknown when the job
        # ended before its plan: never the request's `after`, which is a lower bound only.
        commit=active.commit,
        listing=active.listing,
        files_listed=active.files_listed,
        **counted.counts(),
        batches=active.progress.reported,
        started_at=active.started_at,
        finished_at=now,
        # From event timestamps; clamped, since producers' clocks may disagree.
        duration_ms=max(0, (now - active.started_at) // _MILLISECOND),
    )


def fanin_outcome(counted: Counts) -> tuple[SyncStatus, str | None]:
    """A fully reported job is `failed` when every file it touched failed, else `succeeded`.

    A zero-file plan succeeds. A job with some failed files succeeds and names
    the failures (count and first error) in `error`.
    """
    if counted.failed and not (counted.processed or counted.deleted or counted.skipped):
        return "failed", f"every file failed ({counted.failed}): {counted.error or 'no error reported'}"
    if counted.failed:
        return "succeeded", f"{counted.failed} file(s) failed; first error: {counted.error or 'none reported'}"
    return "succeeded", None


def timeout_error(active: ActiveJob) -> str:
    expected = active.progress.batch_count
    return (
        f"deadline {active.deadline.isoformat()} passed with {active.progress.reported} of "
        f"{expected if expected is not None else 'an unknown number of'} batches reported"
    )
