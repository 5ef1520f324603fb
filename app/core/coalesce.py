"""What a job will do, and how queued requests merge into one job (docs/architecture.md, per-source orchestration).

Rules: full absorbs incremental, whichever came first; incrementals take the
union of their changed paths (hints) and the last `after`. The merged job keeps
every request id it serves, in arrival order.

Which commit a job writes is not decided here: syncs are level-triggered, the
planner compares the commit the documents are at with the tracked branch's head
(`app.core.convergence`). So no request's `before` is kept: a diff from a push's
own `before` would be wrong whenever the documents were not at that commit.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from app.events.control import SyncMode, SyncRequested

# Path hints beyond this many are dropped (the diff decides): keeps a source's state bounded
# however many pushes coalesce. Adapters list changes from a diff or a full listing, not from hints.
MAX_PATH_HINTS = 1000
# Request ids a job lists at most (its completion names them); later ones coalesced into it are
# counted in `unlisted_requests`, each answered by its own `sync.coalesced` naming the job.
MAX_LISTED_REQUESTS = 500


class JobRequest(BaseModel):
    """One request, or several coalesced into one, with the job id that will run it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    mode: SyncMode
    trigger: str
    request_ids: tuple[str, ...]
    unlisted_requests: int = 0
    # Changed-path hints of an incremental job; empty means "whatever the diff says".
    paths: tuple[str, ...] = ()
    # The newest request's `after`: a lower bound on the commit to reach, never a target.
    after: str | None = None
    requested_at: datetime


def job_for(job_id: str, request: SyncRequested, now: datetime) -> JobRequest:
    """The job that runs `request` alone."""
    full = request.mode == "full"
    return JobRequest(
        job_id=job_id,
        mode=request.mode,
        trigger=request.trigger,
        request_ids=(request.request_id,),
        paths=() if full or len(set(request.paths)) > MAX_PATH_HINTS else tuple(dict.fromkeys(request.paths)),
        after=request.after,
        requested_at=now,
    )


def merge(job: JobRequest, request: SyncRequested) -> JobRequest:
    """Coalesce `request` into the queued `job`; the job keeps its id and its first request time.

    A full job carries no paths (it lists everything at the head).
    An incremental without path hints makes the union hint-free too: the union
    with "everything the diff says" is everything the diff says; so does a union
    of more than `MAX_PATH_HINTS` paths. `after` is the last one given: a request
    that names no commit does not move the target back.
    """
    ids, unlisted = job.request_ids, job.unlisted_requests
    if request.request_id not in ids:
        if len(ids) < MAX_LISTED_REQUESTS:
            ids = (*ids, request.request_id)
        else:
            unlisted += 1
    after = request.after if request.after is not None else job.after
    if job.mode == "full" or request.mode == "full":
        # The trigger of a merged full job is that of the request that made it full.
        trigger = job.trigger if job.mode == "full" else request.trigger
        return job.model_copy(
            update={
                "mode": "full",
                "trigger": trigger,
                "request_ids": ids,
                "unlisted_requests": unlisted,
                "paths": (),
                "after": after,
            }
        )
    paths: tuple[str, ...] = ()
    if job.paths and request.paths:
        paths = tuple(dict.fromkeys((*job.paths, *request.paths)))
        if len(paths) > MAX_PATH_HINTS:
            paths = ()
    return job.model_copy(update={"request_ids": ids, "unlisted_requests": unlisted, "paths": paths, "after": after})
