"""`hookstream projections rebuild` on the real broker and PostgreSQL: the records are produced to the
topics and applied to the live schema through the agents' own functions (the "live agent"), then the
projections are rebuilt from the topics, compared, swapped and rolled back."""

from __future__ import annotations

import asyncio

import psycopg
from psycopg.rows import dict_row

from app import codec
from app.events import SyncCompleted, SyncStarted
from app.store.db import migrate, open_pool
from app.stream.projection_registry import projections
from app.stream.projections import SYNC_COMPLETED, SYNC_EVENTS
from app.stream.rebuild import Options, ProjectionRebuild, rebuild
from tests.integration.test_dlq_cli import hookstream
from tests.integration.test_dlq_projection import history as dlq_history
from tests.integration.test_projections import at, completion_history, control_history, lifecycle_history
from tests.support import gitrepo
from tests.support.flows import connected, requested, send_control
from tests.support.kafka import produce, read_all
from tests.support.services import wait_until
from tests.support.stack import WorkerProcess

TABLES = {"sources": "source_id", "sync_jobs": "job_id", "sync_requests": "request_id", "dlq": "dead_letter_id"}
FAST = ["--verify-wait", "0"]


# --- helpers -------------------------------------------------------------------------------------


def key_of(record) -> str:
    return getattr(record, "source_id", None) or record.key


async def produce_records(settings, logical: str, records) -> None:
    await produce(settings, logical, [(key_of(r), codec.encode(r)) for r in records])


async def produce_history(settings) -> None:
    """Every projection's history on its topics (partitions chosen by the keys, as in production)."""
    for logical, items in (
        ("hookstream.sync.control", control_history()),
        (SYNC_EVENTS, lifecycle_history()),
        (SYNC_COMPLETED, completion_history()),
    ):
        await produce_records(settings, logical, [record for _, _, _, record in items])
    _, dead = dlq_history()
    await produce_records(settings, "hookstream.dlq", [record for _, _, record in dead])


async def apply_live(settings, names=("sources", "sync_jobs", "dlq"), pool=None) -> list:
    """What the live agents do: every record on the projections' topics through their function, into the
    live schema. Records applied before are fenced. Returns the outcomes."""
    own = pool is None
    if own:
        pool = open_pool(settings, min_size=1, max_size=2)
        await pool.open(wait=True)
    outcomes = []
    try:
        for name in names:
            projection = projections()[name]
            for logical in projection.topics:
                for _, record, partition, offset in await read_all(settings, logical, timeout=10, idle=0.3):
                    project = projection.consumer_of(logical).project
                    outcomes.append(await project(pool, settings.topic(logical), partition, offset, record))
    finally:
        if own:
            await pool.close()
    return outcomes


async def query(settings, text: str, params=(), schema: str | None = None) -> list[dict]:
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, options=f"-c search_path={schema or settings.database_schema}", autocommit=True
    ) as conn:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(text, params)
        return await cursor.fetchall() if cursor.description else []


async def read_model(settings, schema: str | None = None) -> dict[str, list[dict]]:
    return {t: await query(settings, f"SELECT * FROM {t} ORDER BY {k}", schema=schema) for t, k in TABLES.items()}


async def fences(settings, schema: str | None = None) -> dict[tuple, int]:
    rows = await query(settings, 'SELECT consumer, topic, partition, "offset" FROM applied_offsets', schema=schema)
    return {(r["consumer"], r["topic"], r["partition"]): r["offset"] for r in rows}


async def schemas_like(settings, pattern: str) -> list[str]:
    rows = await query(settings, "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s ORDER BY 1", (pattern,))
    return [r["nspname"] for r in rows]


async def table_oids(settings) -> dict[str, int]:
    rows = await query(
        settings,
        "SELECT c.relname, c.oid::int AS oid FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
        (settings.database_schema,),
    )
    return {r["relname"]: r["oid"] for r in rows}


