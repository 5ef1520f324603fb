"""The per-source fold, rule by rule (docs/architecture.md, per-source orchestration): one table of scenarios, then the details.

Every scenario feeds events at offsets 0, 1, 2, … so a job started by the
request at offset n is `s:n`. Effects are summarised as short strings.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from app.core.batches import batch_key, file_batches, plan
from app.core.coalesce import MAX_PATH_HINTS, job_for, merge
from app.core.effects import (
    SYNC_CANCELLATIONS,
    SYNC_COMPLETED,
    SYNC_EVENTS,
    SYNC_PLANS,
    Destination,
    EnsureSource,
    Ignored,
    destination,
)
from app.core.fanin import Counts, FanIn, is_complete, planned, record, totals
from app.core.policy import Policy, idempotency_key
from app.core.source_state import SourceState, fold, overdue_job
from app.events import (
    BatchCompleted,
    DeadlineReached,
    FileChange,
    JobCancelled,
    PlanFailed,
    PlanRequested,
    SourceConfigChanged,
    SourceConnected,
    SourceDisconnected,
    SourceUpdated,
    SyncCancelled,
    SyncCoalesced,
    SyncCompleted,
    SyncDeduplicated,
    SyncIgnored,
    SyncPlanned,
    SyncQueued,
    SyncRejected,
    SyncRequested,
    SyncStarted,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SRC = "s"
POLICY = Policy()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def connected(t: float = 0, **kw) -> SourceConnected:
    kw.setdefault("config", {"path": "/repo"})
    return SourceConnected(source_id=SRC, occurred_at=at(t), source_type="git", **kw)


def disconnected(t: float = 0, reason: str = "uninstalled") -> SourceDisconnected:
    return SourceDisconnected(source_id=SRC, occurred_at=at(t), reason=reason)


def request(rid: str, mode: str = "full", trigger: str = "manual", t: float = 0, **kw) -> SyncRequested:
    return SyncRequested(source_id=SRC, occurred_at=at(t), request_id=rid, mode=mode, trigger=trigger, **kw)


def planned_(job: str, batches: int, files: int | None = None, t: float = 0, commit: str | None = None) -> SyncPlanned:
    return SyncPlanned(
        source_id=SRC,
        occurred_at=at(t),
        job_id=job,
        batch_count=batches,
        file_count=batches * 10 if files is None else files,
        commit=commit,
    )


def batch(job: str, index: int, t: float = 0, **counts) -> BatchCompleted:
    return BatchCompleted(source_id=SRC, occurred_at=at(t), job_id=job, batch_index=index, **counts)


def deadline(job: str, t: float) -> DeadlineReached:
    return DeadlineReached(source_id=SRC, occurred_at=at(t), job_id=job)


def plan_failed(job: str, error: str, t: float = 0) -> PlanFailed:
    return PlanFailed(source_id=SRC, occurred_at=at(t), job_id=job, error=error)


def summary(effect) -> str:
    ids = ",".join(getattr(effect, "request_ids", []) or [])
    if isinstance(effect, SyncStarted):
        return f"started {effect.job_id} [{ids}] {effect.mode}"
    if isinstance(effect, PlanRequested):
        return f"plan {effect.job_id}"
    if isinstance(effect, EnsureSource):
        return f"ensure {effect.source_id}"
    if isinstance(effect, SyncQueued):
        return f"queued {effect.job_id} [{ids}]"
    if isinstance(effect, SyncCoalesced):
        return f"coalesced {effect.job_id} [{ids}] {effect.mode}"
    if isinstance(effect, SyncDeduplicated):
        return f"deduplicated [{ids}] by {effect.held_by_job_id} {effect.held_status}"
    if isinstance(effect, SyncRejected):
        return f"rejected [{ids}] {effect.reason}"
    if isinstance(effect, SyncIgnored):
        return f"answered-ignored [{ids}] {effect.rule}"
    if isinstance(effect, SyncCancelled):
        return f"cancelled {effect.job_id} [{ids}]"
    if isinstance(effect, JobCancelled):
        return f"job-cancelled {effect.job_id}"
    if isinstance(effect, SyncCompleted):
        return (
            f"completed {effect.job_id} {effect.status} [{ids}] processed={effect.processed} batches={effect.batches}"
        )
    if isinstance(effect, Ignored):
        return f"ignored {effect.reason}"
    raise AssertionError(f"unexpected effect {effect!r}")


def run(events, policy: Policy = POLICY, state: SourceState | None = None):
    """Fold `events` at offsets 0.. and return the final state and each event's summarised effects."""
    out = []
    for offset, event in enumerate(events):
        state, effects = fold(state, event, event.occurred_at, offset, policy)
        out.append([summary(e) for e in effects])
    return state, out


