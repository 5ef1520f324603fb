"""`hookstream projections rebuild`: replay a projection's topics into a candidate schema and swap it in.

Per projection (`app.stream.projection_registry`):

1. capture the true end offset of each partition of its topics;
2. replay every partition from its earliest offset to the captured end with a
   plain consumer (no group: the workers' offsets are not touched), applying
   each record through the live agent's own offset-fenced function into the
   candidate schema, so the candidate's `applied_offsets` are right;
3. check every partition reached its captured end;
4. catch up without a lock: read the live fences and apply, into the candidate,
   what the live agent applied meanwhile (with --verify, also wait for a live
   agent that is behind the candidate);
5. in one transaction: lock the live fences (`app.store.rebuild.lock_fences`: the
   live projection agents pause), read them, catch the candidate up to them
   (now nothing can move them), prune from the candidate what retention removed
   from the live tables (the topics keep it; only when the live agents are not
   behind, else a row they have yet to apply would look pruned), compare
   (--verify), and swap the tables and fence rows, or roll back (--dry-run).

Records produced during the rebuild are therefore never lost: a record the live
agent applied to the old tables before the swap is below its fence, and the
candidate applied it in step 5; a record it had not applied is above the fence
it will find after the swap, and it applies it to the new tables then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition as KafkaTopicPartition
from psycopg_pool import AsyncConnectionPool

from app import codec
from app.core import rebuild as plan
from app.core.rebuild import TableDiff, TopicPartition
from app.embedded import tansu_quirks
from app.kafka_reader import ReadError, TopicReader
from app.settings import Settings
from app.store import db, retention
from app.store import rebuild as store
from app.stream.projection_registry import Projection, projections

log = logging.getLogger(__name__)

Say = Callable[[str], None]
UNDECODABLE = "undecodable"
APPLY_CONNECTIONS = 4  # partitions applied at once (each in order)


class RebuildError(Exception):
    """The rebuild stopped; nothing of the projection it names was swapped. The message says what to do."""


@dataclass(frozen=True)
class Options:
    swap: bool = True  # False: --dry-run
    verify: bool = False
    show: int = 20  # differing rows printed per table
    verify_wait: float = 30.0  # seconds --verify waits for live agents that are behind
    allow_truncated: bool = False  # rebuild from topics whose oldest records retention deleted
    keep_candidate: bool = False  # keep the candidate schema after a dry run
    drop_old: bool = False  # drop the old tables after a swap
    lock_timeout: float = 5.0
    lock_attempts: int = 6
    progress_interval: float = 5.0


@dataclass
class Result:
    projection: str
    candidate: str
    replayed: int = 0  # records read from the start to the captured ends
    caught_up: int = 0  # records read after the captured ends, up to the live fences
    outcomes: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    ends: dict[TopicPartition, int] = field(default_factory=dict)
    live_behind: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)
    fences_past_end: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # candidate row counts at the end
    diffs: list[TableDiff] = field(default_factory=list)
    swapped: bool = False
    old_schema: str | None = None

    @property
    def differs(self) -> bool:
        return any(d.differs for d in self.diffs)


class ProjectionRebuild:
    """One projection's rebuild into `candidate`: `replay()`, then `finish()` (catch up, compare, swap)."""

    def __init__(
        self,
        settings: Settings,
        projection: Projection,
        candidate: str,
        old: str,
        options: Options,
        say: Say,
        note: str = "hookstream projections rebuild: the live tables it replaced",
    ) -> None:
        self.settings, self.projection, self.options, self.say, self.note = settings, projection, options, say, note
        self.live, self.candidate, self.old = settings.database_schema, candidate, old
        self.candidate_settings = settings.model_copy(update={"database_schema": candidate})
        self.logical = {settings.topic(t): t for t in projection.topics}
        self.positions: dict[TopicPartition, int] = {}
        self.tps: list[TopicPartition] = []
        self.result = Result(projection.name, candidate)
        self.reader = TopicReader(settings, "hookstream-projections-rebuild")
        # The live agents' functions, on connections to the candidate schema. Commits do not wait for the
        # disk (twice as fast here): a server crash could lose the last ones, so a restart during the
        # rebuild fails it (in `_locked`); the swap's own commit waits, and makes all of them durable.
        self.pool = AsyncConnectionPool(
            settings.database_url,
            min_size=1,
            max_size=APPLY_CONNECTIONS,
            open=False,
            kwargs={"options": f"-c search_path={candidate} -c synchronous_commit=off"},
        )
        self.server_started_at = None
        self.conn: psycopg.AsyncConnection | None = None

    async def __aenter__(self) -> ProjectionRebuild:
        await self.reader.start()
        try:
            await self.pool.open(wait=True, timeout=30)
            self.conn = await psycopg.AsyncConnection.connect(self.settings.database_url, autocommit=True)
            self.server_started_at = await store.server_started_at(self.conn)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc_info) -> None:
        if self.conn is not None:
            await self.conn.close()
        await self.pool.close()
        await self.reader.stop()

    # -- 1-3: the replay --------------------------------------------------------------------------

    async def replay(self, after_fences: bool = False) -> None:
        """From the earliest offsets to the true ends captured now. `after_fences`: the candidate
        holds rows already (a rollback to old tables): from just after its fences instead."""
        started = time.monotonic()
        for topic in self.logical:
            self.tps.extend((topic, p) for p in await self.reader.partitions(topic))
        earliest, ends = await self._bounds()
        self.result.ends = ends
        fences = await self._candidate_fences() if after_fences else {}
        starts = {tp: fences.get(tp, -1) + 1 for tp in self.tps}
        truncated = plan.deleted_before_start(earliest, starts)
        if truncated and not self.options.allow_truncated:
            where = ", ".join(f"{t}[{p}] starts at {o}" for (t, p), o in sorted(truncated.items()))
            raise RebuildError(
                f"{self.projection.name}: retention deleted records the rebuild needs ({where}); "
                "the rows they made would be missing. --dry-run --verify --allow-truncated shows "
                "what that loses; --allow-truncated rebuilds from what is left."
            )
        self.positions = {tp: max(starts[tp], earliest[tp]) for tp in self.tps}
        self.result.replayed = await self._read(
            {tp: (self.positions[tp], ends[tp]) for tp in self.tps}, f"replaying {self.projection.name}"
        )
        short = {tp: (self.positions[tp], ends[tp]) for tp in self.tps if self.positions[tp] < ends[tp]}
        if short:
            raise RebuildError(f"{self.projection.name}: the replay stopped short of the captured end: {short}")
        self.result.seconds = time.monotonic() - started

    async def _read(self, ranges: dict[TopicPartition, tuple[int, int]], label: str) -> int:
        """Read and apply `ranges` into the candidate, with a progress line every few seconds."""
        ranges = {tp: r for tp, r in ranges.items() if r[1] > r[0]}
        totals: Counter = Counter()
        for (topic, _), (start, stop) in ranges.items():
            totals[topic] += stop - start
        if not ranges:
            return 0
        started = last_said = time.monotonic()
        count = 0

        def progress() -> str:
            done: Counter = Counter()
            for (topic, p), (start, _) in ranges.items():
                done[topic] += self.positions.get((topic, p), start) - start
            return plan.format_progress(label, done, totals, count / max(time.monotonic() - started, 1e-6))

        async def apply_in_order(records: list) -> None:
            nonlocal count
            for record in records:
                await self._apply(record)
                self.positions[(record.topic, record.partition)] = record.offset + 1
                count += 1

        async for batch in self.reader.read(ranges):
            # Partitions in parallel, each in order: what several workers sharing the partitions do.
            outcomes = await asyncio.gather(*(apply_in_order(r) for r in batch.values()), return_exceptions=True)
            failed = [o for o in outcomes if isinstance(o, BaseException)]
            if failed:  # after every partition stopped: nothing applies behind the error's back
                raise failed[0]
            if time.monotonic() - last_said >= self.options.progress_interval:
                last_said = time.monotonic()
                self.say(progress())
        for tp, (_, stop) in ranges.items():
            self.positions[tp] = max(self.positions.get(tp, 0), stop)
        if time.monotonic() - started >= self.options.progress_interval:
            self.say(progress())
        return count

    async def _bounds(self) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """(earliest, true end) of each of the projection's partitions."""
        bounds = await self.reader.bounds(KafkaTopicPartition(t, p) for t, p in self.tps)
        return (
            {(tp.topic, tp.partition): earliest for tp, (earliest, _) in bounds.items()},
            {(tp.topic, tp.partition): end for tp, (_, end) in bounds.items()},
        )

    async def _apply(self, record) -> None:
        logical = self.logical[record.topic]
        try:
            decoded = codec.decode_topic(logical, record.value)
        except codec.DecodeError as exc:
            # What the live agent does: count it, say where it is, project nothing (no fence row).
            self.result.outcomes[UNDECODABLE] += 1
            log.warning(
                "undecodable record on %s[%d]@%d, not projected: %s", record.topic, record.partition, record.offset, exc
            )
            return
        consumer = self.projection.consumer_of(logical)
        outcome = await consumer.project(self.pool, record.topic, record.partition, record.offset, decoded)
        if isinstance(outcome, bool):  # project_dead_letter: applied, or fenced
            outcome = "applied" if outcome else "already_applied"
        self.result.outcomes[outcome] += 1

    # -- 4-5: catch up, compare, swap -------------------------------------------------------------

    @property
    def db(self) -> psycopg.AsyncConnection:
        """The rebuild's connection, open between `start` and `close`."""
        if self.conn is None:
            raise RuntimeError(f"{self.projection.name}: the rebuild has no connection (not started, or closed)")
        return self.conn

    async def _live_fences(self) -> dict[TopicPartition, int]:
        fences = await store.fences(self.db, self.live, self.projection.consumer_names)
        return {tp: f for tp, f in fences.items() if tp in self.result.ends}  # rows of other topics are not read

    async def _candidate_fences(self) -> dict[TopicPartition, int]:
        return await store.fences(self.db, self.candidate, self.projection.consumer_names)

    async def _catch_up(self, live: dict[TopicPartition, int]) -> None:
        _, ends = await self._bounds()
        self.result.fences_past_end = plan.fences_past_the_end(live, ends)
        reads = plan.reads_to_catch_up(self.positions, live, ends)
        self.result.caught_up += await self._read(reads, f"catching up {self.projection.name}")

    async def finish(self) -> Result:
        """Steps 4 and 5; the result says what was compared and whether the tables were swapped."""
        assert self.conn is not None
        deadline = time.monotonic() + (self.options.verify_wait if self.options.verify else 0)
        said = False
        while True:
            await self._catch_up(await self._live_fences())
            behind = plan.live_behind(await self._candidate_fences(), await self._live_fences())
            if not (self.options.verify and behind) or time.monotonic() >= deadline:
                break
            if not said:
                said = True
                self.say(
                    f"{self.projection.name}: waiting up to {self.options.verify_wait:.0f} s for the live "
                    f"projection to apply what the rebuild did ({_partitions(behind)}); "
                    "stopped workers never will (--verify-wait 0 compares at once)"
                )
            await asyncio.sleep(0.5)

        if self.options.swap or self.options.verify:
            try:
                await self._locked_with_retries()
            except psycopg.OperationalError as exc:
                if not self.conn.broken:
                    raise
                raise RebuildError(
                    f"{self.projection.name}: lost PostgreSQL during the swap ({str(exc).strip()}). The swap is one "
                    "transaction: if `hookstream projections list` shows a new <schema>_old_<time> schema holding "
                    f"the {self.projection.name} tables, it happened; otherwise nothing changed."
                ) from None
        else:  # a plain dry run: nothing needs the agents paused
            self.result.live_behind = plan.live_behind(await self._candidate_fences(), await self._live_fences())
        for table in self.projection.tables:
            schema = self.live if self.result.swapped else self.candidate
            self.result.rows[table.name] = await store.row_count(self.conn, schema, table.name)
        return self.result

    async def _locked_with_retries(self) -> None:
        for attempt in range(1, self.options.lock_attempts + 1):
            try:
                return await self._locked()
            except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected):
                if attempt == self.options.lock_attempts:
                    raise RebuildError(
                        f"{self.projection.name}: a lock on the live tables was not granted within "
                        f"{self.options.lock_timeout:g} s, {attempt} times: a long transaction holds them "
                        "(see pg_stat_activity). Nothing was swapped."
                    ) from None
                self.say(
                    f"{self.projection.name}: a lock was not granted within {self.options.lock_timeout:g} s; "
                    f"trying again ({attempt}/{self.options.lock_attempts})"
                )
                await asyncio.sleep(1.0)

    async def _locked(self) -> None:
        """Step 5, one transaction: everything in it sees the live fences and tables stand still."""
        async with self.db.transaction(force_rollback=not self.options.swap):
            await store.lock_fences(self.db, self.live, self.options.lock_timeout)
            if await store.server_started_at(self.db) != self.server_started_at:
                raise RebuildError(
                    f"{self.projection.name}: PostgreSQL restarted during the rebuild; the rebuilt "
                    "tables may miss its last writes. Nothing was swapped: run the rebuild again."
                )
            live = await self._live_fences()
            await self._catch_up(live)
            self.result.live_behind = plan.live_behind(await self._candidate_fences(), live)
            if not self.result.live_behind:
                # Only then is a row the live tables lack one they pruned (and not one they have yet to apply).
                await self._prune_alike()
            if self.options.verify:
                self.result.diffs = [
                    await store.diff_table(self.db, self.live, self.candidate, table, self.options.show)
                    for table in self.projection.tables
                ]
            if self.options.swap:
                await store.swap(
                    self.db,
                    self.live,
                    self.candidate,
                    self.old,
                    self.projection.tables,
                    self.projection.consumer_names,
                    list(self.logical),
                    self.note,
                )
        self.result.swapped = self.options.swap
        self.result.old_schema = self.old if self.options.swap else None

    async def _prune_alike(self) -> None:
        """The live tables lose their history past HOOKSTREAM_RETENTION_DAYS (`app.store.retention`), the
        topics keep it: the candidate loses the rows past it that the live tables no longer have, so that
        neither the comparison nor the swap brings pruned history back (the live tables are not touched)."""
        step = retention.BY_PROJECTION.get(self.projection.name)
        if step is None:
            return
        assert self.conn is not None
        older_than = datetime.now(UTC) - timedelta(days=self.settings.retention_days)
        await step(self.conn, self.candidate, older_than, self.live, self.live)


