"""What `hookstream projections rebuild` decides: schema names, what is left to read, lag, differences. Table-driven."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.cli.main import build_parser
from app.cli.projections import PROJECTION_NAMES, PROJECTIONS_TABLE
from app.core.rebuild import (
    RowDiff,
    TableDiff,
    deleted_before_start,
    fences_past_the_end,
    format_progress,
    format_table_diff,
    live_behind,
    reads_to_catch_up,
    row_diff,
    schema_names,
)
from app.stream.projection_registry import NAMES, projections

E0, E1, C0 = ("events", 0), ("events", 1), ("completed", 0)


def test_schema_names_carry_the_live_schema_and_the_start_time():
    at = datetime(2026, 11, 1, 3, 15, 0, tzinfo=UTC)
    assert schema_names("hookstream", at) == ("hookstream_rebuild_20261101031500", "hookstream_old_20261101031500")
    with pytest.raises(ValueError, match="longer than PostgreSQL's 63"):
        schema_names("x" * 41, at)


@pytest.mark.parametrize(
    "name, positions, fences, ends, reads",
    [
        (
            "nothing to read when the rebuild is past every live fence",
            {E0: 10, E1: 5},
            {E0: 9, E1: 2},
            {E0: 10, E1: 5},
            {},
        ),
        ("up to and including each live fence", {E0: 10, E1: 5}, {E0: 14, E1: 4}, {E0: 20, E1: 5}, {E0: (10, 15)}),
        ("a partition the rebuild never read starts at 0", {}, {C0: 2}, {C0: 3}, {C0: (0, 3)}),
        ("a fence past the end is read to the end only", {E0: 10}, {E0: 50}, {E0: 12}, {E0: (10, 12)}),
    ],
)
def test_reads_to_catch_up(name, positions, fences, ends, reads):
    assert reads_to_catch_up(positions, fences, ends) == reads


def test_fences_past_the_end_name_offsets_that_do_not_exist():
    assert fences_past_the_end({E0: 11, E1: 12, C0: 3}, {E0: 12, E1: 12}) == {E1: (12, 12)}


def test_the_live_side_is_behind_where_the_rebuild_applied_more():
    assert live_behind({E0: 9, E1: 4, C0: 0}, {E0: 9, E1: 2}) == {E1: (2, 4), C0: (-1, 0)}
    assert live_behind({E0: 9}, {E0: 12}) == {}


def test_records_deleted_before_where_the_read_must_start_are_reported():
    assert deleted_before_start({E0: 0, E1: 7}, {E0: 0, E1: 0}) == {E1: 7}
    assert deleted_before_start({E0: 7}, {E0: 7}) == {}  # a rollback continuing at its fence + 1


def test_a_row_diff_names_the_columns_that_differ():
    columns = ("status", "processed", "error")
    assert row_diff(
        "j1",
        {"status": "succeeded", "processed": 9, "error": None},
        {"status": "succeeded", "processed": 6, "error": None},
        columns,
    ) == RowDiff("j1", None, (("processed", 9, 6),))
    assert row_diff("j2", None, {"status": "queued"}, columns).only_in == "rebuilt"
    assert row_diff("j3", {"status": "queued"}, None, columns).only_in == "live"


def test_a_table_diff_prints_a_summary_and_the_rows_shown():
    diff = TableDiff(
        "sync_jobs", "job_id", 3, 3, 0, 1, 2, (RowDiff("j1", None, (("processed", 9, 6),)), RowDiff("j2", "rebuilt"))
    )
    assert format_table_diff(diff) == [
        "sync_jobs: live 3 rows, rebuilt 3 rows: 0 only live, 1 only rebuilt, 2 differ",
        "  job_id=j1: processed: live 9 | rebuilt 6",
        "  job_id=j2: only in the rebuilt table (missing from the live one)",
        "  ... and 1 more (--show N prints more)",
    ]
    assert format_table_diff(TableDiff("dlq", "dead_letter_id", 2, 2, 0, 0, 0, ())) == [
        "dlq: live 2 rows, rebuilt 2 rows: identical"
    ]


def test_progress_gives_each_topic_and_the_rate():
    assert format_progress("replaying sync_jobs", {"a": 50, "b": 80}, {"a": 200, "b": 80}, 1234.4) == (
        "replaying sync_jobs: a 50/200 (25%), b 80/80 (100%); 1,234 records/s"
    )


def test_the_registry_and_the_help_name_the_same_projections_topics_and_tables():
    registry = projections()
    assert tuple(registry) == NAMES == PROJECTION_NAMES
    lines: dict[str, str] = {}
    entry = ""
    for line in PROJECTIONS_TABLE.splitlines():  # an entry may continue on an indented line
        first = line.split()[0]
        if first == "->":
            lines[entry] += line
        else:
            entry = first
            lines[entry] = line
    for name, projection in registry.items():
        for text in (*projection.topics, *(t.name for t in projection.tables)):
            assert text in lines[name], (name, text)


def test_the_registry_uses_the_agents_own_functions():
    from app.stream import dlq, ledger
    from app.stream import projections as read_model

    registry = projections()
    assert registry["sources"].consumer_of("hookstream.sync.control").project is read_model.project_source_event
    assert registry["sync_jobs"].consumer_of("hookstream.sync.completed").project is read_model.project_sync_record
    assert registry["sync_jobs"].consumer_of("hookstream.sync.control").project is read_model.project_progress_record
    assert registry["dlq"].consumer_of("hookstream.dlq").project is dlq.project_dead_letter
    assert registry["ledger"].consumer_of("hookstream.deliveries.outcomes").project is ledger.project_outcome
    assert {c for p in registry.values() for c in p.consumer_names} == {
        read_model.SOURCES_CONSUMER,
        read_model.SYNC_JOBS_CONSUMER,
        read_model.PROGRESS_CONSUMER,
        dlq.CONSUMER,
        ledger.CONSUMER,
    }


def test_rebuild_help_answers_the_on_call_questions(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["projections", "rebuild", "--help"])
    text = capsys.readouterr().out
    for needed in (
        "THE WORKERS MAY KEEP RUNNING",
        "how long",
        "--verify:",
        "rolling back",
        "rollback --from",
        "DROP SCHEMA",
        "exit status",
        "--dry-run",
    ):
        assert needed in text, needed