START_1 = ["started s:1 [r1] full", "ensure s", "plan s:1"]

# (name, [(event, expected effects of that event)])
SCENARIOS = [
    (
        "singleton_runs_the_first_request_and_queues_the_next",
        [
            (connected(), []),
            (request("r1"), START_1),
            (request("r2", "incremental", "push", after="b", t=1), ["queued s:2 [r2]"]),
            (planned_("s:1", 1, t=2), []),
            (
                batch("s:1", 0, t=3, processed=10),
                [
                    "completed s:1 succeeded [r1] processed=10 batches=1",
                    "started s:2 [r2] incremental",
                    "plan s:2",
                ],
            ),
        ],
    ),
    (
        "zero_batch_plan_completes_succeeded_with_zeros",
        [
            (connected(), []),
            (request("r1"), START_1),
            (planned_("s:1", 0, files=0), ["completed s:1 succeeded [r1] processed=0 batches=0"]),
        ],
    ),
    (
        "full_absorbs_a_later_incremental",
        [
            (connected(), []),
            (request("r1"), START_1),
            (request("r2", trigger="config_change"), ["queued s:2 [r2]"]),
            (request("r3", "incremental", "push", after="c"), ["coalesced s:2 [r3] full"]),
            (
                planned_("s:1", 0),
                [
                    "completed s:1 succeeded [r1] processed=0 batches=0",
                    "started s:2 [r2,r3] full",
                    "plan s:2",
                ],
            ),
        ],
    ),
    (
        "a_later_full_absorbs_a_queued_incremental",
        [
            (connected(), []),
            (request("r1"), START_1),
            (request("r2", "incremental", "push", after="b"), ["queued s:2 [r2]"]),
            (request("r3", "full", "config_change", after="c"), ["coalesced s:2 [r3] full"]),
            (
                planned_("s:1", 0),
                [
                    "completed s:1 succeeded [r1] processed=0 batches=0",
                    "started s:2 [r2,r3] full",
                    "plan s:2",
                ],
            ),
        ],
    ),
    (
        "live_idempotency_key_answers_with_the_running_job",
        [
            (connected(), []),
            (request("r1"), START_1),
            (request("r2", t=10), ["deduplicated [r2] by s:1 running"]),
        ],
    ),
    (
        "live_idempotency_key_answers_with_the_queued_job",
        [
            (connected(), []),
            (request("r1"), START_1),
            (request("r2", "incremental", "push", after="b"), ["queued s:2 [r2]"]),
            (request("r3", "incremental", "push", after="b"), ["deduplicated [r3] by s:2 queued"]),
        ],
    ),
    (
        "live_idempotency_key_answers_with_the_finished_result",
        [
            (connected(), []),
            (request("r1"), START_1),
            (planned_("s:1", 0, t=5), ["completed s:1 succeeded [r1] processed=0 batches=0"]),
            (request("r2", t=60), ["deduplicated [r2] by s:1 succeeded"]),
        ],
    ),
    (
        "idempotency_key_is_live_until_just_before_its_ttl",
        [
            (connected(), []),
            (request("r1"), START_1),
            (planned_("s:1", 0, t=5), ["completed s:1 succeeded [r1] processed=0 batches=0"]),
            (request("r2", t=299.999), ["deduplicated [r2] by s:1 succeeded"]),
            (request("r3", t=300), ["started s:4 [r3] full", "plan s:4"]),
        ],
    ),
    (
        "pushes_to_different_commits_are_different_requests",
        [
            (connected(), []),
            (request("r1", "incremental", "push", after="a"), ["started s:1 [r1] incremental", "ensure s", "plan s:1"]),
            (request("r2", "incremental", "push", after="b"), ["queued s:2 [r2]"]),
            (request("r3", "incremental", "push", after="c"), ["coalesced s:2 [r3] incremental"]),
        ],
    ),
    (
        "redelivered_request_id_starts_nothing_and_is_counted",
        [
            (connected(), []),
            (request("r1"), START_1),
            (request("r1"), ["ignored duplicate_request"]),
            (planned_("s:1", 0), ["completed s:1 succeeded [r1] processed=0 batches=0"]),
            (request("r1", t=3600), ["ignored duplicate_request"]),
        ],
    ),
    (
        "disconnect_mid_job_cancels_it_with_partial_counts_and_the_queue",
        [
            (connected(), []),
            (request("r1"), START_1),
            (request("r2", "incremental", "push", after="b"), ["queued s:2 [r2]"]),
            (planned_("s:1", 3), []),
            (batch("s:1", 1, processed=4), []),
            (
                disconnected(t=20),
                [
                    "cancelled s:1 [r1]",
                    "job-cancelled s:1",
                    "completed s:1 cancelled [r1] processed=4 batches=1",
                    "cancelled s:2 [r2]",
                ],
            ),
            (batch("s:1", 0, processed=9), ["ignored late_batch"]),
            (request("r3"), ["rejected [r3] source disconnected"]),
            (connected(t=30), []),
            (request("r4", t=31), ["started s:9 [r4] full", "ensure s", "plan s:9"]),
        ],
    ),
    (
        "deadline_completes_timed_out_with_the_counts_so_far",
        [
            (connected(), []),
            (request("r1"), START_1),
            (request("r2", "incremental", "push", after="b"), ["queued s:2 [r2]"]),
            (planned_("s:1", 2), []),
            (batch("s:1", 0, processed=7), []),
            (deadline("s:1", t=3599), ["ignored deadline_not_reached"]),
            (
                deadline("s:1", t=3600),
                [
                    "job-cancelled s:1",
                    "completed s:1 timed_out [r1] processed=7 batches=1",
                    "started s:2 [r2] incremental",
                    "plan s:2",
                ],
            ),
            (batch("s:1", 1, processed=5), ["ignored late_batch"]),
            (deadline("s:1", t=3700), ["ignored late_deadline"]),
            (planned_("s:1", 2), ["ignored late_plan"]),
        ],
    ),
    (
        "duplicate_batch_is_counted_once",
        [
            (connected(), []),
            (request("r1"), START_1),
            (planned_("s:1", 2), []),
            (batch("s:1", 0, processed=3), []),
            (batch("s:1", 0, processed=3), ["ignored duplicate_batch"]),
            (batch("s:1", 1, processed=2), ["completed s:1 succeeded [r1] processed=5 batches=2"]),
            (batch("s:1", 1, processed=2), ["ignored late_batch"]),
        ],
    ),
    (
        "batches_before_the_plan_count_and_the_plan_completes_the_job",
        [
            (connected(), []),
            (request("r1"), START_1),
            (batch("s:1", 1, processed=2), []),
            (batch("s:1", 0, processed=3), []),
            (batch("s:1", 5, processed=100), []),
            (planned_("s:1", 2), ["ignored batch_out_of_range", "completed s:1 succeeded [r1] processed=5 batches=2"]),
        ],
    ),
    (
        "batch_index_beyond_a_known_plan_is_ignored",
        [
            (connected(), []),
            (request("r1"), START_1),
            (planned_("s:1", 1), []),
            (batch("s:1", 1, processed=2), ["ignored batch_out_of_range"]),
            (planned_("s:1", 1), ["ignored duplicate_plan"]),
        ],
    ),
    (
        "plan_failure_fails_the_job_and_starts_the_queued_one",
        [
            (connected(), []),
            (request("r1"), START_1),
            (request("r2", "incremental", "push", after="b"), ["queued s:2 [r2]"]),
            (
                plan_failed("s:1", "repository not found"),
                [
                    "job-cancelled s:1",
                    "completed s:1 failed [r1] processed=0 batches=0",
                    "started s:2 [r2] incremental",
                    "plan s:2",
                ],
            ),
            (plan_failed("s:1", "again"), ["ignored late_plan_failure"]),
        ],
    ),
    (
        "unknown_source_is_rejected",
        [(request("r1"), ["rejected [r1] unknown source"])],
    ),
    (
        "disconnected_source_is_rejected",
        [(connected(), []), (disconnected(), []), (request("r1"), ["rejected [r1] source disconnected"])],
    ),
    (
        "store_is_ensured_before_the_first_plan_of_each_connection",
        [
            (connected(), []),
            (request("r1"), START_1),
            (planned_("s:1", 0), ["completed s:1 succeeded [r1] processed=0 batches=0"]),
            (request("r2", "incremental", "push", after="b"), ["started s:3 [r2] incremental", "plan s:3"]),
            (planned_("s:3", 0), ["completed s:3 succeeded [r2] processed=0 batches=0"]),
            (request("r3", "incremental", "push", after="c"), ["started s:5 [r3] incremental", "plan s:5"]),
            (planned_("s:5", 0), ["completed s:5 succeeded [r3] processed=0 batches=0"]),
            (disconnected(), []),
            (connected(), []),
            (request("r4", "incremental", "push", after="d"), ["started s:9 [r4] incremental", "ensure s", "plan s:9"]),
        ],
    ),
]