def job_records(n: int, source: str = "git:later") -> list:
    """A started and a completed record for job n of `source`."""
    job = f"{source}:{n}"
    started = SyncStarted(
        source_id=source,
        occurred_at=at(100 + n),
        request_ids=[f"later-{n}"],
        job_id=job,
        mode="full",
        trigger="manual",
        deadline=at(4000),
    )
    completed = SyncCompleted(
        job_id=job,
        source_id=source,
        request_ids=[f"later-{n}"],
        mode="full",
        trigger="manual",
        status="succeeded",
        processed=n,
        started_at=at(100 + n),
        finished_at=at(101 + n),
        duration_ms=1000,
    )
    return [started, completed]


async def produce_jobs(settings, numbers) -> None:
    records = [r for n in numbers for r in job_records(n)]
    await produce_records(settings, SYNC_EVENTS, [r for r in records if isinstance(r, SyncStarted)])
    await produce_records(settings, SYNC_COMPLETED, [r for r in records if isinstance(r, SyncCompleted)])


# --- tests ---------------------------------------------------------------------------------------


async def test_a_rebuild_into_a_fresh_schema_gives_the_live_rows_and_fences(settings, monkeypatch, capsys):
    await produce_history(settings)
    await apply_live(settings)
    code, out, err = await hookstream(
        settings, monkeypatch, capsys, "projections", "rebuild", "--dry-run", "--verify", "--keep-rebuild", *FAST
    )
    assert code == 0, out + err
    [candidate] = await schemas_like(settings, settings.database_schema + "\\_rebuild\\_%")
    assert await read_model(settings, candidate) == await read_model(settings)
    assert await fences(settings, candidate) == await fences(settings)
    for table in TABLES:
        assert f"verify {table}: live " in out and "identical" in out
    assert "dry run: nothing swapped; the rebuilt tables were kept in schema " + candidate in out
    assert "verify: the rebuilt tables equal the live ones" in out
    assert not await schemas_like(settings, settings.database_schema + "\\_old\\_%")
    await query(settings, f"DROP SCHEMA {candidate} CASCADE")


async def test_verify_prints_rows_changed_by_hand_exits_1_and_the_swap_repairs_them(settings, monkeypatch, capsys):
    await produce_history(settings)
    await apply_live(settings)
    await query(settings, "UPDATE sync_jobs SET processed = 999 WHERE job_id = %s", ("git:demo:1",))
    await query(settings, "DELETE FROM sources WHERE source_id = %s", ("github:42",))
    await query(
        settings,
        "INSERT INTO sync_requests (request_id, source_id, answer, answered_at) "
        "VALUES ('bogus', 'x', 'started', now())",
    )

    code, out, _ = await hookstream(
        settings, monkeypatch, capsys, "projections", "rebuild", "--dry-run", "--verify", *FAST
    )
    assert code == 1, out
    assert "verify sync_jobs: live 2 rows, rebuilt 2 rows: 0 only live, 0 only rebuilt, 1 differ" in out
    assert "job_id=git:demo:1: processed: live 999 | rebuilt 6" in out
    assert "verify sources: live 1 rows, rebuilt 2 rows: 0 only live, 1 only rebuilt, 0 differ" in out
    assert "source_id=github:42: only in the rebuilt table" in out
    assert "request_id=bogus: only in the live table" in out
    assert "verify dlq: live 2 rows, rebuilt 2 rows: identical" in out
    assert "verify: differences found" in out
    assert (await query(settings, "SELECT processed FROM sync_jobs WHERE job_id = 'git:demo:1'"))[0]["processed"] == 999

    code, out, _ = await hookstream(
        settings,
        monkeypatch,
        capsys,
        "projections",
        "rebuild",
        "--projection",
        "sync_jobs",
        "--projection",
        "sources",
        "--verify",
        *FAST,
    )
    assert code == 1, out  # the differences were there; the swap replaced them
    assert out.count("  swapped: the rebuilt tables are live in") == 2
    code, out, _ = await hookstream(
        settings, monkeypatch, capsys, "projections", "rebuild", "--dry-run", "--verify", *FAST
    )
    assert code == 0, out
    assert (await query(settings, "SELECT processed FROM sync_jobs WHERE job_id = 'git:demo:1'"))[0]["processed"] == 6