def _partitions(behind: dict[TopicPartition, tuple[int, int]]) -> str:
    return ", ".join(
        f"{t}[{p}] live at {live}, rebuilt at {rebuilt}" for (t, p), (live, rebuilt) in sorted(behind.items())
    )


# -- the run --------------------------------------------------------------------------------------


async def rebuild(
    settings: Settings, names: list[str], options: Options, say: Say, at: datetime | None = None
) -> list[Result]:
    """Rebuild the named projections one after the other into one candidate schema; see the module docstring."""
    results: list[Result] = []
    async with _exclusive_run(settings, names) as (run_conn, registry):
        candidate, old = await _fresh_schema_names(run_conn, settings, at)
        await db.migrate(settings.model_copy(update={"database_schema": candidate}))
        say(f"candidate schema {candidate} created and migrated")
        try:
            for name in names:
                job = ProjectionRebuild(settings, registry[name], candidate, old, options, say, _note("rebuild"))
                async with _failing_as(name), job:
                    await job.replay()
                    results.append(await job.finish())
        except RebuildError as exc:
            raise _with_swapped(exc, results, old) from None
        finally:
            if options.swap or not options.keep_candidate:
                await _drop_quietly(run_conn, candidate, say)
        if options.drop_old and any(r.swapped for r in results):
            await db.drop_schema(run_conn, old)
            for r in results:
                r.old_schema = None
    return results