@pytest.mark.parametrize("steps", [s for _, s in SCENARIOS], ids=[n for n, _ in SCENARIOS])
def test_rules(steps):
    _, got = run([event for event, _ in steps])
    for (event, expected), effects in zip(steps, got, strict=True):
        assert effects == expected, f"after {event.type} at {event.occurred_at:%H:%M:%S}"


# -- details ----------------------------------------------------------------------------


def effects_of(events, policy: Policy = POLICY):
    state, effects = None, []
    for offset, event in enumerate(events):
        state, new = fold(state, event, event.occurred_at, offset, policy)
        effects.extend(new)
    return state, effects


def only(effects, kind):
    found = [e for e in effects if isinstance(e, kind)]
    assert len(found) == 1, found
    return found[0]


def test_already_applied_offset_changes_nothing():
    state, _ = effects_of([connected(), request("r1")])
    assert state.last_offset == 1
    for offset in (0, 1):
        again, effects = fold(state, planned_("s:1", 0), at(5), offset, POLICY)
        assert again is state and effects == []
    _, effects = fold(state, planned_("s:1", 0), at(5), 2, POLICY)
    assert [e.status for e in effects] == ["succeeded"]


def test_completion_carries_every_count_commit_and_duration_from_event_time():
    _, effects = effects_of(
        [
            connected(),
            request("r1", t=10),
            planned_("s:1", 2, files=7, commit="abc", t=11),
            batch("s:1", 1, t=12, processed=3, deleted=1, skipped=1, documents_written=3, bytes=300),
            batch("s:1", 0, t=12.5, processed=2, documents_written=2, bytes=200),
        ]
    )
    done = only(effects, SyncCompleted)
    assert done.model_dump(exclude={"started_at", "finished_at"}) == {
        "schema_version": 1,
        "type": "sync.completed",
        "job_id": "s:1",
        "source_id": SRC,
        "request_ids": ["r1"],
        "unlisted_requests": 0,
        "mode": "full",
        "trigger": "manual",
        "status": "succeeded",
        "error": None,
        "commit": "abc",
        "listing": None,
        "files_listed": 7,
        "processed": 5,
        "failed": 0,
        "deleted": 1,
        "skipped": 1,
        "documents_written": 5,
        "bytes": 500,
        "batches": 2,
        "duration_ms": 2500,
    }
    assert (done.started_at, done.finished_at) == (at(10), at(12.5))


