"""The fold's clock and the state bound (app/core/admission.py): a sender steers neither.

Found by attacking the worker: one `sync.requested` dated 9000-01-01 held its
source's idempotency key until the year 9000 and expired every other key at
once; a date near 9999-12-31 overflowed the fold; two producer events of 900 KB
each made a state record the broker refused, and the worker exited.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.core.admission import broker_datetime, clock, fold_record
from app.core.coalesce import MAX_LISTED_REQUESTS
from app.core.effects import Refused
from app.core.policy import Policy
from app.events import SourceConnected, SourceUpdated, SyncDeduplicated, SyncRejected, SyncRequested, SyncStarted

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
POLICY = Policy()


def connected(**kw) -> SourceConnected:
    return SourceConnected(source_id="s", occurred_at=NOW, source_type="git", config={"path": "/r"}, **kw)


def request(rid: str, at: datetime = NOW, **kw) -> SyncRequested:
    return SyncRequested(source_id="s", occurred_at=at, request_id=rid, mode="full", trigger="manual", **kw)


def run(records, times=None, policy: Policy = POLICY):
    state, out = None, []
    for offset, record in enumerate(records):
        at = times[offset] if times else NOW + timedelta(seconds=offset)
        state, effects = fold_record(state, record, at, offset, policy)
        out.append(effects)
    return state, out


@pytest.mark.parametrize(
    "ms, expected",
    [
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (1_764_590_400_000, datetime(2025, 12, 1, 12, tzinfo=UTC)),
        (None, None),
        (-1, None),
        (2**63 - 1, None),
        (
            int((datetime(9000, 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000),
            None,
        ),
    ],
)
def test_broker_timestamps_outside_what_a_fold_can_add_to_are_none(ms, expected):
    assert broker_datetime(ms) == expected


def test_the_clock_is_the_broker_time_and_a_future_date_beyond_the_skew_is_refused():
    assert clock(NOW - timedelta(days=30), NOW, POLICY) == (NOW, None)  # a delivery replayed a month later
    assert clock(NOW + timedelta(minutes=59), NOW, POLICY) == (NOW, None)
    at, why = clock(datetime(9000, 1, 1, tzinfo=UTC), NOW, POLICY)
    assert at == NOW and "after the broker's time" in why
    assert clock(NOW + timedelta(days=3), None, POLICY) == (NOW + timedelta(days=3), None)  # no broker: a test, a tool


def test_a_request_from_the_year_9000_holds_no_key_and_expires_none():
    _, steps = run(
        [
            connected(),
            request("r1"),
            request("far", at=datetime(9000, 1, 1, tzinfo=UTC)),
            request("r2", at=NOW + timedelta(seconds=3)),
        ]
    )
    assert [type(e) for e in steps[2]] == [Refused, SyncRejected]
    assert "check the sender's clock" in steps[2][1].reason
    # The key of r1 is still live (not expired by a clock moved to the year 9000): r2 is deduplicated.
    assert [type(e) for e in steps[3]] == [SyncDeduplicated]


def test_dates_at_the_end_of_time_never_overflow():
    near_end = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    _, steps = run([connected(), request("r1", at=near_end)], times=[NOW, NOW])
    assert [type(e) for e in steps[1]] == [Refused, SyncRejected]
    # A producer that set a broker timestamp no datetime holds: refused, whatever the record says.
    state, _ = run([connected()])
    for at in (near_end, NOW):
        _, effects = fold_record(state, request("r2", at=at), broker_datetime(2**62), 1, POLICY, missing_time=True)
        assert [type(e) for e in effects] == [Refused, SyncRejected] and "no broker timestamp" in effects[0].reason
    # Without a broker at all (a test, a tool), a date the fold cannot count from is refused too.
    _, effects = fold_record(state, request("r3", at=near_end), None, 1, POLICY)
    assert [type(e) for e in effects] == [Refused, SyncRejected]


def test_a_refused_record_is_refused_again_when_replayed_at_its_offset_and_changes_nothing_else():
    state, _ = run([connected(), request("far", at=NOW + timedelta(days=2))])
    assert state.last_offset == 1 and state.active is None
    again, effects = fold_record(state, request("far", at=NOW + timedelta(days=2)), NOW, 1, POLICY)
    assert again is state and effects == []


def test_two_large_producer_events_cannot_make_a_state_over_the_bound():
    policy = Policy(max_state_bytes=64 * 1024)
    big = "n" * 40_000
    # app/events' field bounds refuse a 40 KB name or config at every decoder (README, "Bounds for
    # producers"); built past them, the records still cannot make a state over the fold's own bound.
    state, steps = run(
        [
            SourceConnected.model_construct(
                source_id="s", occurred_at=NOW, source_type="git", config={"path": "/r"}, name=big, delivery=None
            ),
            SourceUpdated.model_construct(
                source_id="s", occurred_at=NOW, config={"x": "c" * 40_000}, name=None, delivery=None
            ),
        ],
        policy=policy,
    )
    assert steps[0] == [] and [type(e) for e in steps[1]] == [Refused]
    assert "over the bound of 65536" in steps[1][0].reason
    assert len(state.to_json()) <= 64 * 1024 and "x" not in state.config


def test_a_state_that_grows_over_many_events_stays_bounded_and_every_request_is_answered():
    """3,000 distinct requests inside one TTL: keys, remembered ids and the queued job's ids are bounded."""
    policy = Policy(max_state_bytes=512 * 1024)
    records = [connected(), request("r0")] + [
        SyncRequested(
            source_id="s",
            occurred_at=NOW,
            request_id=f"push-{i:05d}-{'x' * 200}",
            mode="incremental",
            trigger="push",
            after=f"{i:040x}",
            paths=[f"dir/{i}.md"],
        )
        for i in range(3_000)
    ]
    state, steps = run(records, policy=policy)
    assert len(state.to_json()) <= 512 * 1024
    assert len(state.keys) <= policy.max_held_keys and len(state.seen_requests) <= policy.max_remembered_requests
    assert len(state.pending.request_ids) == MAX_LISTED_REQUESTS
    assert state.pending.unlisted_requests == 3_000 - MAX_LISTED_REQUESTS
    answered = [e for effects in steps[2:] for e in effects if not isinstance(e, Refused)]
    assert len(answered) == 3_000 and not any(isinstance(e, SyncStarted) for e in answered[1:])


def test_stage_records_are_folded_even_when_the_state_is_at_its_bound():
    """A job must be able to finish: plans and batch completions are never refused by the bound."""
    from app.events import SyncPlanned

    policy = Policy(max_state_bytes=4096)
    state, steps = run([connected(), request("r1")], policy=policy)
    planned = SyncPlanned(source_id="s", occurred_at=NOW, job_id="s:1", batch_count=0, file_count=0)
    state, effects = fold_record(state, planned, NOW, 2, policy)
    assert [e.type for e in effects] == ["sync.completed"]
