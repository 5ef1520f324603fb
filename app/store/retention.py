"""Retention: delete history older than a cutoff from PostgreSQL, never what is live.

What goes, when older than the cutoff:
- `sync_jobs`: finished jobs (succeeded, failed, cancelled, timed out) that finished
  before it, except each source's latest planned job (the one its kept plan in
  `sync_plans` names);
- `sync_requests`: requests answered before it whose job is gone (pruned, or none);
- `dlq`: dead letters retired before it (an open dead letter stays, whatever its age);
- the delivery ledger, when this build has one (`prune_ledger`).

What stays, whatever its age: every open job (queued, running) and its requests;
`sync_plans` and `document_write_fences` (a source's live fences: the plan and
batch stages decide on them), `applied_offsets` (the projections' fences),
`sources` and `documents` (state, not history).

Every function runs in the caller's transaction and names the schema it prunes,
so `hookstream projections rebuild` can prune a candidate schema like the live
one before comparing them (the topics keep every record: a rebuild would bring
pruned rows back).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from datetime import datetime

from psycopg import AsyncConnection, sql

from app.core.read_model import FINAL_STATUSES

Counts = dict[str, int]


async def prune_sync_jobs(conn: AsyncConnection, schema: str, older_than: datetime, live_schema: str | None = None) -> Counts:
    """Finished jobs and answered requests older than `older_than`; `live_schema` holds the kept plans."""
    s, live = sql.Identifier(schema), sql.Identifier(live_schema or schema)
    jobs = await conn.execute(sql.SQL(
        "DELETE FROM {s}.sync_jobs j WHERE j.status = ANY(%(final)s) "
        "AND j.finished_at < %(cutoff)s "  # a finished job has its time (a completion's, a cancellation's)
        "AND NOT EXISTS (SELECT 1 FROM {live}.sync_plans p WHERE p.job_id = j.job_id)").format(s=s, live=live),
        {"final": list(FINAL_STATUSES), "cutoff": older_than})
    requests = await conn.execute(sql.SQL(
        "DELETE FROM {s}.sync_requests r WHERE r.answered_at < %(cutoff)s "
        "AND (r.job_id IS NULL OR NOT EXISTS (SELECT 1 FROM {s}.sync_jobs j WHERE j.job_id = r.job_id))").format(s=s),
        {"cutoff": older_than})
    return {"sync_jobs": jobs.rowcount, "sync_requests": requests.rowcount}


async def prune_dlq(conn: AsyncConnection, schema: str, older_than: datetime, live_schema: str | None = None) -> Counts:
    """Dead letters retired before `older_than`."""
    retired = await conn.execute(sql.SQL(
        "DELETE FROM {}.dlq WHERE status = 'retired' AND retired_at < %s").format(sql.Identifier(schema)), (older_than,))
    return {"dlq": retired.rowcount}


LEDGER_MODULE = "app.store.ledger"


async def prune_ledger(conn: AsyncConnection, schema: str, older_than: datetime, live_schema: str | None = None) -> Counts:
    """The delivery ledger's rows older than `older_than`: the hook for `app.store.ledger.prune(conn,
    older_than) -> (copies, deliveries)`, when this build has that module (nothing otherwise).

    The ledger's SQL is its own module's: it is called with the search path set to `schema`."""
    try:
        ledger = importlib.import_module(LEDGER_MODULE)
    except ModuleNotFoundError:
        return {}
    path = (await (await conn.execute("SELECT current_setting('search_path')")).fetchone() or ("",))[0]
    await conn.execute("SELECT set_config('search_path', %s, true)", (sql.Identifier(schema).as_string(conn),))
    try:
        copies, deliveries = await ledger.prune(conn, older_than)
    finally:
        await conn.execute("SELECT set_config('search_path', %s, true)", (path,))
    return {"delivery_copies": copies, "deliveries": deliveries}


Prune = Callable[[AsyncConnection, str, datetime, str | None], Awaitable[Counts]]

# Per projection (app.stream.projection_registry names), what pruning its tables means.
BY_PROJECTION: dict[str, Prune] = {
    "sync_jobs": prune_sync_jobs,
    "dlq": prune_dlq,
    "ledger": prune_ledger,
}


async def prune(conn: AsyncConnection, schema: str, older_than: datetime) -> Counts:
    """Everything above, in `schema`: rows deleted per table."""
    counts: Counts = {}
    for step in BY_PROJECTION.values():
        counts.update(await step(conn, schema, older_than, None))
    return counts