def test_every_file_failed_is_failed_and_some_failed_is_succeeded_with_the_error():
    def outcome(*batches):
        _, effects = effects_of([connected(), request("r1"), planned_("s:1", len(batches)), *batches])
        done = only(effects, SyncCompleted)
        return done.status, done.error

    assert outcome(batch("s:1", 0, failed=2, errors=["boom"]), batch("s:1", 1, failed=1)) == (
        "failed",
        "every file failed (3): boom",
    )
    assert outcome(batch("s:1", 0, failed=1, errors=["boom"]), batch("s:1", 1, processed=1)) == (
        "succeeded",
        "1 file(s) failed; first error: boom",
    )


def test_plan_failure_reports_the_adapter_error():
    _, effects = effects_of([connected(), request("r1"), plan_failed("s:1", "git: bad object deadbeef")])
    assert only(effects, SyncCompleted).error == "git: bad object deadbeef"


def test_plan_request_carries_the_source_config_the_coalesced_hints_and_the_synced_commit():
    _, effects = effects_of(
        [
            connected(config={"path": "/repo"}),
            request("r1"),
            request("r2", "incremental", "push", paths=["b.md", "a.md"], before="c1", after="c2"),
            request("r3", "incremental", "push", paths=["c.md", "a.md"], before="c2", after="c3"),
            planned_("s:1", 0, commit="c0"),
        ]
    )
    plans = [e for e in effects if isinstance(e, PlanRequested)]
    assert [p.job_id for p in plans] == ["s:1", "s:2"]
    second = plans[1]
    # The base is the commit the first job wrote completely, not the first request's `before`.
    assert (second.mode, second.paths, second.base, second.after) == (
        "incremental",
        ["b.md", "a.md", "c.md"],
        "c0",
        "c3",
    )
    assert second.source_config == {"path": "/repo"} and second.source_type == "git"
    assert [e.request_ids for e in effects if isinstance(e, SyncCompleted)] == [["r1"]]
    started = [e for e in effects if isinstance(e, SyncStarted)]
    assert started[1].request_ids == ["r2", "r3"] and started[1].trigger == "push"