async def rollback(
    settings: Settings, source: str, names: list[str] | None, options: Options, say: Say, at: datetime | None = None
) -> list[Result]:
    """Put the tables a rebuild replaced (kept in `source`, a `<schema>_old_<time>` schema) back.

    The same steps as a rebuild with `source` as the candidate, continued from its
    fence rows rather than replayed from the start: the records the live agents
    applied since those tables were replaced are applied to them before they swap
    back in. The tables they replace go to a new `<schema>_old_<time>` schema.
    """
    results: list[Result] = []
    async with _exclusive_run(settings, names) as (run_conn, registry):
        _, old = await _fresh_schema_names(run_conn, settings, at)
        if not await store.schema_exists(run_conn, source):
            raise RebuildError(f"no schema {source} (`hookstream projections list` shows the old tables kept)")
        kept = [
            n
            for n in registry
            if not await store.missing_tables(
                run_conn, source, [t.name for t in registry[n].tables] + ["applied_offsets"]
            )
        ]
        for name in names or ():
            if name not in kept:
                raise RebuildError(f"schema {source} holds no {name} tables to roll back to")
        names = names or kept
        if not names:
            raise RebuildError(f"schema {source} holds no projection's tables (`hookstream projections list`)")
        try:
            for name in names:
                note = _note(f"rollback from {source}")
                job = ProjectionRebuild(settings, registry[name], source, old, options, say, note)
                async with _failing_as(name), job:
                    await job.replay(after_fences=True)
                    results.append(await job.finish())
        except RebuildError as exc:
            raise _with_swapped(exc, results, old) from None
    return results


