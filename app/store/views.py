"""Read-side queries for the console and the worker's gauges: overview, sources, jobs, dead letters.

Read-only; each function takes a connection on the live schema. The rows are
the projections' (app/core/read_model.py, app/core/dlq.py, app/core/ledger.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from app.core import dlq, read_model
from app.store.sync_records import LIVE_JOBS

_JOBS = sql.SQL("SELECT {} FROM {}").format(
    sql.SQL(", ").join(map(sql.Identifier, read_model.JOB_COLUMNS)), sql.SQL(LIVE_JOBS)
)
_DLQ = sql.SQL("SELECT {} FROM dlq").format(sql.SQL(", ").join(map(sql.Identifier, dlq.COLUMNS)))
_JOB_ORDER = sql.SQL(
    " ORDER BY coalesce(started_at, queued_at, cancelled_at, finished_at) DESC NULLS LAST, job_id DESC"
)


async def open_dead_letters(conn: AsyncConnection) -> int:
    row = await (await conn.execute("SELECT count(*) FROM dlq WHERE status = 'open'")).fetchone()
    return int(row[0]) if row is not None else 0


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
    rows = await (await cursor.execute(_JOBS + where + _JOB_ORDER + sql.SQL(" LIMIT %(limit)s"), params)).fetchall()
    return [read_model.job_from_columns(r) for r in rows]


@dataclass(frozen=True)
class SourceView:
    source: read_model.SourceRow
    state: str  # idle | running | queued (a job running and one queued shows as queued)
    running: read_model.SyncJobRow | None
    queued: read_model.SyncJobRow | None
    last: read_model.SyncJobRow | None  # the latest final job


async def sources(conn: AsyncConnection, limit: int = 200) -> list[SourceView]:
    cursor = conn.cursor(row_factory=dict_row)
    rows = await (
        await cursor.execute(
            sql.SQL("SELECT {} FROM sources ORDER BY source_id LIMIT %s").format(
                sql.SQL(", ").join(map(sql.Identifier, read_model.SOURCE_COLUMNS))
            ),
            (limit,),
        )
    ).fetchall()
    found = [read_model.source_from_columns(r) for r in rows]
    ids = [s.source_id for s in found]
    active = await (
        await cursor.execute(
            _JOBS + sql.SQL(" WHERE source_id = ANY(%s) AND status IN ('queued', 'running')") + _JOB_ORDER, (ids,)
        )
    ).fetchall()
    last = await (
        await cursor.execute(
            sql.SQL(
                "SELECT DISTINCT ON (source_id) {} FROM sync_jobs WHERE source_id = ANY(%s) "
                "AND status IN ('succeeded', 'failed', 'cancelled', 'timed_out') "
                "ORDER BY source_id, finished_at DESC NULLS LAST, job_id DESC"
            ).format(sql.SQL(", ").join(map(sql.Identifier, read_model.JOB_COLUMNS))),
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


async def dead_letters(conn: AsyncConnection, status: str | None = "open", limit: int = 100) -> list[dlq.DeadLetterRow]:
    cursor = conn.cursor(row_factory=dict_row)
    where = sql.SQL(" WHERE status = %(status)s") if status else sql.SQL("")
    rows = await (
        await cursor.execute(
            _DLQ + where + sql.SQL(" ORDER BY last_failed_at DESC, dead_letter_id LIMIT %(limit)s"),
            {"status": status, "limit": limit},
        )
    ).fetchall()
    return [dlq.from_columns(r) for r in rows]


async def dead_letter(conn: AsyncConnection, dead_letter_id: str) -> dlq.DeadLetterRow | None:
    cursor = conn.cursor(row_factory=dict_row)
    row = await (await cursor.execute(_DLQ + sql.SQL(" WHERE dead_letter_id = %s"), (dead_letter_id,))).fetchone()
    return dlq.from_columns(row) if row is not None else None