@pytest.mark.parametrize(
    "first, second, expected",
    [
        # (mode, trigger, paths, before, after) ... -> (mode, trigger, paths, after)
        (("full", "manual", [], None, "a"), ("incremental", "push", ["x"], "a", "b"), ("full", "manual", (), "b")),
        (
            ("incremental", "push", ["x"], "a", "b"),
            ("full", "config_change", [], None, None),
            ("full", "config_change", (), "b"),
        ),
        (
            ("incremental", "push", ["x"], "a", "b"),
            ("incremental", "push", ["y", "x"], "b", "c"),
            ("incremental", "push", ("x", "y"), "c"),
        ),
        (
            ("incremental", "push", [], "a", "b"),
            ("incremental", "push", ["y"], "b", "c"),
            ("incremental", "push", (), "c"),
        ),
        (
            ("incremental", "push", ["x"], None, "b"),
            ("incremental", "push", ["y"], "b", "c"),
            ("incremental", "push", ("x", "y"), "c"),
        ),
    ],
)
def test_coalescing_rules(first, second, expected):
    def req(rid, spec):
        mode, trigger, paths, before, after = spec
        return request(rid, mode, trigger, paths=paths, before=before, after=after)

    merged = merge(job_for("s:1", req("r1", first), T0), req("r2", second))
    assert (merged.mode, merged.trigger, merged.paths, merged.after) == expected
    assert merged.request_ids == ("r1", "r2") and merged.job_id == "s:1"


def test_too_many_path_hints_leave_the_range_to_the_diff():
    many = [f"f{i}" for i in range(MAX_PATH_HINTS)]
    job = job_for("s:1", request("r1", "incremental", "push", paths=many[:-1], before="a", after="b"), T0)
    assert len(merge(job, request("r2", "incremental", "push", paths=many[-1:], after="c")).paths) == MAX_PATH_HINTS
    assert merge(job, request("r3", "incremental", "push", paths=many[-1:] + ["one more"], after="c")).paths == ()
    assert job_for("s:2", request("r4", "incremental", "push", paths=many + ["x"]), T0).paths == ()


def test_idempotency_ttl_is_configurable_per_source_type():
    policy = Policy(idempotency_ttl_seconds=300, idempotency_ttl_by_type={"git": 60})
    _, steps = run(
        [connected(), request("r1"), planned_("s:1", 0, t=1), request("r2", t=59), request("r3", t=60)], policy
    )
    assert steps[3] == ["deduplicated [r2] by s:1 succeeded"]
    assert steps[4][0] == "started s:4 [r3] full"


def test_idempotency_key_fields_are_configurable():
    policy = Policy(idempotency_key_fields=("source_id", "mode", "trigger"))
    _, steps = run(
        [
            connected(),
            request("r1", "incremental", "push", after="a"),
            request("r2", "incremental", "push", after="b"),
        ],
        policy,
    )
    assert steps[2] == ["deduplicated [r2] by s:1 running"]
    assert idempotency_key(request("r", after=None), ("source_id", "mode", "trigger", "after")) == "s|full|manual|-"
    with pytest.raises(ValidationError, match="not SyncRequested fields"):
        Policy(idempotency_key_fields=("source_id", "colour"))


