"""The dedup stage's clock: each partition's newest broker timestamp, never a record's own date (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.core import intake
from app.core.dedup import DedupEntry, purgeable, tick
from app.events import Delivery, SyncRequested
from app.plugins.base import Routed

T = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
T_MS = int(T.timestamp() * 1000)
END_OF_TIME = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
YEAR_9000_MS = int((datetime(9000, 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000)
WINDOW = 3600.0


@pytest.mark.parametrize(
    "name, clock, timestamp_ms, now, refused",
    [
        ("the first record starts the clock", None, T_MS, T_MS / 1000, False),
        ("a later record moves it on", T_MS / 1000, T_MS + 5000, T_MS / 1000 + 5, False),
        ("an earlier record does not move it back", T_MS / 1000, T_MS - 60_000, T_MS / 1000, False),
        ("the epoch itself is a time", None, 0, 0.0, False),
        (
            "the last millisecond before the year 9000 is a time",
            None,
            YEAR_9000_MS - 1,
            (YEAR_9000_MS - 1) / 1000,
            False,
        ),
        ("the year 9000 is refused and the clock stays", T_MS / 1000, YEAR_9000_MS, T_MS / 1000, True),
        ("a 64-bit timestamp is refused", T_MS / 1000, 2**63 - 1, T_MS / 1000, True),
        ("Kafka's 'no timestamp' (-1) is refused", T_MS / 1000, -1, T_MS / 1000, True),
        ("a missing timestamp is refused", T_MS / 1000, None, T_MS / 1000, True),
        ("a refusal on a partition without a clock leaves none", None, -1, None, True),
    ],
)
def test_tick(name, clock, timestamp_ms, now, refused):
    got = tick(clock, timestamp_ms)
    assert got.now == now, name
    assert (got.refusal is not None) is refused, name
    if refused:
        assert "1970-8999" in got.refusal


def test_the_clock_is_the_newest_timestamp_of_a_sequence_whatever_its_order():
    clock = None
    for ms in (T_MS, T_MS + 3000, T_MS + 1000, -1, T_MS + 2000, 2**62):
        clock = tick(clock, ms).now
    assert clock == (T_MS + 3000) / 1000


def delivery(delivery_id: str, received_at: datetime) -> Delivery:
    return Delivery(delivery_id=delivery_id, plugin="generic-hmac", instance="a", received_at=received_at, body=b"{}")


def routes(d: Delivery) -> Routed:
    event = SyncRequested(source_id="s", occurred_at=T, request_id=d.delivery_id, mode="full", trigger="producer")
    return Routed(events=(event,))


def test_a_forged_received_at_neither_dates_its_entry_nor_expires_the_partitions_entries():
    """A record dated in the year 9999 at broker time T: its entry is made at T, and the partition's
    clock stays at T, so an entry made a minute earlier is neither expired nor purgeable."""
    earlier = intake.process(delivery("d-1", T), None, 0, 1, "deliveries", WINDOW, routes, now=T.timestamp())
    assert isinstance(earlier.store, DedupEntry)

    clock = tick(T.timestamp(), T_MS + 60_000)
    forged = intake.process(delivery("d-2", END_OF_TIME), None, 0, 2, "deliveries", WINDOW, routes, now=clock.now)
    assert forged.store == DedupEntry(T.timestamp() + 60, T.timestamp() + 60 + WINDOW, 0, 2)
    assert clock.now == T.timestamp() + 60
    assert not purgeable(earlier.store, clock.now)

    # The earlier delivery redelivered (another offset) after the forged record: still a duplicate.
    again = intake.process(
        delivery("d-1", END_OF_TIME), earlier.store, 0, 3, "deliveries", WINDOW, routes, now=clock.now
    )
    assert (again.counted, again.sends) == ("duplicate", [])


def test_the_stage_decides_at_the_clock_it_is_given_not_at_received_at():
    received_long_after_the_window = delivery("d-1", T + timedelta(days=30))
    entry = DedupEntry(T.timestamp(), T.timestamp() + WINDOW, 0, 1)
    inside = intake.process(
        received_long_after_the_window, entry, 0, 2, "deliveries", WINDOW, routes, now=T.timestamp() + 1
    )
    assert inside.counted == "duplicate"
    past = intake.process(delivery("d-1", T), entry, 0, 3, "deliveries", WINDOW, routes, now=T.timestamp() + WINDOW)
    assert (past.counted, past.reason) == ("routed", "window expired")


def test_a_dead_letter_and_a_redrive_confirmation_carry_the_clocks_time():
    now = T.timestamp() + 7
    unknown = intake.process(delivery("d-1", END_OF_TIME), None, 0, 1, "deliveries", None, None, now=now)
    assert unknown.sends[0].record.failed_at == T + timedelta(seconds=7)
    redrive = delivery("d-2", END_OF_TIME).model_copy(update={"redrive_of": "dl-1"})
    accepted = intake.process(redrive, None, 0, 2, "deliveries", WINDOW, routes, now=now)
    assert accepted.sends[-1].record.accepted_at == T + timedelta(seconds=7)


def test_a_delivery_no_clock_can_decide_is_dead_lettered_whole_and_releases_no_key():
    refused = intake.refused(delivery("d-1", T), "no usable broker timestamp", 3, 9, "deliveries", T)
    assert (refused.counted, refused.rule, refused.store) == ("dead_lettered", "validate", None)
    (send,) = refused.sends
    letter = send.record
    assert (send.topic, letter.stage, letter.error, letter.failed_at) == (
        intake.DLQ,
        "validate",
        "no usable broker timestamp",
        T,
    )
    assert (letter.source_partition, letter.source_offset, letter.original) == (3, 9, delivery("d-1", T))
    # One dead letter per delivery key, as the stage's other dead letters of a delivery.
    assert letter.dead_letter_id == intake.dead_letter_id(delivery("d-1", T).key)
