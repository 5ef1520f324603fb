"""Properties of the per-source fold under any interleaving, duplication and delay.

A driver plays the world around one source: producers request syncs (new ids or
redeliveries of earlier requests), the source connects and disconnects, and for
every job the fold asked to plan (PlanRequested) the planner and the batch
workers may answer at any later time — planned, failed, batches in any order,
twice, or after the job ended — and deadlines fire early or on time. Already
applied offsets are re-fed at random. At the end the world finishes whatever is
running, and the whole history is checked against docs/architecture.md, invariants 3–5.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.policy import Policy
from app.core.source_state import SourceState, fold
from app.events import (
    BatchCompleted,
    DeadlineReached,
    PlanFailed,
    PlanRequested,
    SourceConnected,
    SourceDisconnected,
    SyncCancelled,
    SyncCompleted,
    SyncDeduplicated,
    SyncPlanned,
    SyncRejected,
    SyncRequested,
    SyncStarted,
)

SRC = "github:42"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
# Request ids are remembered longer than any generated history spans.
POLICY = Policy(deadline_seconds=900, idempotency_ttl_seconds=300, request_memory_seconds=10**8)
COUNTS = ("processed", "failed", "deleted", "skipped", "documents_written", "bytes")
# Weighted by repetition; shrinking moves towards the first.
ACTIONS = (
    ["request"] * 6
    + ["redeliver"] * 2
    + ["plan"] * 3
    + ["batch"] * 8
    + ["plan_failed", "deadline", "deadline_due", "connect", "disconnect", "refeed"]
    + ["tick"] * 3
)


# The requests producers send: (mode, trigger, paths, before, after).
REQUESTS = (
    ("full", "manual", (), None, None),
    ("incremental", "push", ("a.md",), "c0", "c1"),
    ("incremental", "push", ("b.py", "a.md"), "c1", "c2"),
    ("full", "config_change", (), "c1", "c2"),
    ("incremental", "manual", (), None, None),
    ("incremental", "push", ("c/d.txt",), "c0", "c1"),
)


class Step(NamedTuple):
    """One thing the world does. Few, small fields: hypothesis shrinks a failure fast."""

    action: str
    pick: int  # which earlier request, job or event (0 = the latest); which request shape for a new one
    number: int  # seconds of a tick; a batch index (modulo the job's batches); a plan's batch count (modulo 5)
    amount: int  # a batch's counts are derived from it


STEPS = st.builds(
    Step,
    action=st.sampled_from(ACTIONS),
    pick=st.integers(0, 15),
    number=st.integers(0, 400),
    amount=st.integers(0, 5),
)


def chosen(items, pick: int):
    return items[-1 - pick % len(items)]


@dataclass
class World:
    state: SourceState | None = None
    clock: datetime = T0
    offset: int = 0
    # Every applied step: (event, offset, now, effects).
    log: list[tuple[object, int, datetime, list]] = field(default_factory=list)
    requests: list[SyncRequested] = field(default_factory=list)
    batch_counts: dict[str, int] = field(default_factory=dict)  # the planner's answer per job, fixed once given
    deadlines: dict[str, datetime] = field(default_factory=dict)
    # Jobs the planner was asked about (PlanRequested): the only ones the world can answer for.
    jobs: list[str] = field(default_factory=list)

    def feed(self, event) -> list:
        """Fold like the agent does: the state goes through its JSON form between events."""
        now = event.occurred_at
        stored = None if self.state is None else SourceState.from_json(self.state.to_json())
        self.state, effects = fold(stored, event, now, self.offset, POLICY)
        self.log.append((event, self.offset, now, effects))
        self.offset += 1
        for e in effects:
            if isinstance(e, SyncStarted):
                self.deadlines[e.job_id] = e.deadline
            elif isinstance(e, PlanRequested):
                self.jobs.append(e.job_id)
        return effects

    def batch_count(self, job: str, number: int) -> int:
        return self.batch_counts.setdefault(job, number % 5)

    def planned(self, job: str, count: int) -> SyncPlanned:
        return SyncPlanned(source_id=SRC, occurred_at=self.clock, job_id=job, batch_count=count, file_count=3 * count)

    def done(self, job: str, index: int, amount: int) -> BatchCompleted:
        counts = (amount, amount % 2, amount // 2, amount % 3, 2 * amount, 100 * amount)
        return BatchCompleted(
            source_id=SRC,
            occurred_at=self.clock,
            job_id=job,
            batch_index=index,
            **dict(zip(COUNTS, counts, strict=True)),
        )


def play(world: World, steps: list[Step]) -> None:
    for step in steps:
        action, jobs = step.action, world.jobs
        if action == "request":
            mode, trigger, paths, before, after = REQUESTS[step.pick % len(REQUESTS)]
            request = SyncRequested(
                source_id=SRC,
                occurred_at=world.clock,
                request_id=f"r{len(world.requests)}",
                mode=mode,
                trigger=trigger,
                paths=list(paths),
                before=before,
                after=after,
            )
            world.requests.append(request)
            world.feed(request)
        elif action == "redeliver" and world.requests:
            world.feed(chosen(world.requests, step.pick))
        elif action == "plan" and jobs:
            job = chosen(jobs, step.pick)
            world.feed(world.planned(job, world.batch_count(job, step.number)))
        elif action == "plan_failed" and jobs:
            world.feed(
                PlanFailed(
                    source_id=SRC, occurred_at=world.clock, job_id=chosen(jobs, step.pick), error="adapter failed"
                )
            )
        elif action == "batch" and jobs:
            job = chosen(jobs, step.pick)
            count = world.batch_count(job, step.number)
            if count:
                world.feed(world.done(job, step.number % count, step.amount))
        elif action in ("deadline", "deadline_due") and jobs:
            job = chosen(jobs, step.pick)
            if action == "deadline_due":
                world.clock = max(world.clock, world.deadlines[job])
            world.feed(DeadlineReached(source_id=SRC, occurred_at=world.clock, job_id=job))
        elif action == "connect":
            world.feed(
                SourceConnected(
                    source_id=SRC, occurred_at=world.clock, source_type="github", config={"repository": "o/r"}
                )
            )
        elif action == "disconnect":
            world.feed(SourceDisconnected(source_id=SRC, occurred_at=world.clock))
        elif action == "refeed" and world.log:
            event, offset, now, _ = chosen(world.log, step.pick)
            before = world.state
            after, effects = fold(before, event, now, offset, POLICY)
            assert effects == [] and after == before, "an already applied offset must change nothing"
        elif action == "tick":
            world.clock += timedelta(seconds=step.number)


def drain(world: World) -> None:
    """The world catches up: the planner and workers answer every job still running."""
    for _ in range(4):
        if world.state is None or world.state.active is None:
            return
        job = world.state.active.job.job_id
        count = world.batch_count(job, 2)
        world.clock += timedelta(seconds=1)
        world.feed(world.planned(job, count))
        for index in range(count):
            world.feed(world.done(job, index, 1))
    assert world.state.active is None, "draining must finish every job"


def effects_in_order(world: World):
    for step, (_, _, _, effects) in enumerate(world.log):
        for effect in effects:
            yield step, effect


def check_one_active_job_and_one_completion_each(world: World) -> dict[str, tuple[int, int]]:
    """Returns each job's (start step, completion step)."""
    running: dict[str, int] = {}
    intervals: dict[str, tuple[int, int]] = {}
    for step, effect in effects_in_order(world):
        if isinstance(effect, SyncStarted):
            assert effect.job_id not in running and effect.job_id not in intervals, "a job starts once"
            running[effect.job_id] = step
            assert len(running) == 1, f"two active jobs: {sorted(running)}"
        elif isinstance(effect, SyncCompleted):
            assert effect.job_id in running, f"{effect.job_id} completed without running (or twice)"
            intervals[effect.job_id] = (running.pop(effect.job_id), step)
    assert not running, f"jobs never completed: {sorted(running)}"
    completions = Counter(e.job_id for _, e in effects_in_order(world) if isinstance(e, SyncCompleted))
    assert all(n == 1 for n in completions.values()), completions
    return intervals