def test_expired_keys_and_request_ids_are_purged():
    policy = Policy(request_memory_seconds=600)
    state, _ = effects_of([connected(), request("r1"), planned_("s:1", 0, t=1)], policy)
    assert set(state.keys) == {"s|full|manual|-"} and set(state.seen_requests) == {"r1"}
    state, _ = fold(state, SourceUpdated(source_id=SRC, occurred_at=at(600), name="renamed"), at(600), 3, policy)
    assert state.keys == {} and state.seen_requests == {}


def test_remembered_request_ids_are_bounded():
    policy = Policy(max_remembered_requests=3, idempotency_key_fields=("request_id",))
    events = [connected()] + [request(f"r{i}", t=i) for i in range(6)]
    state, _ = effects_of(events, policy)
    assert list(state.seen_requests) == ["r3", "r4", "r5"]


def test_disconnect_forgets_keys_so_a_reconnected_source_syncs_again():
    _, steps = run([connected(), request("r1"), disconnected(t=5), connected(t=6), request("r2", t=7)])
    assert steps[4][0] == "started s:4 [r2] full"


def test_source_metadata_events_update_the_state():
    state, effects = effects_of(
        [
            connected(name="old/name", config={"repository": "o/r", "installation_id": 1}),
            SourceUpdated(source_id=SRC, occurred_at=at(1), name="new/name", config={"repository": "o/r2"}),
            SourceConfigChanged(source_id=SRC, occurred_at=at(2), config_path=".hookstream.yml", commit="c1"),
        ]
    )
    # A delivery's claim about a config file changes nothing: the planner reads the file.
    assert effects == [Ignored("config_claim_superseded", "source.config_changed")]
    assert (state.name, state.config) == ("new/name", {"repository": "o/r2", "installation_id": 1})
    assert (state.config_status, state.config_path, state.config_commit) == ("unknown", None, None)
    state, _ = fold(state, connected(t=4, config={"path": "/new"}), at(4), 4, POLICY)
    assert (state.connection, state.config, state.name) == ("connected", {"path": "/new"}, "new/name")


def test_state_round_trips_through_json():
    state, _ = effects_of(
        [
            connected(),
            request("r1"),
            request("r2", "incremental", "push", paths=["a"], before="x", after="y"),
            planned_("s:1", 3, commit="abc"),
            batch("s:1", 2, processed=1, errors=["e"]),
        ]
    )
    raw = state.to_json()
    assert isinstance(raw, bytes)
    back = SourceState.from_json(raw)
    assert back == state
    assert back.active.progress.has(2) and back.active.progress.reported == 1
    assert fold(back, batch("s:1", 0), at(9), 5, POLICY) == fold(state, batch("s:1", 0), at(9), 5, POLICY)


def test_job_ids_without_offsets_come_from_a_counter():
    state = None
    ids = []
    for event in [connected(), request("r1"), planned_("s:local-0", 0), request("r2", "incremental", "push")]:
        state, effects = fold(state, event, event.occurred_at, None, POLICY)
        ids += [e.job_id for e in effects if isinstance(e, SyncStarted)]
    assert ids == ["s:local-0", "s:local-1"] and state.last_offset is None


def test_overdue_job_names_the_active_job_past_its_deadline():
    state, _ = effects_of([connected(), request("r1")])
    assert overdue_job(None, at(0)) is None
    assert overdue_job(state, at(3599)) is None
    assert overdue_job(state, at(3600)) == "s:1"


def test_an_event_of_another_source_is_a_bug():
    state, _ = effects_of([connected()])
    with pytest.raises(ValueError, match="folded into the state"):
        fold(state, SourceDisconnected(source_id="other", occurred_at=T0), T0, 1, POLICY)


