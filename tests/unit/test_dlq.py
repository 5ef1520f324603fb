"""What a dlq record does to its row, and the pure parts of `hookstream dlq`, table-driven."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from app.cli.common import CliError
from app.cli.dlq import body_preview, dead_letter_table, format_row, not_redrivable_reason, redrive_of
from app.cli.text import parse_time
from app.core import dlq
from app.core.intake import dead_letter_id
from app.events import DeadLettered, Delivery, RedriveAccepted

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
DELIVERY = Delivery(
    delivery_id="d-1",
    plugin="generic-hmac",
    instance="a",
    received_at=T0,
    headers={"x-signature": "abc"},
    body=b"not an event",
)
DL_ID = dead_letter_id(DELIVERY.key)
H = timedelta(hours=1)


def failure(
    at: datetime = T0,
    stage: str = "route",
    error: str = "boom",
    original: Delivery | None = DELIVERY,
    raw: bytes | None = None,
    key: str = DELIVERY.key,
    offset: int | None = None,
) -> DeadLettered:
    """A failure consumed at an offset of its own per hour after T0 (each redrive is a new record)."""
    if offset is None:
        offset = 7 + int((at - T0) / H)
    return DeadLettered(
        dead_letter_id=DL_ID,
        key=key,
        stage=stage,
        error=error,
        failed_at=at,
        source_topic="hookstream.deliveries",
        source_partition=1,
        source_offset=offset,
        original=original,
        raw=raw,
    )


def accepted(at: datetime) -> RedriveAccepted:
    return RedriveAccepted(dead_letter_id=DL_ID, key=DELIVERY.key, accepted_at=at)


def fold_all(records) -> dlq.DeadLetterRow | None:
    row = None
    for record in records:
        row = dlq.fold(row, record)
    return row


def summary(row: dlq.DeadLetterRow | None):
    if row is None:
        return None
    return (row.status, row.attempts, row.stage, row.error, row.first_failed_at, row.last_failed_at, row.retired_at)


@pytest.mark.parametrize(
    "name, records, expected",
    [
        ("a first failure opens a row with one attempt", [failure()], ("open", 1, "route", "boom", T0, T0, None)),
        (
            "a failure of a redrive adds an attempt and takes the latest error",
            [failure(), failure(T0 + H, stage="decode", error="again")],
            ("open", 2, "decode", "again", T0, T0 + H, None),
        ),
        (
            "an accepted redrive retires the row",
            [failure(), accepted(T0 + H)],
            ("retired", 1, "route", "boom", T0, T0, T0 + H),
        ),
        (
            "a redrive that failed and then one that was accepted: retired after two attempts",
            [failure(), failure(T0 + H), accepted(T0 + 2 * H)],
            ("retired", 2, "route", "boom", T0, T0 + H, T0 + 2 * H),
        ),
        (
            "a failure after retirement reopens the row",
            [failure(), accepted(T0 + H), failure(T0 + 2 * H, error="back")],
            ("open", 2, "route", "back", T0, T0 + 2 * H, None),
        ),
        (
            "a second acceptance keeps the first retirement",
            [failure(), accepted(T0 + H), accepted(T0 + 2 * H)],
            ("retired", 1, "route", "boom", T0, T0, T0 + H),
        ),
        ("an acceptance without a row makes none", [accepted(T0)], None),
        (
            "failure times out of order keep the earliest first and the latest last",
            [failure(T0 + H), failure(T0)],
            ("open", 2, "route", "boom", T0, T0 + H, None),
        ),
        (
            "the same consumed record failing again (a replay, a crash before the commit) is not another attempt",
            [failure(offset=7), failure(T0 + H, error="again", offset=7)],
            ("open", 1, "route", "boom", T0, T0, None),
        ),
        (
            "nor is it after its row was retired",
            [failure(offset=7), accepted(T0 + H), failure(T0 + 2 * H, offset=7)],
            ("retired", 1, "route", "boom", T0, T0, T0 + H),
        ),
    ],
)
def test_fold(name, records, expected):
    assert summary(fold_all(records)) == expected, name


def test_a_failure_without_a_delivery_keeps_the_delivery_already_held():
    row = fold_all([failure(), failure(T0 + H, stage="decode", original=None, raw=b"\xff")])
    assert row.original == DELIVERY and row.raw == b"\xff" and row.redrivable


def test_a_failure_remembers_where_it_was_consumed_last():
    row = fold_all([failure(offset=7), failure(T0 + H, offset=99)])
    assert (row.source_topic, row.source_partition, row.source_offset) == ("hookstream.deliveries", 1, 99)


@pytest.mark.parametrize(
    "key, original, expected",
    [
        ("github/main/abc", None, ("github", "main")),
        ("generic-hmac/a/id/with/slashes", None, ("generic-hmac", "a")),
        ("garbage", None, ("unknown", "unknown")),
        ("a//b", None, ("unknown", "unknown")),
        ("", None, ("unknown", "unknown")),
        ("anything", DELIVERY, ("generic-hmac", "a")),
    ],
)
def test_plugin_and_instance_come_from_the_delivery_else_its_key(key, original, expected):
    assert dlq.plugin_and_instance(key, original) == expected


def test_an_undecodable_record_makes_a_row_that_cannot_be_redriven():
    row = dlq.fold(None, failure(stage="decode", original=None, raw=b"\x00garbage", key="weird"))
    assert (row.plugin, row.instance, row.raw, row.redrivable) == ("unknown", "unknown", b"\x00garbage", False)
    assert "cannot be redriven" in not_redrivable_reason(row)


def test_a_row_round_trips_through_its_columns():
    row = fold_all([failure(), accepted(T0 + H)])
    assert dlq.from_columns(dlq.to_columns(row)) == row


def test_nul_characters_are_not_written_to_text_columns():
    # The model refuses a NUL in an id now; records written before that rule still decode from old topics.
    nul = Delivery.model_construct(
        delivery_id="d\x00", plugin="generic-hmac", instance="a", received_at=T0, body=b"x", headers={}
    )
    row = dlq.fold(None, failure(original=nul, key=nul.key, error="bad \x00 byte"))
    values = dlq.to_columns(row)
    assert "\x00" not in values["key"] + values["error"] + values["original"]["delivery_id"]


NOW = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2h", NOW - timedelta(hours=2)),
        ("30m", NOW - timedelta(minutes=30)),
        ("7d", NOW - timedelta(days=7)),
        ("2026-11-01T12:00:00Z", datetime(2026, 11, 1, 12, tzinfo=UTC)),
        ("2026-11-01T12:00:00+02:00", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
    ],
)
def test_since_is_a_time_or_a_duration_back_from_now(text, expected):
    assert parse_time(text, NOW, "--since") == expected


@pytest.mark.parametrize("text", ["yesterday", "-2h", "0s", ""])
def test_an_unreadable_since_is_a_usage_error(text):
    with pytest.raises(CliError) as exc:
        parse_time(text, NOW, "--since")
    assert exc.value.code == 2


def test_body_preview_cuts_long_bodies_and_says_how_much_is_left():
    assert body_preview(b"abc", 10) == "abc"
    assert body_preview(b"a" * 12, 10) == "a" * 10 + "\n… (2 more bytes)"
    assert body_preview(b"\xff", 10) == "\ufffd"


def test_a_redrive_is_the_original_delivery_marked_with_its_dead_letter():
    row = dlq.fold(None, failure())
    redrive = redrive_of(row, NOW)
    assert redrive.redrive_of == DL_ID and redrive.received_at == NOW
    assert (redrive.key, redrive.body, redrive.headers) == (DELIVERY.key, DELIVERY.body, DELIVERY.headers)


def test_a_retired_row_is_not_redriven_again():
    row = fold_all([failure(), accepted(T0 + H)])
    assert "retired" in not_redrivable_reason(row)
    assert not_redrivable_reason(replace(row, status="open", retired_at=None)) is None


def test_the_table_and_the_full_view_show_what_an_operator_needs():
    row = fold_all([failure(error="body is not a hookstream producer event:\n  bad"), failure(T0 + H)])
    table = dead_letter_table([row])
    assert DL_ID in table and "generic-hmac/a" in table and "ATTEMPTS" in table
    full = format_row(row)
    for expected in ("attempts       2", "x-signature: abc", "not an event", "body (12 bytes)"):
        assert expected in full
    raw_row = dlq.fold(None, failure(stage="decode", original=None, raw=b"{oops", key="k"))
    assert "cannot be redriven" in format_row(raw_row) and "{oops" in format_row(raw_row)


# --- dead letters of the other agents (app.core.poison) ------------------------------------------


def other_failure(
    stage: str = "plan",
    raw: bytes | None = b'{"type": "sync.plan_requested"}',
    truncated: bool = False,
    topic: str = "t1.hookstream.sync.plans",
) -> DeadLettered:
    return DeadLettered(
        dead_letter_id="a" * 24,
        key="git:x:7",
        stage=stage,
        error="boom",
        failed_at=T0,
        source_topic=topic,
        source_partition=2,
        source_offset=9,
        raw=raw,
        truncated=truncated,
    )


@pytest.mark.parametrize(
    "record, redrivable",
    [
        (other_failure(), True),  # the whole record, it decoded: republished to its topic
        (other_failure(stage="batch", topic="hookstream.files.batches"), True),
        (other_failure(stage="decode"), False),  # it never decoded: redriving changes nothing
        (other_failure(truncated=True), False),  # only its first bytes are kept
        (
            other_failure(stage="route", raw=b"x", topic="t1.hookstream.deliveries"),
            False,
        ),  # a delivery needs `original`
    ],
)
def test_a_row_of_another_topic_is_redrivable_when_it_holds_the_whole_record_that_decoded(record, redrivable):
    row = dlq.fold(None, record)
    assert row.redrivable is redrivable
    assert (not_redrivable_reason(row) is None) is redrivable


def test_a_row_of_another_topic_has_no_plugin_and_shows_where_it_came_from():
    row = dlq.fold(None, other_failure())
    assert (row.plugin, row.instance, row.of_delivery) == ("unknown", "unknown", False)
    assert "t1.hookstream.sync.plans" in dead_letter_table([row]) and "a redrive republishes it" in format_row(row)
    truncated = dlq.fold(None, other_failure(truncated=True))
    assert "first bytes" in not_redrivable_reason(
        truncated
    ) and "t1.hookstream.sync.plans[2]@9" in not_redrivable_reason(truncated)
    assert dlq.from_columns(dlq.to_columns(truncated)) == truncated


@pytest.mark.parametrize(
    "text, expected",
    [(None, NOW - timedelta(days=30)), ("7d", NOW - timedelta(days=7)), ("12h", NOW - timedelta(hours=12))],
)
def test_prune_cuts_at_the_retention_days_or_at_older_than(text, expected):
    from app.cli.db import cutoff_of

    assert cutoff_of(text, 30.0, NOW) == expected


@pytest.mark.parametrize("text", ["soon", "0d", "-3d", "100000000000d"])
def test_an_unreadable_older_than_is_a_usage_error(text):
    from app.cli.db import cutoff_of

    with pytest.raises(CliError) as exc:
        cutoff_of(text, 30.0, NOW)
    assert exc.value.code == 2
