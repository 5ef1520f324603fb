"""The `dlq` rows: the projection's locked read and write (`project_dead_letters`), and the listings.

What a row holds is decided by `app.core.dlq` (`fold`); this module only reads
and writes it.
"""

from __future__ import annotations

from datetime import datetime

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from app.core import dlq
from app.store import statements

_LOCKED = statements.select_for_update("dlq", dlq.COLUMNS, "dead_letter_id")
_UPSERT = statements.upsert("dlq", dlq.COLUMNS, "dead_letter_id")
_SELECT = statements.select("dlq", dlq.COLUMNS)


async def locked(conn: AsyncConnection, dead_letter_id: str) -> dlq.DeadLetterRow | None:
    """The dead letter's row, locked until the transaction ends; None when it has none."""
    cursor = conn.cursor(row_factory=dict_row)
    found = await (await cursor.execute(_LOCKED, (dead_letter_id,))).fetchone()
    return dlq.from_columns(found) if found is not None else None


async def write(conn: AsyncConnection, row: dlq.DeadLetterRow) -> None:
    values = dlq.to_columns(row)
    values["original"] = Jsonb(values["original"]) if values["original"] is not None else None
    await conn.execute(_UPSERT, values)


async def open_count(conn: AsyncConnection) -> int:
    row = await (await conn.execute("SELECT count(*) FROM dlq WHERE status = 'open'")).fetchone()
    return int(row[0]) if row is not None else 0


async def listing(
    conn: AsyncConnection,
    status: str | None = "open",
    stage: str | None = None,
    plugin: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    oldest_first: bool = False,
) -> list[dlq.DeadLetterRow]:
    """The dead letters with this status, stage and plugin (None: any) that last failed at or after
    `since`: the latest failure first, or with `oldest_first` the earliest first failure first."""
    clauses: list[sql.Composable] = []
    for name, value in (("status", status), ("stage", stage), ("plugin", plugin)):
        if value is not None:
            clauses.append(sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)))
    if since is not None:
        clauses.append(sql.SQL("last_failed_at >= %(since)s"))
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    order = sql.SQL(
        " ORDER BY first_failed_at, dead_letter_id" if oldest_first else " ORDER BY last_failed_at DESC, dead_letter_id"
    )
    limited = sql.SQL(" LIMIT %(limit)s") if limit is not None else sql.SQL("")
    cursor = conn.cursor(row_factory=dict_row)
    params = {"status": status, "stage": stage, "plugin": plugin, "since": since, "limit": limit}
    rows = await (await cursor.execute(_SELECT + where + order + limited, params)).fetchall()
    return [dlq.from_columns(r) for r in rows]


async def by_id(conn: AsyncConnection, dead_letter_id: str) -> dlq.DeadLetterRow | None:
    cursor = conn.cursor(row_factory=dict_row)
    row = await (await cursor.execute(_SELECT + sql.SQL(" WHERE dead_letter_id = %s"), (dead_letter_id,))).fetchone()
    return dlq.from_columns(row) if row is not None else None


async def by_prefix(conn: AsyncConnection, prefix: str, limit: int) -> list[dlq.DeadLetterRow]:
    """The dead letters whose id starts with `prefix` (taken literally), by id."""
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    cursor = conn.cursor(row_factory=dict_row)
    rows = await (
        await cursor.execute(
            _SELECT + sql.SQL(" WHERE dead_letter_id LIKE %s ORDER BY dead_letter_id LIMIT %s"), (pattern, limit)
        )
    ).fetchall()
    return [dlq.from_columns(r) for r in rows]