def test_effects_name_their_topic_and_key():
    _, effects = effects_of([connected(), request("r1"), disconnected()])
    routes = {type(e).__name__: destination(e) for e in effects}
    assert routes == {
        "SyncStarted": Destination(SYNC_EVENTS, SRC),
        "EnsureSource": None,
        "PlanRequested": Destination(SYNC_PLANS, "s:1"),
        "SyncCancelled": Destination(SYNC_EVENTS, SRC),
        "JobCancelled": Destination(SYNC_CANCELLATIONS, "s:1"),
        "SyncCompleted": Destination(SYNC_COMPLETED, SRC),
    }
    assert destination(Ignored("late_batch", "batch.completed")) is None


# -- fan-in -----------------------------------------------------------------------------


def test_fanin_counts_each_index_once_in_any_order():
    progress = FanIn()
    for index, processed in [(2, 1), (0, 2), (2, 50), (1, 3)]:
        progress = record(progress, batch("j", index, processed=processed))
    assert not is_complete(progress)
    progress = planned(progress, 3)
    assert is_complete(progress) and totals(progress).processed == 6
    assert record(progress, batch("j", 1, processed=9)) is progress
    assert record(progress, batch("j", 3)) is progress


def test_fanin_keeps_the_lowest_index_error_and_drops_early_reports_outside_the_plan():
    progress = FanIn()
    progress = record(progress, batch("j", 4, processed=7, errors=["four"]))  # before the plan
    progress = record(progress, batch("j", 2, processed=1, errors=["two"]))
    progress = planned(progress, 4)  # index 4 is not in the plan
    assert progress.reported == 1 and not progress.has(4)
    progress = record(progress, batch("j", 3, processed=5, errors=["three"]))
    progress = record(progress, batch("j", 0, processed=2, errors=["zero"]))
    progress = record(progress, batch("j", 1, processed=3))
    assert is_complete(progress)
    assert totals(progress) == Counts(processed=11, error="zero")


def test_fanin_written_in_the_per_batch_form_still_loads():
    old = '{"batch_count": 3, "reported": {"2": {"processed": 4, "error": "e2"}, "0": {"processed": 1}}}'
    progress = FanIn.model_validate_json(old)
    assert progress.reported == 2 and progress.has(0) and progress.has(2) and not progress.has(1)
    progress = record(progress, batch("j", 1, processed=5, errors=["e1"]))
    assert is_complete(progress) and totals(progress) == Counts(processed=10, error="e1")


def test_fanin_state_does_not_grow_with_the_number_of_batches():
    small, large = planned(FanIn(), 10), planned(FanIn(), 10_000)
    for i in range(10):
        small = record(small, batch("j", i, processed=50, bytes=1_000_000))
    for i in range(10_000):
        large = record(large, batch("j", i, processed=50, bytes=1_000_000))
    assert is_complete(small) and is_complete(large) and totals(large).processed == 500_000
    # 10,000 reports: the bitmap is 2,500 hex digits; one record per batch would be ~1 MB.
    assert len(large.model_dump_json()) < len(small.model_dump_json()) + 2_600


# -- batches ----------------------------------------------------------------------------


def change(path: str, kind: str = "upsert") -> FileChange:
    return FileChange(path=path, change=kind, blob="b" + path)


@pytest.mark.parametrize(
    "paths, size, expected",
    [
        ([], 50, []),
        (["b", "a", "c"], 2, [["a", "b"], ["c"]]),
        (["d", "c", "b", "a"], 2, [["a", "b"], ["c", "d"]]),
        (["x"], 50, [["x"]]),
    ],
)
def test_plan_sorts_by_path_and_cuts_batches(paths, size, expected):
    assert [[f.path for f in b] for b in plan("j", [change(p) for p in paths], size)] == expected


def test_plan_refuses_a_path_listed_twice_and_a_useless_size():
    with pytest.raises(ValueError, match="listed more than once"):
        plan("j", [change("a"), change("a", "delete")], 10)
    with pytest.raises(ValueError, match="at least 1"):
        plan("j", [change("a")], 0)


def test_file_batches_are_indexed_and_keyed_by_job_and_index():
    batches = file_batches("s:1", SRC, "git", {"path": "/r"}, "abc", [change(p) for p in "edcba"], 2)
    assert [(b.batch_index, b.batch_count, len(b.files)) for b in batches] == [(0, 3, 2), (1, 3, 2), (2, 3, 1)]
    assert batches[0].files[0].path == "a" and batches[2].commit == "abc"
    assert batch_key("s:1", 2) == "s:1/2"