async def test_the_swap_is_atomic_and_the_agents_continue_from_the_rebuilt_fences(settings, monkeypatch, capsys):
    await produce_history(settings)
    await produce_jobs(settings, range(40))
    await apply_live(settings)
    live_rows, live_fences = await read_model(settings), await fences(settings)
    expected_jobs = len(live_rows["sync_jobs"])
    stop, seen = asyncio.Event(), []

    async def read_continuously():
        # A reader on its own connection all along: every query sees a whole table, never none or half.
        async with await psycopg.AsyncConnection.connect(
            settings.database_url, options=f"-c search_path={settings.database_schema}", autocommit=True
        ) as conn:
            while not stop.is_set():
                row = await (
                    await conn.execute("SELECT (SELECT count(*) FROM sync_jobs), (SELECT count(*) FROM sync_requests)")
                ).fetchone()
                seen.append(row)
                await asyncio.sleep(0.005)

    reader = asyncio.create_task(read_continuously())
    try:
        code, out, _ = await hookstream(
            settings, monkeypatch, capsys, "projections", "rebuild", "--projection", "sync_jobs", *FAST
        )
    finally:
        stop.set()
        await reader
    assert code == 0, out
    assert seen and set(seen) == {(expected_jobs, len(live_rows["sync_requests"]))}
    assert await read_model(settings) == live_rows
    assert await fences(settings) == live_fences

    # The replaced tables and their fence rows are kept; the live agents find every record fenced ...
    [old] = await schemas_like(settings, settings.database_schema + "\\_old\\_%")
    for table in ("sync_jobs", "sync_requests"):
        assert len(await query(settings, f"SELECT * FROM {table}", schema=old)) == len(live_rows[table])
    assert await fences(settings, old) == {
        k: v for k, v in live_fences.items() if k[0] in ("project_sync_jobs", "project_sync_progress")
    }
    assert all(o in ("already_applied", "not_projected") for o in await apply_live(settings, ["sync_jobs"]))
    # ... and apply the next one to the new table.
    await produce_jobs(settings, [40])
    assert "applied" in await apply_live(settings, ["sync_jobs"])
    assert len(await query(settings, "SELECT * FROM sync_jobs")) == expected_jobs + 1
    assert not await schemas_like(settings, settings.database_schema + "\\_rebuild\\_%")


async def test_a_dry_run_swaps_nothing(settings, monkeypatch, capsys):
    await produce_history(settings)
    await apply_live(settings)
    before = (await table_oids(settings), await read_model(settings), await fences(settings))
    code, out, _ = await hookstream(settings, monkeypatch, capsys, "projections", "rebuild", "--dry-run")
    assert code == 0, out
    assert out.count("dry run: nothing swapped; the rebuilt tables were dropped") == 4
    assert (await table_oids(settings), await read_model(settings), await fences(settings)) == before
    assert not await schemas_like(settings, settings.database_schema + "\\_old\\_%")
    assert not await schemas_like(settings, settings.database_schema + "\\_rebuild\\_%")


async def test_verify_names_the_partitions_the_stopped_live_agents_have_not_applied(settings, monkeypatch, capsys):
    await produce_history(settings)
    await apply_live(settings)
    await produce_jobs(settings, [1])  # on the topics, never applied: the workers are stopped
    code, out, err = await hookstream(
        settings,
        monkeypatch,
        capsys,
        "projections",
        "rebuild",
        "--projection",
        "sync_jobs",
        "--dry-run",
        "--verify",
        "--verify-wait",
        "1",
    )
    assert code == 1, out + err
    assert "waiting up to 1 s for the live projection" in err
    assert "note: the live agents had not yet applied records the rebuild did (" in out
    assert "job_id=git:later:1: only in the rebuilt table" in out


