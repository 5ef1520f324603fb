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

The source's config file decides which paths are written (`app.sync.config_detection`):
a listing, full or diff, keeps only the paths its rules select, so a diff of an
excluded path writes nothing; when the config at the head selects other paths than
the rules the documents were written with (`PlanRequested.rules`), the job lists
everything, and the documents no longer selected are deleted as stale.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core import path_rules
from app.core.batches import file_batches
from app.core.config_file import config_files
from app.core.jobs import job_sequence, plan_again
from app.core.retry import RetryPolicy
from app.events import ConfigFound, FileBatch, FileChange, ListingKind, PlanRequested
from app.sources import Listing, SourceAdapter
from app.store import documents
from app.store import plans as kept_plans
from app.store.db import in_transaction
from app.sync.config_detection import config_at, touches_config


@dataclass(frozen=True)
class Plan:
    """A job's plan: the commit it converges to, how it was listed, its files and batches."""

    commit: str | None
    listing: ListingKind
    files: list[FileChange]
    batches: list[FileBatch]
    how: str
    # The config file found at `commit` and the rules applied; None when it was not read.
    config: ConfigFound | None = None


async def plan_job(
    request: PlanRequested, adapter: SourceAdapter, pool, batch_size: int, retry: RetryPolicy | None = None
) -> Plan | None:
    """The plan of `request`'s job, or None when a later job of its source was planned (or has written)
    since: this request is then a replay of a finished job's. SourceError when the source cannot be listed;
    with `retry`, StoreUnavailable when PostgreSQL stays unreachable past it."""
    seq = job_sequence(request.job_id)
    kept = None
    if seq is not None:
        kept = await in_transaction(
            pool, lambda conn: kept_plans.kept(conn, request.source_id), "reading the kept plan", retry=retry
        )
        decision = plan_again(request.job_id, kept.job_id if kept is not None else None)
        if decision == "stale":
            return None
        if decision == "reuse":
            assert kept is not None
            return _cut(request, kept.commit, kept.listing, kept.files, batch_size, "the kept plan, again", kept.config)

    listing = await adapter.list_changes(request)
    listing, config = await _with_config(request, adapter, listing)
    rules = config.rules if config is not None else request.rules
    listed = list(listing.files) if rules is None else path_rules.select(rules, listing.files, lambda f: f.path)

    async def keep(conn) -> kept_plans.KeptPlan | None:
        if seq is not None and not await documents.claim_writes(conn, request.source_id, seq):
            return None
        files = listed
        if listing.kind == "full":
            # A full listing also deletes the documents whose paths the head no longer has, or its
            # config no longer selects.
            keep_paths = {f.path for f in listed}
            have = await documents.paths(conn, request.source_id)
            files = listed + [FileChange(path=p, change="delete") for p in sorted(have - keep_paths)]
        if seq is None:
            return kept_plans.KeptPlan(request.job_id, listing.commit, files, listing.kind, config)
        return await kept_plans.keep(
            conn, request.source_id, request.job_id, seq, listing.commit, files, listing.kind, config
        )

    planned = await in_transaction(pool, keep, "keeping the plan", retry=retry)
    if planned is None or planned.job_id != request.job_id:
        return None
    how = listing.kind if listing.reason is None else f"{listing.kind}: {listing.reason}"
    if len(listed) < len(listing.files):
        how += f"; {len(listing.files) - len(listed)} path(s) not selected by the config"
    return _cut(request, planned.commit, planned.listing, planned.files, batch_size, how, planned.config)


async def _with_config(
    request: PlanRequested, adapter: SourceAdapter, listing: Listing
) -> tuple[Listing, ConfigFound | None]:
    """Read the config file at the listing's commit when it may differ from the one the documents
    were written with; a listing becomes full when the config selects other paths than they were."""
    if not adapter.reads_config_files or listing.commit is None:
        return listing, None
    names = config_files(request.source_config)
    known = request.rules is not None
    if known and listing.kind != "full" and not touches_config(listing.files, names):
        return listing, None  # the config file is the one at the documents' commit
    config = await config_at(adapter, listing.commit, names, request.rules)
    if listing.kind != "full" and not path_rules.same_selection(config.rules, request.rules):
        why = (
            "the config file selects other paths" if known else "the config the documents were written with is unknown"
        )
        listing = Listing(await adapter.list_full(listing.commit), listing.commit, "full", why)
    return listing, config


def _cut(
    request: PlanRequested,
    commit: str | None,
    listing: ListingKind | None,
    files: list[FileChange],
    batch_size: int,
    how: str,
    config: ConfigFound | None = None,
) -> Plan:
    batches = file_batches(
        request.job_id, request.source_id, request.source_type, request.source_config, commit, files, batch_size
    )
    return Plan(commit, listing or "full", files, batches, how, config)
