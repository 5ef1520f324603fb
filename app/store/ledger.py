"""The delivery ledger's SQL: apply a run of outcome records, find and list deliveries, prune.

The rows are decided by `app.core.ledger`; `apply_outcomes` runs inside the
projection's offset-fenced transaction (`app.store.projection.apply_run_once`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from app.core import ledger
from app.events import DeliveryOutcome
from app.store import statements

_COPY_INSERT = statements.insert_if_absent("delivery_copies", ledger.COPY_COLUMNS, "copy_id")
_DELIVERY_SELECT = statements.select("deliveries", ledger.DELIVERY_COLUMNS)
_COPY_SELECT = statements.select("delivery_copies", ledger.COPY_COLUMNS)
_DELIVERY_UPSERT = statements.upsert("deliveries", ledger.DELIVERY_COLUMNS, "key")


async def apply_outcomes(
    conn: AsyncConnection, deliveries_topic: str, partition: int, records: Sequence[tuple[int, DeliveryOutcome]]
) -> int:
    """Apply outcome records of one partition of the outcomes topic, in order; returns the new copies.

    A copy recorded already (its message consumed again after a crash) changes nothing.
    """
    rows = [ledger.copy_row(r, deliveries_topic, partition, offset) for offset, r in records]
    ids = [row.copy_id for row in rows]
    found = await (await conn.execute("SELECT copy_id FROM delivery_copies WHERE copy_id = ANY(%s)", (ids,))).fetchall()
    known = {r[0] for r in found}
    new: list[tuple[ledger.CopyRow, DeliveryOutcome]] = []
    for row, (_, record) in zip(rows, records, strict=True):
        if row.copy_id not in known:
            known.add(row.copy_id)
            new.append((row, record))
    if not new:
        return 0
    async with conn.cursor() as inserting:
        await inserting.executemany(_COPY_INSERT, [ledger.copy_to_columns(row) for row, _ in new])
    keys = list(dict.fromkeys(record.key for _, record in new))
    cursor = conn.cursor(row_factory=dict_row)
    current = {
        r["key"]: ledger.delivery_from_columns(r)
        for r in await (
            await cursor.execute(_DELIVERY_SELECT + sql.SQL(" WHERE key = ANY(%s) ORDER BY key FOR UPDATE"), (keys,))
        ).fetchall()
    }
    for _, record in new:
        current[record.key] = ledger.delivery_after(current.get(record.key), record)
    async with conn.cursor() as upserting:
        await upserting.executemany(_DELIVERY_UPSERT, [ledger.delivery_to_columns(current[k]) for k in keys])
    return len(new)


# --- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    plugin: str | None = None
    instance: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    search: str | None = None  # a delivery id, a key or a request id
    limit: int = 50


async def find(conn: AsyncConnection, ident: str) -> list[ledger.DeliveryRow]:
    """Deliveries whose key or delivery id is `ident`, or that produced request `ident`."""
    cursor = conn.cursor(row_factory=dict_row)
    rows = await (
        await cursor.execute(
            _DELIVERY_SELECT
            + sql.SQL(
                " WHERE key = %(id)s OR delivery_id = %(id)s OR request_ids @> ARRAY[%(id)s] "
                "ORDER BY first_received_at, key LIMIT 100"
            ),
            {"id": ident},
        )
    ).fetchall()
    return [ledger.delivery_from_columns(r) for r in rows]


async def named(conn: AsyncConnection, ident: str, limit: int) -> list[ledger.DeliveryRow]:
    """Deliveries whose delivery id or key is `ident`, by key."""
    cursor = conn.cursor(row_factory=dict_row)
    rows = await (
        await cursor.execute(
            _DELIVERY_SELECT + sql.SQL(" WHERE delivery_id = %(id)s OR key = %(id)s ORDER BY key LIMIT %(limit)s"),
            {"id": ident, "limit": limit},
        )
    ).fetchall()
    return [ledger.delivery_from_columns(r) for r in rows]


async def producing(conn: AsyncConnection, request_ids: Sequence[str]) -> list[ledger.DeliveryRow]:
    """Deliveries that produced any of these requests."""
    cursor = conn.cursor(row_factory=dict_row)
    rows = await (
        await cursor.execute(
            _DELIVERY_SELECT + sql.SQL(" WHERE request_ids && %s::text[] ORDER BY first_received_at, key"),
            (list(request_ids),),
        )
    ).fetchall()
    return [ledger.delivery_from_columns(r) for r in rows]


async def copies(conn: AsyncConnection, keys: Sequence[str]) -> list[ledger.CopyRow]:
    """Every copy of these keys, in the order received."""
    cursor = conn.cursor(row_factory=dict_row)
    rows = await (
        await cursor.execute(
            _COPY_SELECT + sql.SQL(' WHERE key = ANY(%s) ORDER BY received_at, partition, "offset"'), (list(keys),)
        )
    ).fetchall()
    return [ledger.copy_from_columns(r) for r in rows]


async def listing(conn: AsyncConnection, filters: Filters) -> list[ledger.DeliveryRow]:
    clauses: list[sql.Composable] = []
    params: dict[str, Any] = {"limit": filters.limit}
    for name in ("plugin", "instance", "outcome"):
        value = getattr(filters, name)
        if value:
            clauses.append(sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)))
            params[name] = value
    if filters.since is not None:
        clauses.append(sql.SQL("last_received_at >= %(since)s"))
        params["since"] = filters.since
    if filters.until is not None:
        clauses.append(sql.SQL("first_received_at < %(until)s"))
        params["until"] = filters.until
    if filters.search:
        clauses.append(sql.SQL("(key = %(search)s OR delivery_id = %(search)s OR request_ids @> ARRAY[%(search)s])"))
        params["search"] = filters.search
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    cursor = conn.cursor(row_factory=dict_row)
    rows = await (
        await cursor.execute(
            _DELIVERY_SELECT + where + sql.SQL(" ORDER BY last_received_at DESC, key LIMIT %(limit)s"), params
        )
    ).fetchall()
    return [ledger.delivery_from_columns(r) for r in rows]


async def outcome_counts(conn: AsyncConnection, since: datetime) -> dict[str, int]:
    """Copies received since `since`, by outcome (every outcome present, 0 when none)."""
    rows = await (
        await conn.execute(
            "SELECT outcome, count(*) FROM delivery_copies WHERE received_at >= %s GROUP BY outcome", (since,)
        )
    ).fetchall()
    counts = {name: 0 for name in ledger.OUTCOMES}
    counts.update({outcome: n for outcome, n in rows})
    return counts