async def test_records_the_live_agent_applies_during_the_rebuild_are_not_lost_by_the_swap(settings):
    await produce_history(settings)
    await produce_jobs(settings, range(5))
    live_pool = open_pool(settings, min_size=1, max_size=1)  # one long-lived connection, like an agent's
    await live_pool.open(wait=True)
    try:
        await apply_live(settings, ["sync_jobs"], pool=live_pool)
        candidate = f"{settings.database_schema}_rebuild_test"
        await migrate(settings.model_copy(update={"database_schema": candidate}))
        job = ProjectionRebuild(
            settings,
            projections()["sync_jobs"],
            candidate,
            f"{settings.database_schema}_old_test",
            Options(),
            say=lambda line: None,
        )
        async with job:
            await job.replay()  # up to the ends captured now
            # After the capture: jobs 5-7 arrive and the live agent applies them to the old table;
            # job 8 arrives and is not applied yet when the tables are swapped.
            await produce_jobs(settings, [5, 6, 7])
            await apply_live(settings, ["sync_jobs"], pool=live_pool)
            await produce_jobs(settings, [8])
            result = await job.finish()
        assert result.swapped and result.caught_up == 6
        assert result.replayed == len(lifecycle_history()) + 2 + 10 + len(control_history())  # control: job records
        jobs = {r["job_id"] for r in await query(settings, "SELECT job_id FROM sync_jobs")}
        assert {f"git:later:{n}" for n in range(8)} <= jobs and "git:later:8" not in jobs
        # The live agent goes on, on the connection it had before the swap: 5-7 are fenced, 8 is applied.
        outcomes = await apply_live(settings, ["sync_jobs"], pool=live_pool)
        assert outcomes.count("applied") == 2  # job 8's two records
        [row] = await query(settings, "SELECT status, processed FROM sync_jobs WHERE job_id = 'git:later:8'")
        assert (row["status"], row["processed"]) == ("succeeded", 8)
    finally:
        await live_pool.close()
    verify = await rebuild(
        settings, ["sync_jobs"], Options(swap=False, verify=True, verify_wait=0), say=lambda line: None
    )
    assert not verify[0].differs and not verify[0].live_behind


