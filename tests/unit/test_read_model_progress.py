"""Live progress in the read model (app/core/read_model.py): plan, batches, completion, any order."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest

from app.core import read_model
from app.events import BatchCompleted, SyncCompleted, SyncPlanned, SyncRequested, SyncStarted

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
JOB, SRC = "git:demo:7", "git:demo"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


PLANNED = SyncPlanned(source_id=SRC, occurred_at=at(1), job_id=JOB, batch_count=3, file_count=120, commit="c1")
STARTED = SyncStarted(source_id=SRC, occurred_at=at(0), request_ids=["r1", "r2"], job_id=JOB, mode="full",
                      trigger="manual", deadline=at(3600))


def batch(index: int, processed: int, failed: int = 0, offset: int = 0) -> read_model.BatchRow:
    done = BatchCompleted(source_id=SRC, occurred_at=at(2 + index), job_id=JOB, batch_index=index,
                          processed=processed, failed=failed, documents_written=processed, bytes=10 * processed)
    return read_model.batch_row(done, "control", 3, offset or 100 + index)


COMPLETED = SyncCompleted(job_id=JOB, source_id=SRC, request_ids=["r1", "r2"], mode="full", trigger="manual",
                          status="succeeded", commit="c1", files_listed=120, processed=118, failed=2,
                          documents_written=118, bytes=1180, batches=3, started_at=at(0), finished_at=at(9),
                          duration_ms=9000)


def apply(row, step):
    if isinstance(step, read_model.BatchRow):
        return read_model.job_progressed(row, step)
    if isinstance(step, SyncPlanned):
        return read_model.job_planned(row, step)
    return read_model.job_after(row, step)


def test_counts_move_with_each_batch_while_the_job_runs():
    row = read_model.job_after(None, STARTED)
    row = read_model.job_planned(row, PLANNED)
    assert (row.status, row.batches_planned, row.files_listed, row.batches, row.processed) == ("running", 3, 120, 0, 0)
    row = read_model.job_progressed(row, batch(0, 40))
    row = read_model.job_progressed(row, batch(1, 39, failed=1))
    assert (row.batches, row.processed, row.failed, row.documents_written, row.bytes) == (2, 79, 1, 79, 790)
    assert not row.is_final


def test_the_completion_replaces_the_counts_and_later_batches_change_nothing():
    row = read_model.job_progressed(read_model.job_after(None, COMPLETED), batch(2, 99))
    assert (row.processed, row.batches, row.status) == (118, 3, "succeeded")


# Every order of the records of one job, each applied once: the same final row.
STEPS = [STARTED, PLANNED, batch(0, 40), batch(1, 39, failed=1), batch(2, 39, failed=1), COMPLETED]


@pytest.mark.parametrize("order", list(itertools.permutations(range(len(STEPS))))[::37])
def test_any_order_of_plan_batches_and_completion_gives_the_same_final_row(order):
    expected = None
    for step in STEPS:
        expected = apply(expected, step)
    row = None
    for i in order:
        row = apply(row, STEPS[i])
    assert row == expected
    assert (row.batches_planned, row.batches, row.processed) == (3, 3, 118)


def test_records_name_their_position_job_requests_and_delivery():
    from app.events import DeliveryRef

    request = SyncRequested(source_id=SRC, occurred_at=at(0), request_id="d-9", mode="incremental", trigger="push",
                            delivery=DeliveryRef(key="github/gh/d-9", partition=2, offset=17))
    row = read_model.record_row(request, "p.hookstream.sync.control", 5, 40)
    assert (row.record_id, row.type, row.job_id, row.request_ids, row.delivery_key) == (
        "p.hookstream.sync.control/5/40", "sync.requested", None, ("d-9",), "github/gh/d-9")
    done = read_model.record_row(COMPLETED, "p.hookstream.sync.completed", 1, 8)
    assert (done.job_id, done.request_ids, done.occurred_at) == (JOB, ("r1", "r2"), at(9))
    with pytest.raises(TypeError):
        read_model.record_row(batch(0, 1), "t", 0, 0)
