"""What a plan request says the documents are at (`base`), and how requests are answered, for convergence.

The fold never decides which commit a job writes: the planner compares `base`
(the commit the documents were last written to completely) with the head of the
tracked branch. So `base` must be exactly that commit, or None whenever the
documents may be at no commit at all; a request's own `before` is never a base
(pushes arrive out of order; the first push to a new source carries a real
`before` the documents were never at).
"""

from __future__ import annotations

from app.core.source_state import fold
from app.events import PlanRequested, SourceUpdated, SyncCompleted, SyncIgnored
from tests.unit.test_source_state import (
    POLICY,
    at,
    batch,
    connected,
    deadline,
    disconnected,
    effects_of,
    plan_failed,
    planned_,
    request,
    run,
)


def push(rid: str, before: str, after: str, branch: str | None = "main", **kw):
    return request(rid, "incremental", "push", paths=[f"{after}.md"], before=before, after=after, branch=branch, **kw)


def bases(effects) -> list[tuple[str, str | None, str | None]]:
    return [(p.job_id, p.base, p.after) for p in effects if isinstance(p, PlanRequested)]


def succeeded(job: str, commit: str):
    return [planned_(job, 1, commit=commit), batch(job, 0, processed=1, documents_written=1)]


def test_the_first_push_to_a_new_source_lists_everything_whatever_before_it_names():
    _, effects = effects_of([connected(), push("p1", "c0", "c1")])
    assert bases(effects) == [("s:1", None, "c1")]


def test_a_push_after_a_clean_sync_plans_from_the_synced_commit():
    state, effects = effects_of([connected(), request("r1"), *succeeded("s:1", "c2"), push("p4", "c3", "c4")])
    assert state.synced_commit == "c2"
    assert bases(effects)[-1] == ("s:4", "c2", "c4")  # c2 -> c3 was never delivered: the diff from c2 covers it


def test_a_late_push_plans_from_the_synced_commit_and_names_its_commit_only_as_a_lower_bound():
    _, effects = effects_of([connected(), request("r1"), *succeeded("s:1", "c4"), push("p3", "c2", "c3")])
    assert bases(effects)[-1] == ("s:4", "c4", "c3")  # the planner targets the head (c4), never c3


def test_the_completion_names_the_commit_the_planner_listed_not_the_requests_after():
    _, effects = effects_of([connected(), push("p1", "c0", "c1"), planned_("s:1", 0, commit="c9")])
    assert [(c.commit, c.listing) for c in effects if isinstance(c, SyncCompleted)] == [("c9", None)]
    _, failed = effects_of([connected(), push("p1", "c0", "c1"), plan_failed("s:1", "gone")])
    assert [c.commit for c in failed if isinstance(c, SyncCompleted)] == [None]


def test_after_a_job_that_did_not_complete_cleanly_the_next_one_lists_everything():
    cases = {
        "a failed file": [
            planned_("s:1", 2, commit="c1"),
            batch("s:1", 0, processed=1),
            batch("s:1", 1, failed=1, errors=["x"]),
        ],
        "a plan failure": [plan_failed("s:1", "repository gone")],
        "every file failed": [planned_("s:1", 1, commit="c1"), batch("s:1", 0, failed=1, errors=["x"])],
        "a timeout": [planned_("s:1", 2, commit="c1"), deadline("s:1", t=4000)],
    }
    for why, ending in cases.items():
        state, effects = effects_of([connected(), request("r0"), *ending, push("p2", "c1", "c2", t=5000)])
        assert state.active is not None and bases(effects)[-1][1] is None, why
    # A cancelled job: the source reconnects with the same config; the documents are partly written.
    state, effects = effects_of(
        [
            connected(),
            request("r0"),
            planned_("s:1", 2, commit="c1"),
            batch("s:1", 0, processed=1),
            disconnected(),
            connected(),
            push("p2", "c1", "c2"),
        ]
    )
    assert bases(effects)[-1] == ("s:6", None, "c2")