def check_every_request_is_answered_once(world: World) -> None:
    started = {e.job_id: e.request_ids for _, e in effects_in_order(world) if isinstance(e, SyncStarted)}
    answers: dict[str, list[str]] = defaultdict(list)
    for step, effect in effects_in_order(world):
        event = world.log[step][0]
        if isinstance(effect, SyncCompleted):
            assert effect.request_ids == started[effect.job_id], "a job reports every request it served"
            for rid in effect.request_ids:
                answers[rid].append(f"ran in {effect.job_id}")
        elif isinstance(effect, SyncDeduplicated):
            assert effect.held_by_job_id and effect.held_status
            answers[effect.request_ids[0]].append("deduplicated")
        elif isinstance(effect, SyncRejected):
            connection_before = world_connection_before(world, step)
            assert connection_before != "connected", "only an unknown or disconnected source rejects"
            answers[effect.request_ids[0]].append("rejected")
        elif isinstance(effect, SyncCancelled) and effect.job_id not in started:
            assert isinstance(event, SourceDisconnected)
            for rid in effect.request_ids:
                answers[rid].append("cancelled while queued")
    for rid in {r.request_id for r in world.requests}:
        assert len(answers[rid]) == 1, f"{rid}: {answers[rid] or 'never answered'}"


def world_connection_before(world: World, step: int) -> str:
    connection = "unknown"
    for event, _, _, _ in world.log[:step]:
        if isinstance(event, SourceConnected):
            connection = "connected"
        elif isinstance(event, SourceDisconnected):
            connection = "disconnected"
    return connection


