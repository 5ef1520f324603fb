"""The PostgreSQL side of a projection rebuild: schemas, fences, the comparison and the swap.

Every statement names its schema: one connection works on the live schema and
the candidate (or old) one side by side, which is what the comparison and the
swap need. The swap is one transaction the caller opens, after `lock_fences`:

- `lock_fences` takes `applied_offsets` in SHARE ROW EXCLUSIVE mode. Every
  projection agent's transaction starts with an INSERT into that table
  (`app.store.projection.apply_once`) before it touches a projection table, so
  once the lock is granted no agent transaction is in flight and none can
  start: the live fences and tables stand still until commit. Agents take the
  fence table first and the projection tables after, and so does the swap:
  no deadlock.
- `swap` moves the live tables into the old schema and the candidate's into
  the live schema (ALTER TABLE ... SET SCHEMA: indexes, constraints and the
  row type move along, and keep their names, which is why the old tables go to
  a schema of their own rather than to a renamed table beside the new one), and
  replaces the projection's fence rows with the candidate's. Agents blocked on
  the lock resolve the table names again when they continue (PostgreSQL
  re-plans statements whose tables changed), so they write the new tables.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from app.core.rebuild import TableDiff, TopicPartition, row_diff
from app.stream.projection_registry import Table

_RUN_LOCK = "hookstream projections rebuild"


async def _first_row(conn: AsyncConnection, query: Any, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    """The row of a query that always returns one (an aggregate, a function call)."""
    row = await (await conn.execute(query, params)).fetchone()
    if row is None:
        raise RuntimeError(f"no row from a query that always returns one: {query!r}")
    return row


async def try_run_lock(conn: AsyncConnection, live: str) -> bool:
    """One rebuild per live schema at a time: a session advisory lock, held until `conn` closes."""
    row = await (await conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (f"{_RUN_LOCK} {live}",))).fetchone()
    return bool(row and row[0])


async def server_started_at(conn: AsyncConnection) -> Any:
    """When the PostgreSQL server started: another value later means it restarted (or failed over)."""
    return (await _first_row(conn, "SELECT pg_postmaster_start_time()"))[0]


async def schema_exists(conn: AsyncConnection, schema: str) -> bool:
    row = await (await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))).fetchone()
    return row is not None


async def migrations(conn: AsyncConnection, schema: str) -> set[str]:
    """Names in the schema's `schema_migrations` (empty when it has none)."""
    if await _regclass(conn, schema, "schema_migrations") is None:
        return set()
    query = sql.SQL("SELECT name FROM {}.schema_migrations").format(sql.Identifier(schema))
    return {r[0] for r in await (await conn.execute(query)).fetchall()}


async def missing_tables(conn: AsyncConnection, schema: str, names: list[str]) -> list[str]:
    return [n for n in names if await _regclass(conn, schema, n) is None]


async def _regclass(conn: AsyncConnection, schema: str, table: str) -> Any:
    row = await (await conn.execute("SELECT to_regclass(%s)", (f'"{schema}"."{table}"',))).fetchone()
    return row[0] if row else None


async def fences(conn: AsyncConnection, schema: str, consumers: tuple[str, ...]) -> dict[TopicPartition, int]:
    """The highest applied offset per (topic, partition) of these consumers (a topic has one consumer)."""
    query = sql.SQL(
        'SELECT topic, partition, "offset" FROM {}.applied_offsets WHERE consumer = ANY(%s) AND "offset" >= 0'
    ).format(sql.Identifier(schema))
    rows = await (await conn.execute(query, (list(consumers),))).fetchall()
    return {(topic, partition): offset for topic, partition, offset in rows}


async def lock_fences(conn: AsyncConnection, schema: str, timeout_seconds: float) -> None:
    """Stop every projection agent of `schema` until the transaction ends (see the module docstring).

    Raises `psycopg.errors.LockNotAvailable` after `timeout_seconds`, here or at a later
    statement of the transaction, rather than queue behind a long-running transaction
    with every agent queued behind us."""
    await conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{int(timeout_seconds * 1000)}ms")))
    await conn.execute(
        sql.SQL("LOCK TABLE {}.applied_offsets IN SHARE ROW EXCLUSIVE MODE").format(sql.Identifier(schema))
    )


async def row_count(conn: AsyncConnection, schema: str, table: str) -> int:
    query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    return int((await _first_row(conn, query))[0])


async def compared_columns(conn: AsyncConnection, live: str, candidate: str, table: Table) -> tuple[str, ...]:
    """The table's columns but its key and ignored ones; both sides must have the same."""
    query = (
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position"
    )
    sides = []
    for schema in (live, candidate):
        sides.append(tuple(r[0] for r in await (await conn.execute(query, (schema, table.name))).fetchall()))
    if set(sides[0]) != set(sides[1]):
        raise ValueError(
            f"{table.name} has other columns in {live} than in {candidate}: "
            f"only live {sorted(set(sides[0]) - set(sides[1]))}, "
            f"only rebuilt {sorted(set(sides[1]) - set(sides[0]))}"
        )
    return tuple(c for c in sides[1] if c != table.key and c not in table.ignored)


