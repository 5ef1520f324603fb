"""Live progress in the read model (app/core/read_model.py): plan, batches, completion, any order."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from app.core import read_model
from app.events import BatchCompleted, SyncCompleted, SyncPlanned, SyncRequested, SyncStarted

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
JOB, SRC = "git:demo:7", "git:demo"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


PLANNED = SyncPlanned(source_id=SRC, occurred_at=at(1), job_id=JOB, batch_count=3, file_count=120, commit="c1")
STARTED = SyncStarted(
    source_id=SRC,
    occurred_at=at(0),
    request_ids=["r1", "r2"],
    job_id=JOB,
    mode="full",
    trigger="manual",
    deadline=at(3600),
)


def batch(index: int, processed: int, failed: int = 0, offset: int = 0) -> read_model.BatchRow:
    done = BatchCompleted(
        source_id=SRC,
        occurred_at=at(2 + index),
        job_id=JOB,
        batch_index=index,
        processed=processed,
        failed=failed,
        documents_written=processed,
        bytes=10 * processed,
    )
    return read_model.batch_row(done, "control", 3, offset or 100 + index)


COMPLETED = SyncCompleted(
    job_id=JOB,
    source_id=SRC,
    request_ids=["r1", "r2"],
    mode="full",
    trigger="manual",
    status="succeeded",
    commit="c1",
    files_listed=120,
    processed=118,
    failed=2,
    documents_written=118,
    bytes=1180,
    batches=3,
    started_at=at(0),
    finished_at=at(9),
    duration_ms=9000,
)


def apply(row, step):
    return read_model.job_planned(row, step) if isinstance(step, SyncPlanned) else read_model.job_after(row, step)


def test_the_plan_gives_the_batches_to_expect_and_the_files_listed_until_the_completion():
    row = read_model.job_planned(read_model.job_after(None, STARTED), PLANNED)
    assert (row.status, row.batches_planned, row.files_listed, row.commit, row.planned_at) == (
        "running",
        3,
        120,
        "c1",
        at(1),
    )
    assert (row.batches, row.processed) == (0, 0)  # a running job's counts are summed from its batches when read


def test_a_plan_applied_after_the_completion_changes_only_what_it_alone_knows():
    row = read_model.job_planned(read_model.job_after(None, COMPLETED), PLANNED.model_copy(update={"file_count": 7}))
    assert (row.status, row.files_listed, row.batches_planned, row.processed) == ("succeeded", 120, 3, 118)


# Every order of the job's rows' records, each applied once: the same final row.
STEPS = [STARTED, PLANNED, COMPLETED]


@pytest.mark.parametrize("order", list(itertools.permutations(range(len(STEPS)))))
def test_any_order_of_start_plan_and_completion_gives_the_same_final_row(order):
    expected = None
    for step in STEPS:
        expected = apply(expected, step)
    row = None
    for i in order:
        row = apply(row, STEPS[i])
    assert row == expected
    assert (row.batches_planned, row.batches, row.processed) == (3, 3, 118)


def test_a_batch_row_is_its_index_first_completion_and_where_it_is():
    b = batch(2, 39, failed=1)
    assert (b.batch_id, b.job_id, b.batch_index, b.processed, b.failed, b.topic, b.partition, b.offset) == (
        f"{JOB}/2",
        JOB,
        2,
        39,
        1,
        "control",
        3,
        102,
    )


def test_records_name_their_position_job_requests_and_delivery():
    from app.events import DeliveryRef

    request = SyncRequested(
        source_id=SRC,
        occurred_at=at(0),
        request_id="d-9",
        mode="incremental",
        trigger="push",
        delivery=DeliveryRef(key="github/gh/d-9", partition=2, offset=17),
    )
    row = read_model.record_row(request, "p.hookstream.sync.control", 5, 40)
    assert (row.record_id, row.type, row.job_id, row.request_ids, row.delivery_key) == (
        "p.hookstream.sync.control/5/40",
        "sync.requested",
        None,
        ("d-9",),
        "github/gh/d-9",
    )
    done = read_model.record_row(COMPLETED, "p.hookstream.sync.completed", 1, 8)
    assert (done.job_id, done.request_ids, done.occurred_at) == (JOB, ("r1", "r2"), at(9))
    with pytest.raises(TypeError):
        read_model.record_row(batch(0, 1), "t", 0, 0)
