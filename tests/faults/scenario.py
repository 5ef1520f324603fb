"""One scenario (or one phase of one): its sources, its load running in the background, its eyes, its check.

repos = await mirrors(stack, tmp, count=12, files=100, pushes=80, seed=1, first_id=1000)
async with Scenario("worker kill -9 mid-dedup", stack, repos, Traffic(pushes=80, seconds=10)) as sc:
    await sc.until(lambda: sc.routed() >= 200, "the first routings")
    ...the fault...
    await sc.finish()        # load done, settled, checked, asserted; the row is recorded
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import psycopg

from app.events import BatchCompleted, SyncCompleted, SyncPlanned, SyncRequested
from tests.faults.checker import COMPLETED, CONTROL, TAILED, Figures, assert_clean, check, settle
from tests.faults.harness import FaultStack, TopicTail
from tests.faults.load import MirrorRepo, Provider, Traffic, build_mirror
from tests.support.flows import send_control
from tests.support.services import wait_until


async def mirrors(
    stack: FaultStack, tmp: Path, count: int, files: int, pushes: int, seed: int, first_id: int
) -> list[MirrorRepo]:
    """`count` repositories and their connected `github:<id>` git-mirror sources."""
    repos = [
        build_mirror(tmp / f"repo-{first_id + i}", first_id + i, files, pushes, seed * 1000 + i) for i in range(count)
    ]
    await send_control(stack.settings, *(r.connected() for r in repos))
    return repos


async def connected(stack: FaultStack, repos: list[MirrorRepo], timeout: float = 60.0) -> None:
    """Wait until the read model shows every source connected: a worker has joined and is consuming."""
    s = stack.settings
    ids = sorted(r.source_id for r in repos)

    async def projected() -> bool:
        if not stack.alive():
            raise AssertionError(f"a worker died during start\n{stack.log_tails()}")
        async with await psycopg.AsyncConnection.connect(
            s.database_url, options=f"-c search_path={s.database_schema}"
        ) as conn:
            row = await (
                await conn.execute(
                    "SELECT count(*) FROM sources WHERE source_id = ANY(%s) AND status = 'connected'", (ids,)
                )
            ).fetchone()
        return row[0] == len(ids)

    await wait_until(projected, timeout=timeout, interval=0.1, what="the sources connected in the read model")


class Scenario:
    def __init__(
        self,
        name: str,
        stack: FaultStack,
        repos: list[MirrorRepo],
        traffic: Traffic,
        seed: int = 0,
        settle_timeout: float = 120.0,
        read_idle: float = 0.6,
    ) -> None:
        self.name = name
        self.stack = stack
        self.repos = repos
        self.traffic = traffic
        self.sources = {r.source_id for r in repos}
        self.settle_timeout = settle_timeout
        self.read_idle = read_idle
        self.provider = Provider(stack.ingress.url, stack.settings, seed=seed)
        self.tail = TopicTail(stack.settings, TAILED)
        self.load: asyncio.Task | None = None
        self.started = 0.0

    async def __aenter__(self) -> Scenario:
        self.started = time.monotonic()
        await self.tail.start()
        await self.provider.__aenter__()
        self.load = asyncio.create_task(self.provider.run(self.repos, self.traffic))
        return self

    async def __aexit__(self, *exc) -> None:
        if self.load is not None and not self.load.done():
            self.load.cancel()
            await asyncio.gather(self.load, return_exceptions=True)
        await self.provider.__aexit__(*exc)
        await self.tail.stop()

    # -- what the scenario watches ---------------------------------------------------------

    def routed(self) -> int:
        return sum(
            1 for r in self.tail.records[CONTROL] if isinstance(r, SyncRequested) and r.source_id in self.sources
        )

    def completed(self, source_id: str | None = None) -> list[SyncCompleted]:
        return [
            c
            for c in self.tail.records[COMPLETED]
            if c.source_id in self.sources and (source_id is None or c.source_id == source_id)
        ]

    def fan_in_midway(self, min_batches: int = 3, source_id: str | None = None, at_least: float = 0.0) -> str | None:
        """A job whose plan is known and some, not all, of its batches have reported (at least the
        fraction `at_least`): the orchestrator is mid-job."""
        planned: dict[str, int] = {}
        reported: dict[str, set[int]] = {}
        for r in self.tail.records[CONTROL]:
            if r.source_id not in self.sources or (source_id is not None and r.source_id != source_id):
                continue
            if isinstance(r, SyncPlanned):
                planned[r.job_id] = r.batch_count
            elif isinstance(r, BatchCompleted):
                reported.setdefault(r.job_id, set()).add(r.batch_index)
        done = {c.job_id for c in self.completed()}
        for job_id, count in planned.items():
            got = len(reported.get(job_id, ()))
            if count >= min_batches and job_id not in done and 0 < got < count and got >= at_least * count:
                return job_id
        return None

    def load_running(self) -> bool:
        return self.load is not None and not self.load.done()

    async def rows(self, source_id: str) -> int:
        s = self.stack.settings
        async with await psycopg.AsyncConnection.connect(
            s.database_url, options=f"-c search_path={s.database_schema}"
        ) as conn:
            row = await (
                await conn.execute("SELECT count(*) FROM documents WHERE source_id = %s", (source_id,))
            ).fetchone()
        return row[0]

    async def until(
        self, predicate: Callable[[], Awaitable[object] | object], what: str, timeout: float = 60.0
    ) -> None:
        """Wait for a condition of the running scenario; the load must still be running, a worker alive."""

        async def ready():
            if self.load is not None and self.load.done() and self.load.exception() is not None:
                raise self.load.exception()
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        await wait_until(ready, timeout=timeout, interval=0.05, what=what)

    # -- the end ---------------------------------------------------------------------------

    async def finish(self, load_timeout: float = 150.0) -> Figures:
        """Let the load end, wait until everything acknowledged is done, check, record, assert."""
        assert self.load is not None
        await asyncio.wait_for(self.load, load_timeout)
        settled = await settle(self.stack, self.tail, self.provider, self.repos, timeout=self.settle_timeout)
        fig = await check(self.name, self.stack, self.provider, self.repos, self.started, settled, self.read_idle)
        assert_clean(fig, self.provider, self.stack)
        return fig