async def test_a_live_agent_applying_all_along_loses_nothing_across_the_swap(settings, monkeypatch, capsys):
    """Real concurrency: a producer and an agent-like consumer keep going while the rebuild runs and swaps."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    await produce_history(settings)
    await produce_jobs(settings, range(30))
    stop = asyncio.Event()
    produced = 30

    async def keep_producing():
        nonlocal produced
        while not stop.is_set():
            await produce_jobs(settings, [produced])
            produced += 1
            await asyncio.sleep(0.02)

    async def agent():
        projection = projections()["sync_jobs"]
        pool = open_pool(settings, min_size=1, max_size=1)
        await pool.open(wait=True)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False, fetch_max_wait_ms=20
        )
        await consumer.start()
        try:
            tps = [TopicPartition(settings.topic(t), p) for t in projection.topics for p in range(8)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            idle = 0
            while not (stop.is_set() and idle >= 5):
                batch = await consumer.getmany(timeout_ms=100)
                idle = 0 if batch else idle + 1
                logical_of = {settings.topic(t): t for t in projection.topics}
                for tp, messages in batch.items():
                    logical = logical_of[tp.topic]
                    for m in messages:
                        await projection.consumer_of(logical).project(
                            pool, m.topic, m.partition, m.offset, codec.decode_topic(logical, m.value)
                        )
        finally:
            await consumer.stop()
            await pool.close()

    tasks = [asyncio.create_task(keep_producing()), asyncio.create_task(agent())]
    try:
        await asyncio.sleep(1.0)
        code, out, err = await hookstream(
            settings, monkeypatch, capsys, "projections", "rebuild", "--projection", "sync_jobs", *FAST
        )
        assert code == 0, out + err
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    jobs = {
        r["job_id"] for r in await query(settings, "SELECT job_id, status FROM sync_jobs WHERE status = 'succeeded'")
    }
    assert {f"git:later:{n}" for n in range(produced)} <= jobs
    code, out, _ = await hookstream(
        settings,
        monkeypatch,
        capsys,
        "projections",
        "rebuild",
        "--projection",
        "sync_jobs",
        "--dry-run",
        "--verify",
        *FAST,
    )
    assert code == 0, out


async def test_a_swap_that_cannot_get_its_locks_gives_up_and_changes_nothing(settings):
    from app.stream.rebuild import RebuildError

    await produce_history(settings)
    await apply_live(settings, ["sync_jobs"])
    before = (await table_oids(settings), await fences(settings))
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, options=f"-c search_path={settings.database_schema}"
    ) as holder:
        await holder.execute("SELECT count(*) FROM sync_jobs")  # a transaction left open: ACCESS SHARE held
        options = Options(lock_timeout=0.3, lock_attempts=2)
        try:
            await rebuild(settings, ["sync_jobs"], options, say=lambda line: None)
        except RebuildError as exc:
            assert "a lock on the live tables was not granted within 0.3 s, 2 times" in str(exc)
        else:
            raise AssertionError("swapped while another transaction held the table")
        await holder.rollback()
    assert (await table_oids(settings), await fences(settings)) == before
    assert not await schemas_like(settings, settings.database_schema + "\\_%")


async def test_rollback_puts_the_replaced_tables_back_with_what_was_applied_since(settings, monkeypatch, capsys):
    await produce_history(settings)
    await apply_live(settings)
    await query(settings, "UPDATE sync_jobs SET error = 'edited by hand' WHERE job_id = 'git:demo:1'")
    code, out, _ = await hookstream(
        settings, monkeypatch, capsys, "projections", "rebuild", "--projection", "sync_jobs"
    )
    assert code == 0, out
    [old] = await schemas_like(settings, settings.database_schema + "\\_old\\_%")
    assert f"rollback --from {old}` puts them back" in out
    await produce_jobs(settings, [1])
    await apply_live(settings, ["sync_jobs"])  # applied to the rebuilt tables, after the swap

    code, out, _ = await hookstream(settings, monkeypatch, capsys, "projections", "list")
    assert code == 0 and f"  {old}: applied_offsets, sync_batches, sync_jobs, sync_records, sync_requests" in out
    code, out, err = await hookstream(settings, monkeypatch, capsys, "projections", "rollback", "--from", old)
    assert code == 0, out + err
    # The two records of job git:later:1; control records no job record fenced are read again, not projected.
    assert "records: 2 applied, 5 not_projected" in out, out
    rows = {r["job_id"]: r for r in await query(settings, "SELECT * FROM sync_jobs")}
    assert rows["git:demo:1"]["error"] == "edited by hand" and rows["git:later:1"]["status"] == "succeeded"
    assert set(await apply_live(settings, ["sync_jobs"])) == {"already_applied", "not_projected"}
    assert len(await schemas_like(settings, settings.database_schema + "\\_old\\_%")) == 2


async def test_behind_a_real_worker_verify_finds_no_difference_and_the_swap_keeps_the_rows(
    settings, tmp_path, monkeypatch, capsys
):
    repo = tmp_path / "repo"
    gitrepo.build_repo(repo, files=gitrepo.synthetic_files(30, seed=5))
    source = "git:rebuilt"
    worker = WorkerProcess(settings, tmp_path / "rocks", tmp_path / "worker.log").start()
    try:

        async def jobs_done(n):
            assert worker.alive(), worker.log_tail()
            rows = await query(settings, "SELECT * FROM sync_jobs WHERE status = 'succeeded' ORDER BY job_id")
            return rows if len(rows) >= n else None

        await send_control(settings, connected(source, repo), requested(source, "full", request_id="first"))
        await wait_until(lambda: jobs_done(1), timeout=90, interval=0.3, what="the first sync's row")
        before = await read_model(settings)

        code, out, err = await hookstream(settings, monkeypatch, capsys, "projections", "rebuild", "--verify")
        assert code == 0, out + err
        assert out.count("  swapped: ") == 4 and "verify: the rebuilt tables equal the live ones" in out
        assert await read_model(settings) == before

        # The worker's agents write the new tables: a sync after the swap is projected.
        await send_control(settings, requested(source, "full", trigger="schedule", request_id="second"))
        await wait_until(lambda: jobs_done(2), timeout=90, interval=0.3, what="the second sync's row")
        answers = {r["request_id"]: r["answer"] for r in await query(settings, "SELECT * FROM sync_requests")}
        assert answers == {"first": "started", "second": "started"}
        code, out, err = await hookstream(
            settings, monkeypatch, capsys, "projections", "rebuild", "--dry-run", "--verify"
        )
        assert code == 0, out + err
    finally:
        worker.stop()
