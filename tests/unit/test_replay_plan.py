"""Where `hookstream replay` moves each partition, what the table says, and the downstream notes. Table-driven."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.cli.replay import format_moves
from app.cli.text import format_table
from app.core import lag as lag_core
from app.core.lag import as_json, by_topic, lag
from app.core.replay import (
    Position,
    ShiftBy,
    ToDatetime,
    ToEarliest,
    ToLatest,
    ToOffset,
    downstream,
    logical_name,
    move,
    plan,
    totals,
)

T = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
# earliest 100 (older records deleted), end 200, committed 150
MID = Position("p.hookstream.deliveries", 0, 150, 100, 200, at_time=120)
UNCOMMITTED = Position("p.hookstream.deliveries", 1, None, 100, 200, at_time=None)
EMPTY = Position("p.hookstream.deliveries", 2, None, 0, 0, at_time=None)


@pytest.mark.parametrize(
    "name, position, target, new, reprocessed, note",
    [
        ("earliest rewinds to the first record kept", MID, ToEarliest(), 100, 50, ""),
        ("latest skips what is not consumed", MID, ToLatest(), 200, -50, ""),
        ("an offset inside the range is taken as is", MID, ToOffset(130), 130, 20, ""),
        ("an offset before the earliest is clamped to it", MID, ToOffset(5), 100, 50, "clamped to earliest (5)"),
        ("an offset past the end is clamped to the end", MID, ToOffset(999), 200, -50, "clamped to end (999)"),
        ("a time goes to the first record at or after it", MID, ToDatetime(T), 120, 30, ""),
        (
            "a time past the last record leaves the partition at its end, not at 0",
            Position("t", 0, 150, 100, 200, at_time=None),
            ToDatetime(T),
            200,
            -50,
            "time past the last record: left at end",
        ),
        (
            "a time answer outside the range is clamped",
            Position("t", 0, 150, 100, 200, at_time=0),
            ToDatetime(T),
            100,
            50,
            "clamped to earliest (0)",
        ),
        ("shift back from the committed offset", MID, ShiftBy(-20), 130, 20, ""),
        ("shift forward from the committed offset", MID, ShiftBy(30), 180, -30, ""),
        ("shift back past the earliest clamps", MID, ShiftBy(-1000), 100, 50, "clamped to earliest (-850)"),
        ("shift forward past the end clamps", MID, ShiftBy(1000), 200, -50, "clamped to end (1150)"),
        (
            "a committed offset below the earliest resumes at the earliest",
            Position("t", 0, 40, 100, 200),
            ShiftBy(10),
            110,
            -10,
            "",
        ),
        (
            "an uncommitted partition shifts from the earliest",
            UNCOMMITTED,
            ShiftBy(10),
            110,
            -10,
            "no commit (starts at earliest)",
        ),
        (
            "an uncommitted partition past its end in time stays at its end",
            UNCOMMITTED,
            ToDatetime(T),
            200,
            -100,
            "no commit (starts at earliest); time past the last record: left at end",
        ),
        ("an empty partition stays at 0", EMPTY, ToLatest(), 0, 0, "no commit (starts at earliest)"),
    ],
)
def test_move(name, position, target, new, reprocessed, note):
    m = move(position, target)
    assert (m.new, m.reprocessed, m.note) == (new, reprocessed, note), name
    assert m.earliest <= m.new <= m.end


def test_every_target_keeps_offsets_within_the_partition():
    positions = [MID, UNCOMMITTED, EMPTY, Position("t", 0, 7, 5, 9, at_time=8)]
    for target in (
        ToEarliest(),
        ToLatest(),
        ToOffset(0),
        ToOffset(10**9),
        ToDatetime(T),
        ShiftBy(-(10**9)),
        ShiftBy(10**9),
    ):
        for m in plan(positions, target):
            assert m.earliest <= m.new <= m.end, (target, m)


def test_plan_is_ordered_by_topic_and_partition():
    moves = plan([Position("b", 1, 0, 0, 1), Position("a", 2, 0, 0, 1), Position("b", 0, 0, 0, 1)], ToLatest())
    assert [(m.topic, m.partition) for m in moves] == [("a", 2), ("b", 0), ("b", 1)]


def test_the_table_has_a_row_per_partition_and_a_total_per_topic():
    moves = plan([MID, UNCOMMITTED, Position("p.hookstream.dlq", 0, 3, 0, 10)], ToEarliest())
    lines = format_moves(moves).splitlines()
    assert lines[0].split() == ["TOPIC", "PARTITION", "CURRENT", "NEW", "EARLIEST", "END", "REPROCESS", "NOTE"]
    assert lines[1].split()[:7] == ["p.hookstream.deliveries", "0", "150", "100", "100", "200", "+50"]
    assert lines[2].split()[:7] == ["p.hookstream.deliveries", "1", "-", "100", "100", "200", "0"]
    assert lines[3].split() == ["total", "p.hookstream.deliveries", "+50"]
    assert lines[4].split()[:7] == ["p.hookstream.dlq", "0", "3", "0", "0", "10", "+3"]
    assert len(lines) == 5  # one partition: no total row
    assert totals(moves) == {"p.hookstream.deliveries": 50, "p.hookstream.dlq": 3}


def test_downstream_names_the_consuming_stage_and_warns_about_skipped_records():
    moves = plan(
        [MID, Position("p.hookstream.sync.control", 0, 10, 0, 40), Position("elsewhere", 0, 1, 0, 2)], ToLatest()
    )
    text = " ".join(" ".join(downstream(moves, "p.")).split())  # prose is wrapped: compare words
    assert "p.hookstream.deliveries (50 record(s) SKIPPED, never processed) -> deduplicate_deliveries" in text
    assert (
        "p.hookstream.sync.control (30 record(s) SKIPPED, never processed) -> orchestrate_syncs, project_sources"
        in text
    )
    assert "elsewhere (1 record(s) SKIPPED, never processed): not a hookstream topic" in text
    assert "dedup window" in text and "idempotency keys" in text
    assert "hookstream replay deliveries" in text


def test_downstream_counts_records_read_again_and_skipped_apart():
    moves = plan(
        [Position("p.hookstream.dlq", 0, 10, 0, 40, at_time=4), Position("p.hookstream.dlq", 1, 10, 0, 40, at_time=25)],
        ToDatetime(T),
    )
    text = " ".join(" ".join(downstream(moves, "p.")).split())
    assert (
        "p.hookstream.dlq (6 record(s) read again, 15 record(s) SKIPPED, never processed) -> project_dead_letters"
        in text
    )


def test_downstream_of_a_rewind_explains_what_each_stage_does_again():
    moves = plan([MID, Position("p.hookstream.files.batches", 0, 10, 0, 40)], ToEarliest())
    text = " ".join(" ".join(downstream(moves, "p.")).split())  # prose is wrapped: compare words
    assert (
        "p.hookstream.deliveries (50 record(s) read again) -> deduplicate_deliveries: a delivery read again at the offset"
        in text
    )
    assert "-> process_file_batches: each batch is fetched and upserted again: documents converge" in text


@pytest.mark.parametrize(
    "topic, prefix, expected",
    [
        ("p.hookstream.deliveries", "p.", "hookstream.deliveries"),
        ("hookstream.deliveries", "", "hookstream.deliveries"),
        ("hookstream.deliveries", "p.", None),
        ("p.other", "p.", None),
    ],
)
def test_logical_name(topic, prefix, expected):
    assert logical_name(topic, prefix) == expected


def test_lag_counts_from_the_committed_offset_or_the_earliest():
    assert lag(MID) == 50
    assert lag(UNCOMMITTED) == 100
    assert lag(EMPTY) == 0
    assert lag(Position("t", 0, 250, 0, 200)) == 0  # a committed offset past the end is no negative lag


def test_lag_totals_per_topic_and_json():
    positions = [MID, UNCOMMITTED, Position("p.hookstream.dlq", 0, 3, 0, 10)]
    assert by_topic(positions) == {
        "p.hookstream.deliveries": {"partitions": 2, "end": 400, "lag": 150},
        "p.hookstream.dlq": {"partitions": 1, "end": 10, "lag": 7},
    }
    data = as_json("g", "Empty", 0, positions)
    assert data["lag"] == 157 and data["members"] == 0
    assert data["partitions"][1] == {
        "topic": "p.hookstream.deliveries",
        "partition": 1,
        "committed": None,
        "earliest": 100,
        "end": 200,
        "lag": 100,
    }
    lines = format_table(lag_core.HEADER, lag_core.lag_rows("g", positions), lag_core.NUMERIC).splitlines()
    assert lines[0].split() == ["GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"]
    assert lines[-1].split() == ["g", "total", "157"]
