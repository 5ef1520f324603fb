"""The dedup window decision, table-driven (DESIGN invariant 2)."""

from __future__ import annotations

import pytest

from app.core.dedup import Action, DedupEntry, decide, purgeable

W = 3600.0
SEEN = DedupEntry(seen_at=1000.0, expires_at=1000.0 + W, partition=3, offset=42)


@pytest.mark.parametrize(
    "name, entry, now, partition, offset, epoch, redrive, action, reason",
    [
        ("first sighting routes", None, 1000.0, 3, 42, None, False, Action.ROUTE, "first sighting"),
        (
            "redelivery inside window is dropped",
            SEEN,
            1500.0,
            3,
            99,
            None,
            False,
            Action.DUPLICATE,
            "redelivery inside window",
        ),
        (
            "redelivery one second before the edge is dropped",
            SEEN,
            1000.0 + W - 1,
            5,
            7,
            None,
            False,
            Action.DUPLICATE,
            "redelivery inside window",
        ),
        (
            "redelivery exactly at the window edge routes",
            SEEN,
            1000.0 + W,
            5,
            7,
            None,
            False,
            Action.ROUTE,
            "window expired",
        ),
        (
            "redelivery after the window routes",
            SEEN,
            1000.0 + 2 * W,
            3,
            100,
            None,
            False,
            Action.ROUTE,
            "window expired",
        ),
        (
            "same message replayed after a crash routes again",
            SEEN,
            1000.0,
            3,
            42,
            None,
            False,
            Action.ROUTE,
            "same message replayed",
        ),
        (
            "same offset on another partition is a redelivery",
            SEEN,
            1001.0,
            4,
            42,
            None,
            False,
            Action.DUPLICATE,
            "redelivery inside window",
        ),
        ("a redrive routes inside the window", SEEN, 1200.0, 3, 50, None, True, Action.ROUTE, "redrive"),
        ("a new replay epoch routes once", SEEN, 1200.0, 3, 60, "e1", False, Action.ROUTE, "new replay epoch"),
        (
            "an early redelivery out of order in event time is still dropped",
            SEEN,
            900.0,
            3,
            43,
            None,
            False,
            Action.DUPLICATE,
            "redelivery inside window",
        ),
    ],
)
def test_decide(name, entry, now, partition, offset, epoch, redrive, action, reason):
    decision = decide(entry, now, W, partition, offset, replay_epoch=epoch, redrive=redrive)
    assert (decision.action, decision.reason) == (action, reason), name


def test_a_replay_epoch_already_seen_is_a_duplicate():
    first = decide(SEEN, 1200.0, W, 3, 60, replay_epoch="e1")
    again = decide(first.entry, 1201.0, W, 3, 61, replay_epoch="e1")
    assert again.action is Action.DUPLICATE


def test_a_fresh_entry_remembers_where_it_was_made_and_when_it_expires():
    decision = decide(None, 10.0, 60.0, 2, 7)
    assert decision.entry == DedupEntry(10.0, 70.0, 2, 7)


def test_replaying_the_same_message_stores_the_entry_again_so_the_changelog_has_it():
    assert decide(SEEN, 1000.0, W, 3, 42).entry == SEEN


@pytest.mark.parametrize("now, expected", [(1000.0 + W - 0.001, False), (1000.0 + W, True), (1e12, True)])
def test_purge_only_entries_past_their_window(now, expected):
    assert purgeable(SEEN, now) is expected


def test_entry_round_trips_through_bytes():
    entry = DedupEntry(1.5, 2.5, 1, 2, ("a", "b"))
    assert DedupEntry.from_bytes(entry.to_bytes()) == entry
