"""SQL of a job's rows (`sync_jobs`, `sync_requests`, `sync_batches`, `sync_records`): written by
the sync_jobs and progress projections inside their offset-fenced transactions, read by `syncs`,
the console and `trace`. What a row holds is decided by `app.core.read_model`."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from app.core import read_model
from app.events.counts import COUNT_FIELDS
from app.store import statements
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
def _live_column(name: str) -> str:
    if name in COUNT_FIELDS:
        return f"CASE WHEN p.batches IS NULL THEN j.{name} ELSE p.{name} END AS {name}"
    if name == "batches":
        return "coalesce(p.batches, j.batches) AS batches"
    return f"j.{name}"


LIVE_JOBS = (
    "(SELECT " + ", ".join(_live_column(c) for c in read_model.JOB_COLUMNS) + " FROM sync_jobs j "
    "LEFT JOIN LATERAL (SELECT count(*) AS batches, "
    + ", ".join(f"sum(b.{c})::bigint AS {c}" for c in COUNT_FIELDS)
    + " FROM sync_batches b WHERE b.job_id = j.job_id AND j.status IN ('queued', 'running') HAVING count(*) > 0) p "
    "ON true) AS sync_jobs"
)

_INSERT_BATCH = fenced_insert("sync_batches", read_model.BATCH_COLUMNS, "batch_id")
_INSERT_RECORD = _insert("sync_records", read_model.RECORD_COLUMNS, "record_id")
_SELECT_BATCHES = statements.select("sync_batches", read_model.BATCH_COLUMNS)
_SELECT_RECORDS = statements.select("sync_records", read_model.RECORD_COLUMNS)


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


# Jobs as read (their counts so far while they run), latest first: a job's most telling time is
# when it started, else when it was queued.
SELECT_LIVE_JOBS = sql.SQL("SELECT {} FROM {}").format(statements.columns(read_model.JOB_COLUMNS), sql.SQL(LIVE_JOBS))
JOB_ORDER = sql.SQL(" ORDER BY coalesce(started_at, queued_at, cancelled_at, finished_at) DESC NULLS LAST, job_id DESC")
_SELECT_ANSWERS = statements.select("sync_requests", read_model.REQUEST_COLUMNS)


async def jobs(conn: AsyncConnection, job_ids: Sequence[str]) -> list[read_model.SyncJobRow]:
    cursor = conn.cursor(row_factory=dict_row)
    rows = await (
        await cursor.execute(SELECT_LIVE_JOBS + sql.SQL(" WHERE job_id = ANY(%s) ORDER BY job_id"), (list(job_ids),))
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


async def jobs_serving(conn: AsyncConnection, request_id: str, limit: int = 1) -> list[read_model.SyncJobRow]:
    """The latest jobs that name `request_id` among the requests they served."""
    cursor = conn.cursor(row_factory=dict_row)
    rows = await (
        await cursor.execute(
            SELECT_LIVE_JOBS + sql.SQL(" WHERE request_ids @> ARRAY[%s]") + JOB_ORDER + sql.SQL(" LIMIT %s"),
            (request_id, limit),
        )
    ).fetchall()
    return [read_model.job_from_columns(r) for r in rows]


async def answers_of_job(conn: AsyncConnection, job_id: str) -> list[read_model.RequestAnswer]:
    """The answers that name `job_id`, in the order given."""
    cursor = conn.cursor(row_factory=dict_row)
    rows = await (
        await cursor.execute(
            _SELECT_ANSWERS + sql.SQL(" WHERE job_id = %s ORDER BY answered_at, request_id"), (job_id,)
        )
    ).fetchall()
    return [read_model.answer_from_columns(r) for r in rows]


# --- the projection's writes of job rows and answers -------------------------------------------

_LOCKED_JOB = statements.select_for_update("sync_jobs", read_model.JOB_COLUMNS, "job_id")
_INSERT_JOB = statements.insert_if_absent("sync_jobs", read_model.JOB_COLUMNS, "job_id", returning=True)
_UPSERT_JOB = statements.upsert("sync_jobs", read_model.JOB_COLUMNS, "job_id")
_INSERT_ANSWER = statements.insert_if_absent("sync_requests", read_model.REQUEST_COLUMNS, "request_id")


async def locked_job(conn: AsyncConnection, job_id: str) -> read_model.SyncJobRow | None:
    """The job's row as stored (not its live counts), locked until the transaction ends; None when absent."""
    cursor = conn.cursor(row_factory=dict_row)
    found = await (await cursor.execute(_LOCKED_JOB, (job_id,))).fetchone()
    return read_model.job_from_columns(found) if found is not None else None


async def insert_job(conn: AsyncConnection, row: read_model.SyncJobRow) -> bool:
    """Insert the job's row; False when another transaction inserted one first (nothing written)."""
    return await (await conn.execute(_INSERT_JOB, read_model.job_to_columns(row))).fetchone() is not None


async def write_job(conn: AsyncConnection, row: read_model.SyncJobRow) -> None:
    await conn.execute(_UPSERT_JOB, read_model.job_to_columns(row))


async def add_answers(conn: AsyncConnection, answers: Sequence[read_model.RequestAnswer]) -> None:
    """Record these answers; a request answered already keeps its first answer."""
    if answers:
        async with conn.cursor() as cursor:
            await cursor.executemany(_INSERT_ANSWER, [read_model.answer_to_columns(a) for a in answers])