@contextlib.asynccontextmanager
async def _failing_as(name: str):
    """PostgreSQL and Kafka failures as a `RebuildError` naming the projection (nothing of it was swapped)."""
    try:
        yield
    except ReadError as exc:
        raise RebuildError(f"{name}: {exc}; nothing of {name} was swapped") from None
    except (psycopg.Error, KafkaError, OSError) as exc:
        raise RebuildError(f"{name}: {type(exc).__name__}: {str(exc).strip()}; nothing of {name} was swapped") from exc


async def _drop_quietly(conn: psycopg.AsyncConnection, schema: str, say: Say) -> None:
    """Drop the candidate without hiding why the run failed, if it did."""
    try:
        await db.drop_schema(conn, schema)
    except psycopg.Error as exc:
        say(f"could not drop schema {schema} ({str(exc).strip()}): DROP SCHEMA {schema} CASCADE by hand")


def _note(what: str) -> str:
    return (
        f"hookstream projections {what} at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: "
        "the live tables it replaced, and their fence rows (applied_offsets)"
    )


async def _fresh_schema_names(
    conn: psycopg.AsyncConnection, settings: Settings, at: datetime | None
) -> tuple[str, str]:
    """(candidate, old) names no schema has yet: a run in the same second as the last one waits a second."""
    for _ in range(3):
        try:
            names = plan.schema_names(settings.database_schema, at or datetime.now(UTC))
        except ValueError as exc:
            raise RebuildError(str(exc)) from None
        if not any([await store.schema_exists(conn, name) for name in names]):
            return names
        at = None
        await asyncio.sleep(1.0)
    raise RebuildError(f"schemas {' and '.join(names)} exist already; run again")


