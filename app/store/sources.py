"""The `sources` rows: the projection's locked read and write (`project_sources`), and the listings.

What a row holds is decided by `app.core.read_model` (`source_after`); this
module only reads and writes it.
"""

from __future__ import annotations

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from app.core import read_model
from app.store import statements

_LOCKED = statements.select_for_update("sources", read_model.SOURCE_COLUMNS, "source_id")
_UPSERT = statements.upsert("sources", read_model.SOURCE_COLUMNS, "source_id")
_SELECT = statements.select("sources", read_model.SOURCE_COLUMNS)


async def locked(conn: AsyncConnection, source_id: str) -> read_model.SourceRow | None:
    """The source's row, locked until the transaction ends; None when it has none."""
    cursor = conn.cursor(row_factory=dict_row)
    found = await (await cursor.execute(_LOCKED, (source_id,))).fetchone()
    return read_model.source_from_columns(found) if found is not None else None


async def write(conn: AsyncConnection, row: read_model.SourceRow) -> None:
    values = read_model.source_to_columns(row)
    values["config"] = Jsonb(values["config"])
    values["config_rules"] = Jsonb(values["config_rules"]) if values["config_rules"] is not None else None
    await conn.execute(_UPSERT, values)


async def listing(
    conn: AsyncConnection, status: str | None = None, source_type: str | None = None, limit: int | None = None
) -> list[read_model.SourceRow]:
    """The sources with this status and of this type (None: any), by id."""
    clauses: list[sql.Composable] = []
    if status is not None:
        clauses.append(sql.SQL("status = %(status)s"))
    if source_type is not None:
        clauses.append(sql.SQL("source_type = %(source_type)s"))
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    limited = sql.SQL(" LIMIT %(limit)s") if limit is not None else sql.SQL("")
    cursor = conn.cursor(row_factory=dict_row)
    rows = await (
        await cursor.execute(
            _SELECT + where + sql.SQL(" ORDER BY source_id") + limited,
            {"status": status, "source_type": source_type, "limit": limit},
        )
    ).fetchall()
    return [read_model.source_from_columns(r) for r in rows]
