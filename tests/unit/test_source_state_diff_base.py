"""Which commit an incremental job diffs from: the one the documents are at, not the one its push named.

Pushes reach the orchestrator out of order (each delivery has its own partition
in the dedup stage, and a provider retries late). A job that diffed from its
first request's `before` would then apply commit n+1's changes on top of
documents at commit n-1 and leave rows that match no commit at all. Found by the
fault suite (tests/faults, worker kill -9 mid-orchestration).
"""

from __future__ import annotations

from app.events import PlanRequested, SyncCompleted
from tests.unit.test_source_state import batch, connected, deadline, effects_of, planned_, request


def push(rid: str, before: str, after: str):
    return request(rid, "incremental", "push", paths=[f"{after}.md"], before=before, after=after)


def plans(effects) -> list[tuple[str, str | None, str | None]]:
    return [(p.job_id, p.before, p.after) for p in effects if isinstance(p, PlanRequested)]


def test_a_push_that_overtook_its_predecessor_diffs_from_the_synced_commit():
    state, effects = effects_of([
        connected(),
        push("p2", "c1", "c2"),
        planned_("s:1", 1, commit="c2"),
        batch("s:1", 0, processed=1, documents_written=1),
        push("p4", "c3", "c4"),  # p3 (c2 -> c3) is still on its way
    ])
    assert plans(effects) == [("s:1", "c1", "c2"), ("s:4", "c2", "c4")]
    assert state.synced_commit == "c2"


def test_a_late_push_for_an_older_commit_diffs_back_to_its_own_commit():
    _, effects = effects_of([
        connected(),
        request("r1", after="c4"),
        planned_("s:1", 1, commit="c4"),
        batch("s:1", 0, processed=1, documents_written=1),
        push("p3", "c2", "c3"),
    ])
    assert plans(effects)[-1] == ("s:4", "c4", "c3")  # the documents end as ls-tree c3, the job's commit


def test_coalesced_pushes_diff_from_the_commit_the_running_job_synced():
    _, effects = effects_of([
        connected(),
        request("r1", after="c1"),
        push("p3", "c2", "c3"),  # queued while r1 runs
        push("p2", "c1", "c2"),  # coalesced: the first `before` (c2) would skip c1 -> c2
        planned_("s:1", 1, commit="c1"),
        batch("s:1", 0, processed=1, documents_written=1),
    ])
    assert plans(effects) == [("s:1", None, "c1"), ("s:2", "c1", "c2")]


def test_a_full_job_lists_everything_whatever_was_synced():
    _, effects = effects_of([
        connected(),
        request("r1", after="c1"),
        planned_("s:1", 1, commit="c1"),
        batch("s:1", 0, processed=1, documents_written=1),
        request("r2", after="c2", trigger="schedule"),
    ])
    assert plans(effects)[-1] == ("s:4", None, "c2")


def test_without_a_cleanly_synced_commit_the_request_names_the_base():
    # Never synced; a job with a failed file; a job that timed out: the documents are at no known commit.
    _, first = effects_of([connected(), push("p1", "c0", "c1")])
    assert plans(first) == [("s:1", "c0", "c1")]

    state, partly = effects_of([
        connected(),
        request("r1", after="c1"),
        planned_("s:1", 2, commit="c1"),
        batch("s:1", 0, processed=1, documents_written=1),
        batch("s:1", 1, failed=1, errors=["x: unreadable"]),
        push("p2", "c1", "c2"),
    ])
    assert [c.status for c in partly if isinstance(c, SyncCompleted)] == ["succeeded"]
    assert state.synced_commit is None and plans(partly)[-1] == ("s:5", "c1", "c2")

    state, timed_out = effects_of([
        connected(),
        request("r1", after="c1", t=0),
        planned_("s:1", 2, commit="c1"),
        deadline("s:1", t=4000),
        push("p2", "c0", "c2"),
    ])
    assert state.synced_commit is None and plans(timed_out)[-1] == ("s:4", "c0", "c2")
