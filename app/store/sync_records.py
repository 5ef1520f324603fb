"""SQL of a job's batches and records (`sync_batches`, `sync_records`): written by the sync_jobs
projection inside its offset-fenced transactions, read by `syncs show`, the console and `trace`."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from app.core import read_model
from app.store.projection import fenced_insert, insert_once_with_retry


def _insert(table: str, columns: tuple[str, ...], key: str) -> str:
    """Plain text, not `sql.Composed`: psycopg caches the conversion of a text query, and renders a
    composed one again at every execution (a tenth of a millisecond per batch completion). The
    names are this module's constants, quoted."""
    names = ", ".join('"' + c + '"' for c in columns)
    values = ", ".join(f"%({c})s" for c in columns)
    query = f'INSERT INTO "{table}" ({names}) VALUES ({values}) ON CONFLICT ("{key}") DO NOTHING'
    return query


# The counts a job's row holds are its completion's; while it is queued or running they are the
# sums of its batch rows (each index's first completion). `LIVE_JOBS` is a relation named
# sync_jobs with exactly the table's columns, those counts summed for unfinished jobs: read
# jobs from it (`SELECT ... FROM {LIVE_JOBS} WHERE ...`), write them to the table.
_LIVE_COUNTS = ("processed", "failed", "deleted", "skipped", "documents_written", "bytes")


def _live_column(name: str) -> str:
    if name in _LIVE_COUNTS:
        return f"CASE WHEN p.batches IS NULL THEN j.{name} ELSE p.{name} END AS {name}"
    if name == "batches":
        return "coalesce(p.batches, j.batches) AS batches"
    return f"j.{name}"


LIVE_JOBS = (
    "(SELECT " + ", ".join(_live_column(c) for c in read_model.JOB_COLUMNS) + " FROM sync_jobs j "
    "LEFT JOIN LATERAL (SELECT count(*) AS batches, "
    + ", ".join(f"sum(b.{c})::bigint AS {c}" for c in _LIVE_COUNTS)
    + " FROM sync_batches b WHERE b.job_id = j.job_id AND j.status IN ('queued', 'running') HAVING count(*) > 0) p "
    "ON true) AS sync_jobs"
)

_INSERT_BATCH = fenced_insert("sync_batches", read_model.BATCH_COLUMNS, "batch_id")
_INSERT_RECORD = _insert("sync_records", read_model.RECORD_COLUMNS, "record_id")
_SELECT_BATCHES = sql.SQL("SELECT {} FROM sync_batches").format(
    sql.SQL(", ").join(map(sql.Identifier, read_model.BATCH_COLUMNS))
)
_SELECT_RECORDS = sql.SQL("SELECT {} FROM sync_records").format(
    sql.SQL(", ").join(map(sql.Identifier, read_model.RECORD_COLUMNS))
)


async def add_batch(pool: AsyncConnectionPool, consumer: str, row: read_model.BatchRow) -> tuple[bool, bool]:
    """Record a batch index's completion, fenced on its control record's position, in one statement:
    (the record was applied now, its row was inserted). A repeated index changes nothing (the first
    report wins, as in the fold)."""
    return await insert_once_with_retry(
        pool, consumer, row.topic, row.partition, row.offset, _INSERT_BATCH, read_model.batch_to_columns(row)
    )


async def add_record(conn: AsyncConnection, row: read_model.RecordRow) -> None:
    await conn.execute(_INSERT_RECORD, read_model.record_to_columns(row))


async def batches(conn: AsyncConnection, job_ids: Sequence[str]) -> list[read_model.BatchRow]:
    cursor = conn.cursor(row_factory=dict_row)
    rows = await (
        await cursor.execute(
            _SELECT_BATCHES + sql.SQL(" WHERE job_id = ANY(%s) ORDER BY job_id, batch_index"), (list(job_ids),)
        )
    ).fetchall()
    return [read_model.batch_from_columns(r) for r in rows]


async def records(
    conn: AsyncConnection, job_ids: Sequence[str], request_ids: Sequence[str], delivery_keys: Sequence[str]
) -> list[read_model.RecordRow]:
    """The records of these jobs, naming these requests, or routed from these deliveries."""
    cursor = conn.cursor(row_factory=dict_row)
    rows = await (
        await cursor.execute(
            _SELECT_RECORDS
            + sql.SQL(
                " WHERE job_id = ANY(%(jobs)s) OR request_ids && %(requests)s::text[] "
                'OR delivery_key = ANY(%(keys)s) ORDER BY occurred_at, topic, partition, "offset"'
            ),
            {"jobs": list(job_ids), "requests": list(request_ids), "keys": list(delivery_keys)},
        )
    ).fetchall()
    return [read_model.record_from_columns(r) for r in rows]


_SELECT_JOBS = sql.SQL("SELECT {} FROM {}").format(
    sql.SQL(", ").join(map(sql.Identifier, read_model.JOB_COLUMNS)), sql.SQL(LIVE_JOBS)
)
_SELECT_ANSWERS = sql.SQL("SELECT {} FROM sync_requests").format(
    sql.SQL(", ").join(map(sql.Identifier, read_model.REQUEST_COLUMNS))
)


async def jobs(conn: AsyncConnection, job_ids: Sequence[str]) -> list[read_model.SyncJobRow]:
    cursor = conn.cursor(row_factory=dict_row)
    rows = await (
        await cursor.execute(_SELECT_JOBS + sql.SQL(" WHERE job_id = ANY(%s) ORDER BY job_id"), (list(job_ids),))
    ).fetchall()
    return [read_model.job_from_columns(r) for r in rows]


async def answers(conn: AsyncConnection, request_ids: Sequence[str]) -> list[read_model.RequestAnswer]:
    cursor = conn.cursor(row_factory=dict_row)
    rows = await (
        await cursor.execute(
            _SELECT_ANSWERS + sql.SQL(" WHERE request_id = ANY(%s) ORDER BY answered_at, request_id"),
            (list(request_ids),),
        )
    ).fetchall()
    return [read_model.answer_from_columns(r) for r in rows]
