"""The six file counts are declared once (app/events/counts.py); everything that carries them derives from it."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from pydantic import ValidationError

import app
from app.core import read_model
from app.core.batch_outcome import BatchCounts
from app.core.fanin import Counts
from app.events import BatchCompleted, SyncCompleted
from app.events.counts import COUNT_FIELDS, CountValues, FileCounts, summed

T = "2026-11-01T12:00:00Z"


def test_the_wire_names_of_the_counts_stay_what_producers_and_consumers_know():
    assert COUNT_FIELDS == ("processed", "failed", "deleted", "skipped", "documents_written", "bytes")
    assert tuple(CountValues.__annotations__) == COUNT_FIELDS


@pytest.mark.parametrize("model", [BatchCompleted, SyncCompleted, Counts, BatchCounts])
def test_every_model_with_counts_is_built_on_the_one_declaration(model):
    assert issubclass(model, FileCounts)
    for name in COUNT_FIELDS:
        field, declared = model.model_fields[name], FileCounts.model_fields[name]
        assert (field.annotation, field.default, field.metadata) == (declared.annotation, 0, declared.metadata)


@pytest.mark.parametrize("row", [read_model.SyncJobRow, read_model.BatchRow])
def test_the_read_models_rows_hold_exactly_those_counts(row):
    names = [f.name for f in dataclasses.fields(row)]
    assert [n for n in names if n in COUNT_FIELDS] == list(COUNT_FIELDS)


def test_no_other_module_of_app_declares_a_count():
    declared = []
    for path in sorted(Path(app.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                if node.target.id == "documents_written":
                    declared.append(str(path.relative_to(Path(app.__file__).parent.parent)))
    # The rows of the read model mirror their tables' columns (checked against COUNT_FIELDS above).
    # CountValues, the typed dict of `counts()`, is held equal to FileCounts' fields above.
    assert sorted(declared) == [
        "app/core/read_model.py",
        "app/core/read_model.py",
        "app/events/counts.py",
        "app/events/counts.py",
    ]


def test_a_negative_count_is_refused_on_either_topic():
    with pytest.raises(ValidationError):
        BatchCompleted(source_id="s", occurred_at=T, job_id="j", batch_index=0, failed=-1)
    with pytest.raises(ValidationError):
        SyncCompleted.model_validate(
            {
                "job_id": "j",
                "source_id": "s",
                "request_ids": [],
                "mode": "full",
                "trigger": "manual",
                "status": "succeeded",
                "started_at": T,
                "finished_at": T,
                "duration_ms": 0,
                "bytes": -5,
            }
        )


def test_counts_carry_over_and_add_up_by_name():
    c = Counts(processed=2, documents_written=2, bytes=10, error="x")
    done = BatchCompleted(source_id="s", occurred_at=T, job_id="j", batch_index=0, **c.counts())
    assert (
        done.counts()
        == c.counts()
        == {**dict.fromkeys(COUNT_FIELDS, 0), "processed": 2, "documents_written": 2, "bytes": 10}
    )
    assert summed(c, done)["bytes"] == 20