def test_a_clean_sync_is_kept_across_a_reconnection_with_the_same_config():
    _, effects = effects_of(
        [connected(), request("r1"), *succeeded("s:1", "c1"), disconnected(), connected(), push("p2", "c1", "c2")]
    )
    assert bases(effects)[-1] == ("s:6", "c1", "c2")


def test_connecting_again_with_another_config_requests_a_full_sync_from_nothing():
    state, steps = run(
        [
            connected(),
            request("r1"),
            *succeeded("s:1", "c1"),
            connected(config={"path": "/repo", "branch": "stable"}),
            push("p5", "c1", "c2", branch="stable"),
        ]
    )
    assert steps[4] == ["started s:4 [config-change:4] full", "ensure s", "plan s:4"]
    assert steps[5] == ["queued s:5 [p5]"]
    _, effects = effects_of(
        [connected(), request("r1"), *succeeded("s:1", "c1"), connected(config={"path": "/repo", "branch": "stable"})]
    )
    assert bases(effects)[-1] == ("s:4", None, None)


def test_a_change_of_the_tracked_branch_by_an_update_requests_a_full_sync():
    moved = SourceUpdated(source_id="s", occurred_at=at(1), config={"default_branch": "trunk"})
    _, steps = run(
        [
            connected(config={"repository": "o/r", "default_branch": "main"}),
            request("r1"),
            *succeeded("s:1", "c1"),
            moved,
        ]
    )
    assert steps[4] == ["started s:4 [config-change:4] full", "plan s:4"]
    renamed = SourceUpdated(
        source_id="s", occurred_at=at(1), name="o/r2", config={"repository": "o/r2", "default_branch": "main"}
    )
    _, steps = run(
        [
            connected(config={"repository": "o/r", "default_branch": "main"}),
            request("r1"),
            *succeeded("s:1", "c1"),
            renamed,
        ]
    )
    assert steps[4] == []


def test_a_push_to_a_branch_the_source_does_not_track_is_ignored_by_rule_and_answered():
    state, effects = effects_of(
        [connected(config={"path": "/repo", "branch": "stable"}), push("p1", "c0", "c1", branch="main")]
    )
    answers = [e for e in effects if isinstance(e, SyncIgnored)]
    assert [(a.request_ids, a.rule) for a in answers] == [(["p1"], "push.untracked_branch")]
    assert [e.reason for e in effects if getattr(e, "reason", None) == "untracked_branch"] == ["untracked_branch"]
    assert state.active is None and bases(effects) == []
    # The same push to the tracked branch runs; a source that names no branch takes every push.
    _, tracked = effects_of(
        [connected(config={"path": "/repo", "branch": "stable"}), push("p1", "c0", "c1", branch="stable")]
    )
    assert bases(tracked) == [("s:1", None, "c1")]
    _, any_branch = effects_of([connected(), push("p1", "c0", "c1", branch="feature")])
    assert bases(any_branch) == [("s:1", None, "c1")]
    # GitHub sources track their repository's default branch unless a branch is configured.
    _, github = effects_of(
        [connected(config={"repository": "o/r", "default_branch": "main"}), push("p1", "c0", "c1", branch="dev")]
    )
    assert bases(github) == []


def test_force_bypasses_a_live_idempotency_key_and_a_plain_repeat_does_not():
    _, steps = run(
        [connected(), request("r1"), *succeeded("s:1", "c1"), request("r2", t=10), request("r3", t=20, force=True)]
    )
    assert steps[4] == ["deduplicated [r2] by s:1 succeeded"]
    assert steps[5] == ["started s:5 [r3] full", "plan s:5"]


def test_a_redelivered_ignored_push_is_ignored_as_a_duplicate():
    state, _ = effects_of(
        [connected(config={"path": "/repo", "branch": "stable"}), push("p1", "c0", "c1", branch="main")]
    )
    again, effects = fold(state, push("p1", "c0", "c1", branch="main"), at(1), 9, POLICY)
    assert [getattr(e, "reason", None) for e in effects] == ["duplicate_request"]