async def diff_table(conn: AsyncConnection, live: str, candidate: str, table: Table, show: int) -> TableDiff:
    """Row counts, and the rows that differ (keyed by primary key, over the compared columns) in one pass each."""
    columns = await compared_columns(conn, live, candidate, table)
    ident = sql.Identifier
    key = ident(table.key)
    distinct = (
        sql.SQL("ROW({}) IS DISTINCT FROM ROW({})").format(
            sql.SQL(", ").join(sql.SQL("l.{}").format(ident(c)) for c in columns),
            sql.SQL(", ").join(sql.SQL("r.{}").format(ident(c)) for c in columns),
        )
        if columns
        else sql.SQL("false")
    )
    join = sql.SQL("FROM {}.{} l FULL JOIN {}.{} r ON l.{} = r.{}").format(
        ident(live), ident(table.name), ident(candidate), ident(table.name), key, key
    )
    counts = await _first_row(
        conn,
        sql.SQL(
            "SELECT count(*) FILTER (WHERE r.{k} IS NULL), count(*) FILTER (WHERE l.{k} IS NULL), "
            "count(*) FILTER (WHERE l.{k} IS NOT NULL AND r.{k} IS NOT NULL AND {distinct}) {join}"
        ).format(k=key, distinct=distinct, join=join),
    )
    only_live, only_rebuilt, differing = counts
    shown = []
    if show > 0 and (only_live or only_rebuilt or differing):
        cursor = conn.cursor(row_factory=dict_row)
        rows = await (
            await cursor.execute(
                sql.SQL(
                    "SELECT COALESCE(l.{k}, r.{k}) AS key, CASE WHEN l.{k} IS NULL THEN NULL ELSE to_jsonb(l) END AS live, "
                    "CASE WHEN r.{k} IS NULL THEN NULL ELSE to_jsonb(r) END AS rebuilt {join} "
                    "WHERE l.{k} IS NULL OR r.{k} IS NULL OR {distinct} ORDER BY 1 LIMIT %s"
                ).format(k=key, distinct=distinct, join=join),
                (show,),
            )
        ).fetchall()
        shown = [row_diff(r["key"], r["live"], r["rebuilt"], columns) for r in rows]
    return TableDiff(
        table=table.name,
        key=table.key,
        live_rows=await row_count(conn, live, table.name),
        rebuilt_rows=await row_count(conn, candidate, table.name),
        only_live=only_live,
        only_rebuilt=only_rebuilt,
        differing=differing,
        shown=tuple(shown),
    )


async def swap(
    conn: AsyncConnection,
    live: str,
    candidate: str,
    old: str,
    tables: tuple[Table, ...],
    consumers: tuple[str, ...],
    topics: list[str],
    note: str,
) -> None:
    """Inside the caller's transaction, after `lock_fences`: the candidate's tables and its fence rows
    (of `consumers` on `topics`) become the live ones; the live ones move to `old` (tables, and fence
    rows in `old.applied_offsets`)."""
    ident = sql.Identifier
    await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident(old)))
    await conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(ident(old), sql.Literal(note)))
    for table in tables:
        await conn.execute(
            sql.SQL("ALTER TABLE {}.{} SET SCHEMA {}").format(ident(live), ident(table.name), ident(old))
        )
        await conn.execute(
            sql.SQL("ALTER TABLE {}.{} SET SCHEMA {}").format(ident(candidate), ident(table.name), ident(live))
        )
    await conn.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {}.applied_offsets (LIKE {}.applied_offsets INCLUDING ALL)").format(
            ident(old), ident(live)
        )
    )
    mine = sql.SQL("consumer = ANY(%(consumers)s) AND topic = ANY(%(topics)s)")
    params = {"consumers": list(consumers), "topics": topics}
    await conn.execute(
        sql.SQL(
            "INSERT INTO {}.applied_offsets SELECT * FROM {}.applied_offsets WHERE {} ON CONFLICT DO NOTHING"
        ).format(ident(old), ident(live), mine),
        params,
    )
    await conn.execute(sql.SQL("DELETE FROM {}.applied_offsets WHERE {}").format(ident(live), mine), params)
    await conn.execute(
        sql.SQL(
            'INSERT INTO {}.applied_offsets (consumer, topic, partition, "offset") '
            'SELECT consumer, topic, partition, "offset" FROM {}.applied_offsets WHERE {} AND "offset" >= 0'
        ).format(ident(live), ident(candidate), mine),
        params,
    )


async def leftovers(conn: AsyncConnection, live: str) -> list[tuple[str, str | None, list[str]]]:
    """(schema, comment, tables) of every `<live>_old_*` and `<live>_rebuild_*` schema, oldest first."""
    rows = await (
        await conn.execute(
            "SELECT n.nspname, obj_description(n.oid, 'pg_namespace'), "
            "COALESCE(array_agg(c.relname ORDER BY c.relname) FILTER (WHERE c.relname IS NOT NULL), '{}') "
            "FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind = 'r' "
            "WHERE n.nspname LIKE %s OR n.nspname LIKE %s GROUP BY n.oid, n.nspname ORDER BY right(n.nspname, 14), 1",
            (_like_prefix(live) + "\\_old\\_%", _like_prefix(live) + "\\_rebuild\\_%"),
        )
    ).fetchall()
    return [(name, comment, list(tables)) for name, comment, tables in rows]


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