def check_counts_are_distinct_batches_reported_while_active(world: World, intervals) -> None:
    counted: dict[str, dict[int, BatchCompleted]] = defaultdict(dict)
    for step, (event, _, _, _) in enumerate(world.log):
        if isinstance(event, BatchCompleted) and event.job_id in intervals:
            start, end = intervals[event.job_id]
            if start < step <= end:
                counted[event.job_id].setdefault(event.batch_index, event)
    for _, effect in effects_in_order(world):
        if not isinstance(effect, SyncCompleted):
            continue
        reports = counted[effect.job_id].values()
        for name in COUNTS:
            assert getattr(effect, name) == sum(getattr(r, name) for r in reports), name
        assert effect.batches == len(reports)
        if effect.status in ("succeeded", "failed") and effect.error != "adapter failed":
            assert effect.batches == world.batch_counts.get(effect.job_id), "fan-in waits for every batch of its plan"
            assert effect.files_listed == 3 * effect.batches
        if effect.status == "timed_out":
            assert effect.finished_at >= world.deadlines[effect.job_id], "timed out before its deadline"
        assert effect.duration_ms >= 0


def check_replay_is_identical(world: World) -> None:
    """A replay from scratch, state kept in memory, matches the live run whose state went through JSON."""
    state = None
    for event, offset, now, effects in world.log:
        state, again = fold(state, event, now, offset, POLICY)
        assert again == effects, "replay must emit the same effects"
    assert state == world.state


# One failure shrunk well beats five shrunk for minutes: report_multiple_bugs=False.
@settings(max_examples=200, deadline=None, report_multiple_bugs=False, suppress_health_check=[HealthCheck.too_slow])
@given(
    starts_connected=st.integers(0, 3).map(bool),  # mostly connected from the start
    # Long histories find the interleavings; short ones come first so failures shrink to a few steps.
    steps=st.one_of(st.lists(STEPS, max_size=8), st.lists(STEPS, min_size=20, max_size=80)),
)
def test_any_interleaving_keeps_the_orchestration_invariants(starts_connected, steps):
    world = World()
    if starts_connected:
        world.feed(SourceConnected(source_id=SRC, occurred_at=T0, source_type="git", config={"path": "/repo"}))
    play(world, steps)
    drain(world)
    intervals = check_one_active_job_and_one_completion_each(world)
    check_every_request_is_answered_once(world)
    check_counts_are_distinct_batches_reported_while_active(world, intervals)
    check_replay_is_identical(world)
