"""One source's sync pipeline, stepped by hand: the real fold, planner and batch writer, no Faust.

The stream stages are thin shells around three calls (`core.source_state.fold`,
`sync.planning.plan_job`, `sync.writing.process_batch`); this model makes the
topics between them explicit lists, so a test chooses every interleaving the
real system allows: the control partition is folded in order (a crash re-folds
an event from the old state and re-sends its effects); plan and batch records
are taken in any order and may be taken again (at-least-once); GitHub push
deliveries are routed by the real GitHub plugin, in whatever order they arrive.
Documents, kept plans and write fences are the real PostgreSQL tables; the
source is a real git repository read by the real git adapter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from app.core.effects import EnsureSource, Ignored
from app.core.policy import Policy
from app.core.source_state import SourceState, fold
from app.events import (
    BatchCompleted,
    Delivery,
    FileBatch,
    JobCancelled,
    Lifecycle,
    PlanFailed,
    PlanRequested,
    SourceConnected,
    SyncCompleted,
    SyncPlanned,
    SyncRequested,
)
from app.instances import InstanceConfig
from app.plugins import get_plugin
from app.sources import SourceAdapter, SourceError, SourceOptions, get_adapter
from app.store import documents
from app.store.db import in_transaction
from app.sync.planning import plan_job
from app.sync.writing import process_batch
from tests.support.flows import github_push

T0 = datetime(2026, 6, 1, tzinfo=UTC)
GITHUB = InstanceConfig(plugin="github", id="gh", secrets=("s",))


class Unreadable(SourceAdapter):
    """A source that cannot be read right now (the repository briefly gone): an injected failure."""

    source_type = "git"

    async def list_changes(self, request: PlanRequested):
        raise SourceError("injected: the repository is unreadable")

    def fetch(self, files):
        raise SourceError("injected: the repository is unreadable")


@dataclass
class Pipeline:
    source_id: str
    repo_id: int
    pool: Any
    batch_size: int = 3
    policy: Policy = field(default_factory=Policy)
    options: SourceOptions = field(default_factory=lambda: SourceOptions(git_readers=2))
    state: SourceState | None = None
    control: list[Any] = field(default_factory=list)  # the source's control partition; index = offset
    folded: int = 0
    plans: list[PlanRequested] = field(default_factory=list)
    batches: list[FileBatch] = field(default_factory=list)
    cancelled: set[str] = field(default_factory=set)
    completions: dict[str, SyncCompleted] = field(default_factory=dict)
    answers: list[Lifecycle] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    # Injected failures: job ids whose planning fails, (job id, batch index) whose reading fails.
    failing_plans: set[str] = field(default_factory=set)
    failing_batches: set[tuple[str, int]] = field(default_factory=set)
    clock: int = 0
    _adapters: dict[bytes, SourceAdapter] = field(default_factory=dict)
    _deliveries: int = 0

    def now(self) -> datetime:
        self.clock += 1
        return T0 + timedelta(seconds=self.clock)

    # -- what arrives on the control topic from outside ------------------------------------

    def connect(self, config: dict[str, Any]) -> None:
        self.control.append(
            SourceConnected(source_id=self.source_id, occurred_at=self.now(), source_type="git", config=config)
        )

    def push(self, delivery_id: str, before: str | None, after: str, branch: str, forced: bool = False) -> None:
        """A GitHub push delivery, routed by the real plugin (as the dedup stage does on first sighting)."""
        body = orjson.loads(
            github_push(self.repo_id, before or "0" * 40, after, modified=["x"], forced=forced, branch=branch)
        )
        body["created"] = before is None
        delivery = Delivery(
            delivery_id=delivery_id,
            plugin="github",
            instance="gh",
            received_at=self.now(),
            headers={"x-github-event": "push", "x-github-delivery": delivery_id},
            body=orjson.dumps(body),
        )
        routed = get_plugin("github").route(delivery, GITHUB)
        assert routed.ignored is None, routed.ignored
        self.control.extend(routed.events)

    def request(self, request_id: str, mode: str = "full", force: bool = False) -> None:
        self.control.append(
            SyncRequested(
                source_id=self.source_id,
                occurred_at=self.now(),
                request_id=request_id,
                mode=mode,
                trigger="manual",
                force=force,
            )
        )

    # -- the stages ------------------------------------------------------------------------

    async def fold_next(self, crash: bool = False) -> bool:
        """Fold the next control event; with `crash`, its effects go out but its state is not stored
        (the worker died in between), so the same event is folded again next time."""
        if self.folded >= len(self.control):
            return False
        event = self.control[self.folded]
        state, effects = fold(self.state, event, event.occurred_at, self.folded, self.policy)
        for effect in effects:
            if isinstance(effect, Ignored):
                self.ignored.append(effect.reason)
            elif isinstance(effect, EnsureSource):
                await in_transaction(
                    self.pool,
                    lambda conn, effect=effect: documents.ensure_source(
                        conn, effect.source_id, effect.source_type, effect.config, effect.name
                    ),
                )
            elif isinstance(effect, PlanRequested):
                self.plans.append(effect)
            elif isinstance(effect, JobCancelled):
                self.cancelled.add(effect.job_id)
            elif isinstance(effect, SyncCompleted):
                self.completions.setdefault(effect.job_id, effect)
            elif isinstance(effect, Lifecycle):
                self.answers.append(effect)
        if not crash:
            self.state, self.folded = state, self.folded + 1
        return True

    async def plan(self, index: int, again: bool = False) -> None:
        """Plan the `index`-th pending plan record; `again`: it stays pending (redelivered later)."""
        request = self.plans[index] if again else self.plans.pop(index)
        adapter = Unreadable() if request.job_id in self.failing_plans else self._adapter(request.source_config)
        try:
            plan = await plan_job(request, adapter, self.pool, self.batch_size)
        except SourceError as exc:
            self.control.append(
                PlanFailed(source_id=self.source_id, occurred_at=self.now(), job_id=request.job_id, error=str(exc))
            )
            return
        if plan is None:
            return
        self.batches.extend(plan.batches)
        self.control.append(
            SyncPlanned(
                source_id=self.source_id,
                occurred_at=self.now(),
                job_id=request.job_id,
                batch_count=len(plan.batches),
                file_count=len(plan.files),
                commit=plan.commit,
                listing=plan.listing,
                config=plan.config,
            )
        )

    async def batch(self, index: int, again: bool = False) -> None:
        batch = self.batches[index] if again else self.batches.pop(index)
        report = dict(
            source_id=self.source_id, occurred_at=self.now(), job_id=batch.job_id, batch_index=batch.batch_index
        )
        if batch.job_id in self.cancelled:
            self.control.append(BatchCompleted(**report, cancelled=True))
            return

        async def adapter_for(b: FileBatch) -> SourceAdapter:
            if (b.job_id, b.batch_index) in self.failing_batches:
                raise SourceError("injected: the repository is unreadable")
            return self._adapter(b.source_config)

        counts = await process_batch(batch, adapter_for, self.pool, 1024 * 1024)
        if counts is None:
            self.control.append(BatchCompleted(**report, cancelled=True))
            return
        self.control.append(BatchCompleted(**report, **counts.counts(), errors=counts.errors))

    async def drain(self, limit: int = 10_000) -> None:
        """Run every stage until nothing is pending, in a plain order, nothing injected."""
        self.failing_plans.clear()
        self.failing_batches.clear()
        for _ in range(limit):
            if await self.fold_next():
                continue
            if self.plans:
                await self.plan(0)
            elif self.batches:
                await self.batch(0)
            else:
                return
        raise AssertionError("the pipeline did not settle")

    def quiet(self) -> bool:
        return (
            self.folded == len(self.control)
            and not self.plans
            and not self.batches
            and (self.state is None or (self.state.active is None and self.state.pending is None))
        )

    def _adapter(self, config: dict[str, Any]) -> SourceAdapter:
        key = orjson.dumps(config, option=orjson.OPT_SORT_KEYS)
        if key not in self._adapters:
            self._adapters[key] = get_adapter("git", config, self.options)
        return self._adapters[key]

    async def aclose(self) -> None:
        for adapter in self._adapters.values():
            await adapter.aclose()
        self._adapters.clear()


@contextmanager
def schema_and_loop(bootstrap: str, database_url: str) -> Iterator[tuple[asyncio.AbstractEventLoop, Any]]:
    """A loop of the caller's own (Hypothesis calls a plain function per example) and a pool on a
    migrated schema of its own, for a module of property tests."""
    from app.store.db import migrate, open_pool
    from tests.support.services import isolated_settings

    loop = asyncio.new_event_loop()
    s = isolated_settings(bootstrap, database_url)
    loop.run_until_complete(migrate(s))
    pool = open_pool(s, min_size=1, max_size=4)
    loop.run_until_complete(pool.open(wait=True, timeout=30))
    try:
        yield loop, pool
    finally:
        loop.run_until_complete(pool.close())
        loop.close()
