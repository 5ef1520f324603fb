"""Planning one job: list its changes through the source adapter, keep the plan, cut the batches.

A job's plan is decided once (`app.store.plans`): planning the same job again
after a crash publishes the kept plan, the same batches under the same keys,
whatever the branch or the documents became meanwhile. A plan request of a job
older than the kept one plans nothing.

Before the plan is kept, the job takes the source's document write fence
(`documents.claim_writes`) in the same transaction that reads the documents'
paths for a full listing's deletions: a batch of an older job still in flight
(a timed-out or cancelled one) then writes nothing, so it cannot add a path
the full listing has already decided to keep absent.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.batches import file_batches
from app.core.jobs import job_sequence, plan_again
from app.events import FileBatch, FileChange, ListingKind, PlanRequested
from app.sources import SourceAdapter
from app.store import documents, plans as kept_plans
from app.store.db import in_transaction


@dataclass(frozen=True)
class Plan:
    """A job's plan: the commit it converges to, how it was listed, its files and batches."""

    commit: str | None
    listing: ListingKind
    files: list[FileChange]
    batches: list[FileBatch]
    how: str


async def plan_job(request: PlanRequested, adapter: SourceAdapter, pool, batch_size: int) -> Plan | None:
    """The plan of `request`'s job, or None when a later job of its source was planned (or has written)
    since: this request is then a replay of a finished job's. SourceError when the source cannot be listed."""
    seq = job_sequence(request.job_id)
    kept = None
    if seq is not None:
        kept = await in_transaction(pool, lambda conn: kept_plans.kept(conn, request.source_id), "reading the kept plan")
        decision = plan_again(request.job_id, kept.job_id if kept is not None else None)
        if decision == "stale":
            return None
        if decision == "reuse":
            assert kept is not None
            return _cut(request, kept.commit, kept.listing, kept.files, batch_size, "the kept plan, again")

    listing = await adapter.list_changes(request)
    listed = list(listing.files)

    async def keep(conn) -> kept_plans.KeptPlan | None:
        if seq is not None and not await documents.claim_writes(conn, request.source_id, seq):
            return None
        files = listed
        if listing.kind == "full":
            # A full listing also deletes the documents whose paths the head no longer has.
            keep_paths = {f.path for f in listed}
            have = await documents.paths(conn, request.source_id)
            files = listed + [FileChange(path=p, change="delete") for p in sorted(have - keep_paths)]
        if seq is None:
            return kept_plans.KeptPlan(request.job_id, listing.commit, files, listing.kind)
        return await kept_plans.keep(conn, request.source_id, request.job_id, seq, listing.commit, files, listing.kind)

    planned = await in_transaction(pool, keep, "keeping the plan")
    if planned is None or planned.job_id != request.job_id:
        return None
    how = listing.kind if listing.reason is None else f"{listing.kind}: {listing.reason}"
    return _cut(request, planned.commit, planned.listing, planned.files, batch_size, how)


def _cut(request: PlanRequested, commit: str | None, listing: ListingKind | None, files: list[FileChange],
         batch_size: int, how: str) -> Plan:
    batches = file_batches(request.job_id, request.source_id, request.source_type, request.source_config,
                           commit, files, batch_size)
    return Plan(commit, listing or "full", files, batches, how)
