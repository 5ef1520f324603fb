"""Retention: delete history older than a cutoff from PostgreSQL, never what is live.

What goes, when older than the cutoff:
- `sync_jobs`: finished jobs (succeeded, failed, cancelled, timed out) that finished
  before it, except each source's latest planned job (the one its kept plan in
  `sync_plans` names);
- `sync_requests`: requests answered before it whose job is gone (pruned, or none);
- `sync_batches` and `sync_records` (where each batch and record of a job or request is,
  for `hookstream trace`): those before it whose job is gone, or whose request is;
- `dlq`: dead letters retired before it (an open dead letter stays, whatever its age);
- the delivery ledger: copies and deliveries received before the cutoff (`prune_ledger`).

What stays, whatever its age: every open job (queued, running) and its requests;
`sync_plans` and `document_write_fences` (a source's live fences: the plan and
batch stages decide on them), `applied_offsets` (the projections' fences),
`sources` and `documents` (state, not history).

Every function runs in the caller's transaction and names the schema it prunes.
`hookstream projections rebuild` prunes its candidate schema with `absent_from`
the live one: only the rows retention already removed from the live tables go
(the topics keep every record, so a rebuild would bring them back); the live
tables are not touched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from psycopg import AsyncConnection, sql

from app.core.read_model import FINAL_STATUSES

Counts = dict[str, int]


def _absent(alias: str, table: str, key: str, absent_from: str | None) -> sql.Composable:
    """With `absent_from`: only rows that schema's table no longer has (what its retention removed)."""
    if absent_from is None:
        return sql.SQL("")
    return sql.SQL(" AND NOT EXISTS (SELECT 1 FROM {}.{} o WHERE o.{} = {}.{})").format(
        sql.Identifier(absent_from),
        sql.Identifier(table),
        sql.Identifier(key),
        sql.Identifier(alias),
        sql.Identifier(key),
    )


async def prune_sync_jobs(
    conn: AsyncConnection,
    schema: str,
    older_than: datetime,
    live_schema: str | None = None,
    absent_from: str | None = None,
) -> Counts:
    """Finished jobs and answered requests older than `older_than`; `live_schema` holds the kept plans."""
    s, live = sql.Identifier(schema), sql.Identifier(live_schema or schema)
    jobs = await conn.execute(
        sql.SQL(
            "DELETE FROM {s}.sync_jobs j WHERE j.status = ANY(%(final)s) "
            "AND j.finished_at < %(cutoff)s "  # a finished job has its time (a completion's, a cancellation's)
            "AND NOT EXISTS (SELECT 1 FROM {live}.sync_plans p WHERE p.job_id = j.job_id)"
        ).format(s=s, live=live)
        + _absent("j", "sync_jobs", "job_id", absent_from),
        {"final": list(FINAL_STATUSES), "cutoff": older_than},
    )
    requests = await conn.execute(
        sql.SQL(
            "DELETE FROM {s}.sync_requests r WHERE r.answered_at < %(cutoff)s "
            "AND (r.job_id IS NULL OR NOT EXISTS (SELECT 1 FROM {s}.sync_jobs j WHERE j.job_id = r.job_id))"
        ).format(s=s)
        + _absent("r", "sync_requests", "request_id", absent_from),
        {"cutoff": older_than},
    )
    batches = await conn.execute(
        sql.SQL(
            "DELETE FROM {s}.sync_batches b WHERE b.completed_at < %(cutoff)s "
            "AND NOT EXISTS (SELECT 1 FROM {s}.sync_jobs j WHERE j.job_id = b.job_id)"
        ).format(s=s)
        + _absent("b", "sync_batches", "batch_id", absent_from),
        {"cutoff": older_than},
    )
    records = await conn.execute(
        sql.SQL(
            "DELETE FROM {s}.sync_records r WHERE r.occurred_at < %(cutoff)s AND CASE WHEN r.job_id IS NULL "
            "THEN NOT EXISTS (SELECT 1 FROM {s}.sync_requests q WHERE q.request_id = ANY(r.request_ids)) "
            "ELSE NOT EXISTS (SELECT 1 FROM {s}.sync_jobs j WHERE j.job_id = r.job_id) END"
        ).format(s=s)
        + _absent("r", "sync_records", "record_id", absent_from),
        {"cutoff": older_than},
    )
    return {
        "sync_jobs": jobs.rowcount,
        "sync_requests": requests.rowcount,
        "sync_batches": batches.rowcount,
        "sync_records": records.rowcount,
    }


async def prune_dlq(
    conn: AsyncConnection,
    schema: str,
    older_than: datetime,
    live_schema: str | None = None,
    absent_from: str | None = None,
) -> Counts:
    """Dead letters retired before `older_than`."""
    retired = await conn.execute(
        sql.SQL("DELETE FROM {}.dlq d WHERE d.status = 'retired' AND d.retired_at < %s").format(sql.Identifier(schema))
        + _absent("d", "dlq", "dead_letter_id", absent_from),
        (older_than,),
    )
    return {"dlq": retired.rowcount}


async def prune_ledger(
    conn: AsyncConnection,
    schema: str,
    older_than: datetime,
    live_schema: str | None = None,
    absent_from: str | None = None,
) -> Counts:
    """The delivery ledger's copies received before `older_than`, and its deliveries last
    received before it (a delivery with a recent copy stays, with its old copies gone)."""
    s = sql.Identifier(schema)
    copies = await conn.execute(
        sql.SQL("DELETE FROM {s}.delivery_copies c WHERE c.received_at < %(cutoff)s").format(s=s)
        + _absent("c", "delivery_copies", "copy_id", absent_from),
        {"cutoff": older_than},
    )
    deliveries = await conn.execute(
        sql.SQL("DELETE FROM {s}.deliveries d WHERE d.last_received_at < %(cutoff)s").format(s=s)
        + _absent("d", "deliveries", "key", absent_from),
        {"cutoff": older_than},
    )
    return {"delivery_copies": copies.rowcount, "deliveries": deliveries.rowcount}


Prune = Callable[[AsyncConnection, str, datetime, str | None, str | None], Awaitable[Counts]]

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
        counts.update(await step(conn, schema, older_than, None, None))
    return counts
