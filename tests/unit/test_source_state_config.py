"""The fold and the config file (app/core/source_state.py): the status is what plans found, the newest
job's finding wins, plan requests carry the rules in effect, and the `sources` read model agrees."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from app.core.effects import Ignored
from app.core.policy import Policy
from app.core.read_model import source_after
from app.core.source_state import SourceState, fold
from app.events import (
    ConfigFound,
    DeadlineReached,
    PathRules,
    PlanRequested,
    SourceConfigChanged,
    SourceConnected,
    SyncPlanned,
    SyncRequested,
)
from app.events.config import NOTHING

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SRC = "github:7"
POLICY = Policy(idempotency_key_fields=("request_id",))
DOCS = PathRules(include=("docs/**",))
CONFIGURED = ConfigFound(status="configured", path=".hookstream.yml", rules=DOCS)
REMOVED = ConfigFound(status="unconfigured")
BROKEN = ConfigFound(
    status="invalid", path=".hookstream.yml", error=".hookstream.yml: line 1, column 9: bad", rules=DOCS
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def connected(t: float = 0) -> SourceConnected:
    return SourceConnected(source_id=SRC, occurred_at=at(t), source_type="git", name="r", config={"path": "/repo"})


def request(rid: str, t: float) -> SyncRequested:
    return SyncRequested(source_id=SRC, occurred_at=at(t), request_id=rid, mode="incremental", trigger="push")


def planned(job: str, config: ConfigFound | None, commit: str, t: float) -> SyncPlanned:
    return SyncPlanned(
        source_id=SRC,
        occurred_at=at(t),
        job_id=job,
        batch_count=0,
        file_count=0,
        commit=commit,
        listing="full",
        config=config,
    )


def run(events) -> tuple[SourceState, list]:
    state, effects = None, []
    for offset, event in enumerate(events):
        state, out = fold(state, event, event.occurred_at, offset, POLICY)
        effects.extend(out)
    assert state is not None
    return state, effects


def plan_requests(effects) -> list[PlanRequested]:
    return [e for e in effects if isinstance(e, PlanRequested)]


def test_a_plan_that_read_the_config_file_sets_the_status_path_commit_and_rules():
    state, _ = run([connected(), request("r1", 1), planned(f"{SRC}:1", CONFIGURED, "c1", 2)])
    assert (state.config_status, state.config_path, state.config_commit, state.config_rules, state.config_error) == (
        "configured",
        ".hookstream.yml",
        "c1",
        DOCS,
        None,
    )


def test_a_removed_config_file_makes_the_source_unconfigured():
    state, _ = run(
        [
            connected(),
            request("r1", 1),
            planned(f"{SRC}:1", CONFIGURED, "c1", 2),
            request("r2", 3),
            planned(f"{SRC}:3", REMOVED, "c2", 4),
        ]
    )
    assert (state.config_status, state.config_path, state.config_commit, state.config_rules) == (
        "unconfigured",
        None,
        "c2",
        PathRules(),
    )


def test_an_invalid_config_file_records_its_error_and_the_rules_the_plan_kept():
    state, _ = run(
        [
            connected(),
            request("r1", 1),
            planned(f"{SRC}:1", CONFIGURED, "c1", 2),
            request("r2", 3),
            planned(f"{SRC}:3", BROKEN, "c2", 4),
        ]
    )
    assert (state.config_status, state.config_error, state.config_rules) == ("invalid", BROKEN.error, DOCS)


def test_a_plan_that_did_not_read_the_config_file_leaves_it_as_it_was():
    state, _ = run(
        [
            connected(),
            request("r1", 1),
            planned(f"{SRC}:1", CONFIGURED, "c1", 2),
            request("r2", 3),
            planned(f"{SRC}:3", None, "c2", 4),
        ]
    )
    assert (state.config_status, state.config_commit, state.config_job) == ("configured", "c1", f"{SRC}:1")


def test_every_plan_request_carries_the_rules_in_effect():
    _, effects = run([connected(), request("r1", 1), planned(f"{SRC}:1", CONFIGURED, "c1", 2), request("r2", 3)])
    first, second = plan_requests(effects)
    assert (first.rules, second.rules) == (None, DOCS)


def test_a_late_plan_of_an_older_job_never_replaces_a_newer_finding():
    # Job 1 times out before its plan; job 3 plans (the file removed); job 1's plan arrives at last.
    timed_out = DeadlineReached(source_id=SRC, occurred_at=at(4000), job_id=f"{SRC}:1")
    state, effects = run(
        [
            connected(),
            request("r1", 1),
            timed_out,
            request("r2", 4001),
            planned(f"{SRC}:3", REMOVED, "c2", 4002),
            planned(f"{SRC}:1", CONFIGURED, "c1", 4003),
        ]
    )
    assert (state.config_status, state.config_job) == ("unconfigured", f"{SRC}:3")
    assert Ignored("late_plan", "sync.planned", job_id=f"{SRC}:1") in effects


def test_a_claim_that_a_config_file_changed_is_ignored_by_a_counted_rule():
    claim = SourceConfigChanged(source_id=SRC, occurred_at=at(1), config_path=".hookstream.yml", commit="c9")
    state, effects = run([connected(), claim])
    assert effects == [Ignored("config_claim_superseded", "source.config_changed")]
    assert state.config_status == "unknown"


FINDINGS = [
    CONFIGURED,
    REMOVED,
    BROKEN,
    ConfigFound(status="invalid", path=".hookstream.yaml", error="x", rules=NOTHING),
    None,
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_the_read_model_names_and_keeps_the_config_status_as_the_fold_does(order):
    """Plans of four jobs arriving in any order (late ones included): the `sources` row and the
    fold's state end with the same status, path, error, commit and rules."""
    jobs = [(f"{SRC}:{10 + i}", FINDINGS[(i + 1) % len(FINDINGS)], f"c{i}") for i in range(4)]
    events = [connected()] + [
        planned(job, found, commit, 1 + n) for n, (job, found, commit) in enumerate(jobs[i] for i in order)
    ]
    state, _ = run(events)
    row = None
    for event in events:
        row = source_after(row, event)
    assert row is not None
    assert (row.config_status or "unknown", row.config_path, row.config_error, row.config_commit) == (
        state.config_status,
        state.config_path,
        state.config_error,
        state.config_commit,
    )
    assert row.config_rules == (state.config_rules.model_dump(mode="json") if state.config_rules else None)


def test_the_largest_config_a_file_may_have_keeps_a_plan_and_the_state_far_below_their_bounds():
    from app.events.config import MAX_PATTERN_LENGTH, MAX_PATTERNS

    widest = PathRules(
        include=tuple(f"{i:03d}" + "x" * (MAX_PATTERN_LENGTH - 3) for i in range(MAX_PATTERNS)),
        exclude=tuple(f"{i:03d}" + "y" * (MAX_PATTERN_LENGTH - 3) for i in range(MAX_PATTERNS)),
    )
    found = ConfigFound(status="invalid", path="p" * 1000, error="e" * 2000, rules=widest)
    plan = planned(f"{SRC}:1", found, "c" * 40, 2)
    state, effects = run([connected(), request("r1", 1), plan, request("r2", 3)])
    assert state.config_rules == widest and plan_requests(effects)[-1].rules == widest
    assert len(plan.model_dump_json()) < 64 * 1024
    assert len(state.to_json()) < Policy().max_state_bytes // 4
