"""Properties of the per-source fold under any interleaving, duplication and delay.

A driver plays the world around one source: producers request syncs (new ids or
redeliveries of earlier requests), the source connects and disconnects, and for
every job the fold asked to plan (PlanRequested) the planner and the batch
workers may answer at any later time — planned, failed, batches in any order,
twice, or after the job ended — and deadlines fire early or on time. Already
applied offsets are re-fed at random. At the end the world finishes whatever is
running, and the whole history is checked against DESIGN.md §6 invariants 3–5.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

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
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
# Request ids are remembered longer than any generated history spans.
POLICY = Policy(deadline_seconds=900, idempotency_ttl_seconds=300, request_memory_seconds=10**8)
COUNTS = ("processed", "failed", "deleted", "skipped", "documents_written", "bytes")
ACTIONS = (
    ["request"] * 6
    + ["redeliver"] * 2
    + ["plan"] * 3
    + ["batch"] * 8
    + ["plan_failed", "deadline", "deadline_due", "connect", "disconnect", "refeed"]
    + ["tick"] * 3
)


@dataclass
class World:
    state: SourceState | None = None
    clock: datetime = T0
    offset: int = 0
    # Every applied step: (event, offset, now, effects).
    log: list[tuple[object, int, datetime, list]] = field(default_factory=list)
    requests: list[SyncRequested] = field(default_factory=list)
    batch_counts: dict[str, int] = field(default_factory=dict)  # planner's answer per job, fixed once drawn
    deadlines: dict[str, datetime] = field(default_factory=dict)

    def feed(self, event) -> list:
        now = event.occurred_at
        self.state, effects = fold(self.state, event, now, self.offset, POLICY)
        self.log.append((event, self.offset, now, effects))
        self.offset += 1
        for e in effects:
            if isinstance(e, SyncStarted):
                self.deadlines[e.job_id] = e.deadline
        return effects

    @property
    def jobs(self) -> list[str]:
        """Jobs the planner was asked about: the only ones the world can answer for."""
        return [e.job_id for _, _, _, effects in self.log for e in effects if isinstance(e, PlanRequested)]

    def batch_count(self, data, job: str) -> int:
        if job not in self.batch_counts:
            self.batch_counts[job] = data.draw(st.integers(0, 4), label="batch_count")
        return self.batch_counts[job]

    def planned(self, job: str, count: int) -> SyncPlanned:
        return SyncPlanned(source_id=SRC, occurred_at=self.clock, job_id=job, batch_count=count, file_count=3 * count)

    def done(self, data, job: str, index: int) -> BatchCompleted:
        counts = {name: data.draw(st.integers(0, 5), label=name) for name in COUNTS}
        return BatchCompleted(source_id=SRC, occurred_at=self.clock, job_id=job, batch_index=index, **counts)


def play(world: World, data, steps: int) -> None:
    for _ in range(steps):
        action = data.draw(st.sampled_from(ACTIONS), label="action")
        jobs = world.jobs
        if action == "request":
            n = len(world.requests)
            request = SyncRequested(
                source_id=SRC,
                occurred_at=world.clock,
                request_id=f"r{n}",
                mode=data.draw(st.sampled_from(["full", "incremental"]), label="mode"),
                trigger=data.draw(st.sampled_from(["manual", "push"]), label="trigger"),
                paths=data.draw(st.lists(st.sampled_from(["a.md", "b.py", "c/d.txt"]), max_size=2), label="paths"),
                before=data.draw(st.sampled_from([None, "c0", "c1"]), label="before"),
                after=data.draw(st.sampled_from([None, "c1", "c2"]), label="after"),
            )
            world.requests.append(request)
            world.feed(request)
        elif action == "redeliver" and world.requests:
            world.feed(data.draw(st.sampled_from(world.requests), label="redelivered"))
        elif action == "plan" and jobs:
            job = data.draw(st.sampled_from(jobs), label="job")
            world.feed(world.planned(job, world.batch_count(data, job)))
        elif action == "plan_failed" and jobs:
            job = data.draw(st.sampled_from(jobs), label="job")
            world.feed(PlanFailed(source_id=SRC, occurred_at=world.clock, job_id=job, error="adapter failed"))
        elif action == "batch" and jobs:
            job = data.draw(st.sampled_from(jobs), label="job")
            count = world.batch_count(data, job)
            if count:
                world.feed(world.done(data, job, data.draw(st.integers(0, count - 1), label="index")))
        elif action in ("deadline", "deadline_due") and jobs:
            job = data.draw(st.sampled_from(jobs), label="job")
            if action == "deadline_due":
                world.clock = max(world.clock, world.deadlines[job])
            world.feed(DeadlineReached(source_id=SRC, occurred_at=world.clock, job_id=job))
        elif action == "connect":
            world.feed(SourceConnected(source_id=SRC, occurred_at=world.clock, source_type="github", config={"repository": "o/r"}))
        elif action == "disconnect":
            world.feed(SourceDisconnected(source_id=SRC, occurred_at=world.clock))
        elif action == "refeed" and world.log:
            event, offset, now, _ = data.draw(st.sampled_from(world.log), label="refeed")
            before = world.state
            after, effects = fold(before, event, now, offset, POLICY)
            assert effects == [] and after == before, "an already applied offset must change nothing"
        elif action == "tick":
            world.clock += timedelta(seconds=data.draw(st.integers(0, 400), label="seconds"))


def drain(world: World, data) -> None:
    """The world catches up: the planner and workers answer every job still running."""
    for _ in range(4):
        if world.state is None or world.state.active is None:
            return
        job = world.state.active.job.job_id
        count = world.batch_count(data, job)
        world.clock += timedelta(seconds=1)
        world.feed(world.planned(job, count))
        for index in range(count):
            world.feed(world.done(data, job, index))
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
            assert effect.batches == world.batch_counts[effect.job_id]
            assert effect.files_listed == 3 * effect.batches
        assert effect.duration_ms >= 0


def check_replay_is_identical(world: World) -> None:
    state, json_state = None, None
    for event, offset, now, effects in world.log:
        state, again = fold(state, event, now, offset, POLICY)
        assert again == effects, "replay must emit the same effects"
        json_state, from_json = fold(json_state, event, now, offset, POLICY)
        assert from_json == effects, "a state stored as JSON must fold like the live one"
        json_state = SourceState.from_json(json_state.to_json())
    assert state == world.state and json_state == world.state


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), starts_connected=st.booleans(), steps=st.integers(1, 60))
def test_any_interleaving_keeps_the_orchestration_invariants(data, starts_connected, steps):
    world = World()
    if starts_connected:
        world.feed(SourceConnected(source_id=SRC, occurred_at=T0, source_type="git", config={"path": "/repo"}))
    play(world, data, steps)
    drain(world, data)
    intervals = check_one_active_job_and_one_completion_each(world)
    check_every_request_is_answered_once(world)
    check_counts_are_distinct_batches_reported_while_active(world, intervals)
    check_replay_is_identical(world)