def _with_swapped(exc: RebuildError, results: list[Result], old: str) -> RebuildError:
    done = ", ".join(r.projection for r in results if r.swapped)
    if not done:
        return exc
    return RebuildError(f"{exc} (already swapped by this run: {done}; the tables they replaced are in {old})")


@contextlib.asynccontextmanager
async def _exclusive_run(settings: Settings, names: list[str] | None):
    """(connection, registry) for a run that holds the schema's rebuild lock and passed the preflight."""
    tansu_quirks.install(settings)
    registry = projections()
    names = list(registry) if names is None else names
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise RebuildError(f"no projection {', '.join(unknown)} (there are: {', '.join(registry)})")
    try:
        conn = await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True)
    except psycopg.OperationalError as exc:
        raise RebuildError(f"cannot reach PostgreSQL at HOOKSTREAM_DATABASE_URL: {str(exc).strip()}") from None
    async with conn:
        live = settings.database_schema
        if not await store.try_run_lock(conn, live):
            raise RebuildError(
                f"another `hookstream projections rebuild` or `rollback` is running on schema {live}; "
                "wait for it to finish"
            )
        await _preflight(conn, live, [registry[n] for n in names])
        yield conn, registry


async def _preflight(conn: psycopg.AsyncConnection, live: str, chosen: list[Projection]) -> None:
    """The live schema exists, is fully migrated (the candidate will be) and holds the tables."""
    expected = {name for name, _ in db.migration_files()}
    applied = await store.migrations(conn, live)
    if not applied:
        raise RebuildError(
            f"schema {live} has no hookstream tables: check HOOKSTREAM_DATABASE_SCHEMA, or run `hookstream db migrate`"
        )
    if expected - applied:
        raise RebuildError(
            f"schema {live} lacks migrations {sorted(expected - applied)}: run `hookstream db migrate` first "
            "(the rebuilt tables would have other columns than the live ones)"
        )
    for projection in chosen:
        missing = await store.missing_tables(conn, live, [t.name for t in projection.tables] + ["applied_offsets"])
        if missing:
            raise RebuildError(f"schema {live} has no table {', '.join(missing)}")
