"""Read-side queries for the console, the CLI and the worker's gauges: jobs, and sources with their jobs.

Read-only; each function takes a connection on the live schema. The rows are
the projections' (app/core/read_model.py); dead letters are read in
app/store/dead_letters.py, deliveries in app/store/ledger.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from app.core import read_model
from app.store import sources as source_rows
from app.store import statements
from app.store.sync_records import JOB_ORDER, SELECT_LIVE_JOBS


async def job_counts(conn: AsyncConnection) -> dict[str, int]:
    """Jobs queued and running now."""
    rows = await (
        await conn.execute(
            "SELECT status, count(*) FROM sync_jobs WHERE status IN ('queued', 'running') GROUP BY status"
        )
    ).fetchall()
    counts = {"queued": 0, "running": 0}
    counts.update({status: n for status, n in rows})
    return counts


async def jobs(
    conn: AsyncConnection, status: str | None = None, source: str | None = None, limit: int = 50
) -> list[read_model.SyncJobRow]:
    """Jobs with this status (`active`: queued or running) of this source (None: any), latest first."""
    clauses: list[sql.Composable] = []
    params: dict[str, Any] = {"limit": limit}
    if status == "active":
        clauses.append(sql.SQL("status IN ('queued', 'running')"))
    elif status:
        clauses.append(sql.SQL("status = %(status)s"))
        params["status"] = status
    if source:
        clauses.append(sql.SQL("source_id = %(source)s"))
        params["source"] = source
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    cursor = conn.cursor(row_factory=dict_row)
    rows = await (
        await cursor.execute(SELECT_LIVE_JOBS + where + JOB_ORDER + sql.SQL(" LIMIT %(limit)s"), params)
    ).fetchall()
    return [read_model.job_from_columns(r) for r in rows]


@dataclass(frozen=True)
class SourceView:
    source: read_model.SourceRow
    state: str  # idle | running | queued (a job running and one queued shows as queued)
    running: read_model.SyncJobRow | None
    queued: read_model.SyncJobRow | None
    last: read_model.SyncJobRow | None  # the latest final job


async def sources(conn: AsyncConnection, limit: int = 200) -> list[SourceView]:
    found = await source_rows.listing(conn, limit=limit)
    cursor = conn.cursor(row_factory=dict_row)
    ids = [s.source_id for s in found]
    active = await (
        await cursor.execute(
            SELECT_LIVE_JOBS + sql.SQL(" WHERE source_id = ANY(%s) AND status IN ('queued', 'running')") + JOB_ORDER,
            (ids,),
        )
    ).fetchall()
    last = await (
        await cursor.execute(
            sql.SQL(
                "SELECT DISTINCT ON (source_id) {} FROM sync_jobs WHERE source_id = ANY(%s) "
                "AND status IN ('succeeded', 'failed', 'cancelled', 'timed_out') "
                "ORDER BY source_id, finished_at DESC NULLS LAST, job_id DESC"
            ).format(statements.columns(read_model.JOB_COLUMNS)),
            (ids,),
        )
    ).fetchall()
    running: dict[str, read_model.SyncJobRow] = {}
    queued: dict[str, read_model.SyncJobRow] = {}
    for r in map(read_model.job_from_columns, active):
        (running if r.status == "running" else queued).setdefault(r.source_id, r)
    finals = {r["source_id"]: read_model.job_from_columns(r) for r in last}
    views = []
    for s in found:
        state = "queued" if s.source_id in queued else "running" if s.source_id in running else "idle"
        views.append(SourceView(s, state, running.get(s.source_id), queued.get(s.source_id), finals.get(s.source_id)))
    return views
