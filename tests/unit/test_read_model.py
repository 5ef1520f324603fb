"""The read model's row decisions (app/core/read_model.py): no I/O, tables and interleavings."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from app.core import read_model
from app.core.read_model import SourceRow, SyncJobRow, job_after, request_answers, source_after
from app.events import (
    BatchCompleted,
    ConfigFound,
    PathRules,
    SourceConfigChanged,
    SourceConnected,
    SourceDisconnected,
    SourceUpdated,
    SyncCancelled,
    SyncCoalesced,
    SyncCompleted,
    SyncDeduplicated,
    SyncPlanned,
    SyncQueued,
    SyncRejected,
    SyncStarted,
)
from app.events.config import NOTHING

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SRC = "git:demo"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- sources -----------------------------------------------------------------------------------


def connected(t: float = 0, name: str | None = "demo", **config) -> SourceConnected:
    return SourceConnected(
        source_id=SRC, occurred_at=at(t), source_type="git", name=name, config=config or {"path": "/repo"}
    )


CONFIGURED_AT = ConfigFound(status="configured", path=".hookstream.yml", rules=PathRules(include=("docs/**",)))


def planned_with(config: ConfigFound, commit: str, job: str = "git:demo:7", t: float = 9) -> SyncPlanned:
    return SyncPlanned(
        source_id=SRC,
        occurred_at=at(t),
        job_id=job,
        batch_count=1,
        file_count=3,
        commit=commit,
        listing="full",
        config=config,
    )


def fold_sources(events) -> SourceRow | None:
    row = None
    for event in events:
        row = source_after(row, event)
    return row


def test_a_connection_makes_a_connected_row_stamped_with_the_event_time():
    assert source_after(None, connected(5)) == SourceRow(
        source_id=SRC,
        source_type="git",
        name="demo",
        status="connected",
        config={"path": "/repo"},
        config_status=None,
        config_path=None,
        config_commit=None,
        status_reason=None,
        updated_at=at(5),
    )


@pytest.mark.parametrize(
    "event, expected",
    [
        (
            SourceDisconnected(source_id=SRC, occurred_at=at(9), reason="uninstalled"),
            {"status": "disconnected", "status_reason": "uninstalled"},
        ),
        (
            planned_with(CONFIGURED_AT, "c1"),
            {
                "config_status": "configured",
                "config_path": ".hookstream.yml",
                "config_commit": "c1",
                "config_rules": {"include": ["docs/**"], "exclude": []},
                "config_job_id": "git:demo:7",
            },
        ),
        (
            planned_with(ConfigFound(status="unconfigured"), "c2"),
            {
                "config_status": "unconfigured",
                "config_commit": "c2",
                "config_rules": {"include": [], "exclude": []},
                "config_job_id": "git:demo:7",
            },
        ),
        (
            planned_with(
                ConfigFound(
                    status="invalid", path=".hookstream.yml", error=".hookstream.yml: line 1: bad", rules=NOTHING
                ),
                "c3",
            ),
            {
                "config_status": "invalid",
                "config_path": ".hookstream.yml",
                "config_commit": "c3",
                "config_error": ".hookstream.yml: line 1: bad",
                "config_rules": {"include": [], "exclude": ["**"]},
                "config_job_id": "git:demo:7",
            },
        ),
        (
            SourceUpdated(source_id=SRC, occurred_at=at(9), name="renamed", config={"branch": "dev"}),
            {"name": "renamed", "config": {"path": "/repo", "branch": "dev"}},
        ),
        (SourceUpdated(source_id=SRC, occurred_at=at(9), config={"path": "/moved"}), {"config": {"path": "/moved"}}),
    ],
)
def test_each_source_event_changes_its_columns_and_the_update_time(event, expected):
    before = source_after(None, connected(0))
    after = source_after(before, event)
    changed = {k: getattr(after, k) for k in read_model.SOURCE_COLUMNS if getattr(after, k) != getattr(before, k)}
    assert changed == {**expected, "updated_at": at(9)}


def test_a_reconnection_replaces_type_and_config_but_keeps_the_name_and_config_status():
    row = fold_sources(
        [
            connected(0),
            planned_with(CONFIGURED_AT, "c1", t=1),
            SourceDisconnected(source_id=SRC, occurred_at=at(2), reason="gone"),
            connected(3, name=None, path="/elsewhere"),
        ]
    )
    assert (row.status, row.status_reason, row.name, row.config) == ("connected", None, "demo", {"path": "/elsewhere"})
    assert (row.config_status, row.config_path, row.updated_at) == ("configured", ".hookstream.yml", at(3))


@pytest.mark.parametrize(
    "event",
    [
        SourceDisconnected(source_id=SRC, occurred_at=at(1)),
        planned_with(CONFIGURED_AT, "c1", t=1),
        SourceUpdated(source_id=SRC, occurred_at=at(1), name="x"),
    ],
)
def test_events_of_a_source_that_never_connected_make_no_row(event):
    assert source_after(None, event) is None


def test_a_plan_that_did_not_read_the_config_file_and_a_superseded_claim_are_not_source_events():
    assert not read_model.is_source_event(
        SyncPlanned(source_id=SRC, occurred_at=at(1), job_id="git:demo:7", batch_count=0, file_count=0, commit="c1")
    )
    assert not read_model.is_source_event(SourceConfigChanged(source_id=SRC, occurred_at=at(1), config_path="x"))
    assert read_model.is_source_event(planned_with(CONFIGURED_AT, "c1"))


def test_a_late_plan_of_an_older_job_never_replaces_a_newer_finding():
    removed = ConfigFound(status="unconfigured")
    row = fold_sources(
        [
            connected(0),
            planned_with(removed, "c2", job="git:demo:9", t=2),
            planned_with(CONFIGURED_AT, "c1", job="git:demo:7", t=3),
        ]
    )
    assert (row.config_status, row.config_commit, row.config_job_id, row.updated_at) == (
        "unconfigured",
        "c2",
        "git:demo:9",
        at(2),
    )


def test_only_source_events_are_source_events():
    batch = BatchCompleted(source_id=SRC, occurred_at=at(0), job_id="j", batch_index=0)
    with pytest.raises(TypeError):
        source_after(source_after(None, connected()), batch)


# --- sync jobs ---------------------------------------------------------------------------------

JOB = f"{SRC}:7"


def queued_then_coalesced_then_completed():
    """A job queued behind another, two more requests coalesced into it (one made it full), run and completed."""
    lifecycle = [
        SyncQueued(source_id=SRC, occurred_at=at(1), request_ids=["r1"], job_id=JOB, mode="incremental"),
        SyncCoalesced(source_id=SRC, occurred_at=at(2), request_ids=["r2"], job_id=JOB, mode="incremental"),
        SyncCoalesced(source_id=SRC, occurred_at=at(3), request_ids=["r3"], job_id=JOB, mode="full"),
        SyncStarted(
            source_id=SRC,
            occurred_at=at(10),
            request_ids=["r1", "r2", "r3"],
            job_id=JOB,
            mode="full",
            trigger="manual",
            deadline=at(3610),
        ),
    ]
    completed = SyncCompleted(
        job_id=JOB,
        source_id=SRC,
        request_ids=["r1", "r2", "r3"],
        mode="full",
        trigger="manual",
        status="succeeded",
        commit="abc",
        files_listed=12,
        processed=10,
        failed=0,
        deleted=1,
        skipped=1,
        documents_written=10,
        bytes=4096,
        batches=3,
        started_at=at(10),
        finished_at=at(15),
        duration_ms=5000,
    )
    return lifecycle, completed


def cancelled_while_running():
    lifecycle = [
        SyncStarted(
            source_id=SRC,
            occurred_at=at(1),
            request_ids=["r1"],
            job_id=JOB,
            mode="incremental",
            trigger="push",
            deadline=at(3601),
        ),
        SyncCancelled(source_id=SRC, occurred_at=at(4), request_ids=["r1"], job_id=JOB, reason="uninstalled"),
    ]
    completed = SyncCompleted(
        job_id=JOB,
        source_id=SRC,
        request_ids=["r1"],
        mode="incremental",
        trigger="push",
        status="cancelled",
        error="cancelled: uninstalled",
        processed=3,
        batches=1,
        started_at=at(1),
        finished_at=at(4),
        duration_ms=3000,
    )
    return lifecycle, completed


def fold_jobs(events) -> SyncJobRow:
    row = None
    for event in events:
        row = job_after(row, event)
    return row


def interleavings(lifecycle, completed):
    """Every place the completion (another topic) can land among the lifecycle events (one topic, one order)."""
    for i in range(len(lifecycle) + 1):
        yield [*lifecycle[:i], completed, *lifecycle[i:]]


def test_a_queued_coalesced_job_projects_every_field():
    lifecycle, completed = queued_then_coalesced_then_completed()
    row = fold_jobs([*lifecycle, completed])
    assert row == SyncJobRow(
        job_id=JOB,
        source_id=SRC,
        mode="full",
        trigger="manual",
        request_ids=("r1", "r2", "r3"),
        status="succeeded",
        error=None,
        commit="abc",
        queued_at=at(1),
        started_at=at(10),
        deadline=at(3610),
        cancelled_at=None,
        cancel_reason=None,
        finished_at=at(15),
        duration_ms=5000,
        files_listed=12,
        processed=10,
        failed=0,
        deleted=1,
        skipped=1,
        documents_written=10,
        bytes=4096,
        batches=3,
    )


def test_before_its_completion_a_job_is_queued_then_running():
    lifecycle, _ = queued_then_coalesced_then_completed()
    assert fold_jobs(lifecycle[:1]).status == "queued"
    assert fold_jobs(lifecycle).status == "running"
    assert fold_jobs(lifecycle).finished_at is None


@pytest.mark.parametrize("scenario", [queued_then_coalesced_then_completed, cancelled_while_running])
def test_the_row_does_not_depend_on_where_the_completion_lands_nor_on_repeats(scenario):
    lifecycle, completed = scenario()
    expected = fold_jobs([*lifecycle, completed])
    for order in interleavings(lifecycle, completed):
        assert fold_jobs(order) == expected
        # At-least-once: any record consumed again (at another offset, past the fence) changes nothing.
        assert fold_jobs([e for e in order for _ in (0, 1)]) == expected
        assert fold_jobs([*order, *order]) == expected


def test_a_started_job_row_does_not_depend_on_the_order_of_any_of_its_events():
    lifecycle, completed = queued_then_coalesced_then_completed()
    events = [*lifecycle, completed]
    expected = fold_jobs(events)
    assert all(fold_jobs(order) == expected for order in itertools.permutations(events))


def test_a_late_sync_started_does_not_regress_a_completed_job():
    lifecycle, completed = queued_then_coalesced_then_completed()
    row = fold_jobs([*lifecycle, completed])
    assert job_after(row, lifecycle[-1]) == row
    assert job_after(row, lifecycle[0]).status == "succeeded"


def test_a_job_cancelled_while_running_keeps_its_partial_counts_and_the_reason():
    lifecycle, completed = cancelled_while_running()
    row = fold_jobs([*lifecycle, completed])
    assert (row.status, row.processed, row.error, row.cancel_reason) == (
        "cancelled",
        3,
        "cancelled: uninstalled",
        "uninstalled",
    )
    assert (row.cancelled_at, row.finished_at, row.duration_ms) == (at(4), at(4), 3000)


def test_a_job_cancelled_while_queued_is_final_without_a_completion():
    row = fold_jobs(
        [
            SyncQueued(source_id=SRC, occurred_at=at(1), request_ids=["r1"], job_id=JOB, mode="incremental"),
            SyncCancelled(source_id=SRC, occurred_at=at(2), request_ids=["r1"], job_id=JOB, reason="disconnected"),
        ]
    )
    assert (row.status, row.is_final, row.trigger, row.started_at, row.finished_at) == (
        "cancelled",
        True,
        None,
        None,
        at(2),
    )


def test_a_completion_outranks_a_cancellation_whatever_the_order():
    # A timeout and a disconnect racing: the job's one completion says how it ended.
    cancel = SyncCancelled(source_id=SRC, occurred_at=at(5), request_ids=["r1"], job_id=JOB, reason="disconnected")
    timed_out = SyncCompleted(
        job_id=JOB,
        source_id=SRC,
        request_ids=["r1"],
        mode="full",
        trigger="manual",
        status="timed_out",
        started_at=at(0),
        finished_at=at(5),
        duration_ms=5000,
    )
    assert fold_jobs([cancel, timed_out]) == fold_jobs([timed_out, cancel])
    assert fold_jobs([cancel, timed_out]).status == "timed_out"


def test_an_event_of_another_job_is_refused():
    lifecycle, _ = queued_then_coalesced_then_completed()
    row = fold_jobs(lifecycle[:1])
    other = SyncStarted(
        source_id=SRC,
        occurred_at=at(1),
        request_ids=["x"],
        job_id="other",
        mode="full",
        trigger="manual",
        deadline=at(9),
    )
    with pytest.raises(ValueError):
        job_after(row, other)


# --- request answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event, answer, job_id, reason",
    [
        (
            SyncStarted(
                source_id=SRC,
                occurred_at=at(1),
                request_ids=["a"],
                job_id=JOB,
                mode="full",
                trigger="manual",
                deadline=at(9),
            ),
            "started",
            JOB,
            None,
        ),
        (SyncQueued(source_id=SRC, occurred_at=at(1), request_ids=["a"], job_id=JOB, mode="full"), "queued", JOB, None),
        (
            SyncCoalesced(source_id=SRC, occurred_at=at(1), request_ids=["a"], job_id=JOB, mode="full"),
            "coalesced",
            JOB,
            None,
        ),
        (
            SyncDeduplicated(
                source_id=SRC,
                occurred_at=at(1),
                request_ids=["a"],
                job_id=JOB,
                idempotency_key="k",
                held_by_job_id=JOB,
                held_status="running",
            ),
            "deduplicated",
            JOB,
            f"idempotency key k is held by job {JOB} (running)",
        ),
        (
            SyncRejected(source_id=SRC, occurred_at=at(1), request_ids=["a"], reason="unknown source"),
            "rejected",
            None,
            "unknown source",
        ),
    ],
)
def test_each_lifecycle_event_answers_the_requests_it_names(event, answer, job_id, reason):
    [got] = request_answers(event)
    assert (got.request_id, got.source_id, got.answer, got.job_id, got.reason, got.answered_at) == (
        "a",
        SRC,
        answer,
        job_id,
        reason,
        at(1),
    )


def test_nul_characters_become_replacement_characters_in_columns():
    # The model refuses a NUL in a name now (records written before that rule still decode).
    row = source_after(
        None,
        SourceConnected.model_construct(
            source_id="s",
            occurred_at=at(0),
            source_type="git",
            name="a\x00b",
            config={"pa\x00th": ["x\x00"]},
            delivery=None,
        ),
    )
    values = read_model.source_to_columns(row)
    assert (values["name"], values["config"]) == ("a\ufffdb", {"pa\ufffdth": ["x\ufffd"]})
