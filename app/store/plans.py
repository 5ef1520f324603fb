"""The plan of each source's latest job, kept so that planning a job again publishes the same batches.

A job is planned again when the planner stopped between publishing the job's
batches and committing its plan request (a crash, a rebalance). Listing again
need not give the same plan: a job that names no commit lists the branch as it
is now, and a full job's stale paths depend on the documents, which batches of
the first plan may have changed already. Two plans under one job id would mix
their batches (same keys, other files) in the documents and in the counts, so
the first plan of a job is kept here and a second planning publishes it again.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from pydantic import TypeAdapter

from app.events import ConfigFound, FileChange, ListingKind


@dataclass(frozen=True)
class KeptPlan:
    job_id: str
    commit: str | None
    files: list[FileChange]
    listing: ListingKind | None = None
    # The config file the plan found (and the rules it applied): published again with it.
    config: ConfigFound | None = None


_FILES = TypeAdapter(list[FileChange])


def _kept(row) -> KeptPlan | None:
    if row is None:
        return None
    job_id, commit, files, listing, config = row
    found = ConfigFound.model_validate(config) if config is not None else None
    return KeptPlan(job_id, commit, _FILES.validate_python(files), listing, found)


async def kept(conn: psycopg.AsyncConnection, source_id: str) -> KeptPlan | None:
    """The plan of the source's latest planned job, if any."""
    cur = await conn.execute(
        "SELECT job_id, commit, files, listing, config FROM sync_plans WHERE source_id = %s", (source_id,)
    )
    return _kept(await cur.fetchone())


async def keep(
    conn: psycopg.AsyncConnection,
    source_id: str,
    job_id: str,
    job_seq: int,
    commit: str | None,
    files: list[FileChange],
    listing: ListingKind | None = None,
    config: ConfigFound | None = None,
) -> KeptPlan:
    """Keep this plan unless a plan of this job or a later one is kept already; returns the plan that is kept."""
    cur = await conn.execute(
        "INSERT INTO sync_plans (source_id, job_id, job_seq, commit, files, listing, config) "
        "VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s::jsonb) "
        "ON CONFLICT (source_id) DO UPDATE SET job_id = EXCLUDED.job_id, job_seq = EXCLUDED.job_seq, "
        "commit = EXCLUDED.commit, files = EXCLUDED.files, listing = EXCLUDED.listing, config = EXCLUDED.config, "
        "planned_at = now() WHERE sync_plans.job_seq < EXCLUDED.job_seq RETURNING job_id",
        # pydantic's serializer writes the JSON in one call (10,000 files: 7 ms, 31 ms through
        # model_dump and the json module); the kept plan is read back only when it is not this one.
        (
            source_id,
            job_id,
            job_seq,
            commit,
            _FILES.dump_json(files).decode(),
            listing,
            config.model_dump_json() if config is not None else None,
        ),
    )
    if await cur.fetchone() is not None:
        return KeptPlan(job_id, commit, list(files), listing, config)
    found = await kept(conn, source_id)
    assert found is not None
    return found
