"""The delivery ledger, pure: the dedup stage's outcome record of a copy and the rows it makes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app import codec
from app.core import intake, ledger
from app.core.dedup import DedupEntry
from app.events import Delivery, DeliveryOutcome, SourceConnected, SyncRequested
from app.plugins.base import Ignored, Routed, RoutingError

T = datetime(2026, 1, 1, tzinfo=UTC)
D = Delivery(
    delivery_id="d1",
    plugin="github",
    instance="gh",
    received_at=T,
    body=b"{}",
    headers={"x-github-event": "push", "x-github-delivery": "d1"},
)
REQUEST = SyncRequested(source_id="github:1", occurred_at=T, request_id="d1", mode="incremental", trigger="push")
CONNECTED = SourceConnected(source_id="github:1", occurred_at=T, source_type="github")


def routes(*events, ignored=None):
    return lambda d: Routed(events=tuple(events), ignored=ignored)


def fails(d):
    raise RoutingError("payload.repository is missing or not an object")


def recorded(delivery: Delivery, entry, offset: int, route) -> DeliveryOutcome:
    """What the stage publishes for one copy, decoded as the ledger decodes it."""
    out = intake.process(delivery, entry, 3, offset, "deliveries", 60.0, route)
    return codec.decode(DeliveryOutcome, codec.encode_fields(ledger.outcome_fields(delivery, 3, offset, out)))


def test_a_routed_copy_names_its_position_event_requests_and_sources():
    got = recorded(D, None, 40, routes(CONNECTED, REQUEST))
    assert got == DeliveryOutcome(
        key="github/gh/d1",
        plugin="github",
        instance="gh",
        delivery_id="d1",
        event="push",
        received_at=T,
        partition=3,
        offset=40,
        outcome="routed",
        reason="first sighting",
        request_ids=["d1"],
        source_ids=["github:1"],
        event_types=["source.connected", "sync.requested"],
    )


@pytest.mark.parametrize(
    "entry, route, outcome, rule, reason",
    [
        (
            DedupEntry(T.timestamp(), T.timestamp() + 60, 3, 40),
            routes(REQUEST),
            "duplicate",
            None,
            "redelivery inside window",
        ),
        (None, routes(ignored=Ignored("ping")), "ignored", "ping", "first sighting"),
        (None, fails, "dead_lettered", "route", "payload.repository is missing or not an object"),
        (None, None, "dead_lettered", "route", "unknown instance github/gh"),
    ],
)
def test_every_outcome_is_recorded_with_its_rule_or_stage_and_reason(entry, route, outcome, rule, reason):
    if route is None:
        out = intake.process(D, entry, 3, 41, "deliveries", None, None)
        got = codec.decode(DeliveryOutcome, codec.encode_fields(ledger.outcome_fields(D, 3, 41, out)))
    else:
        got = recorded(D, entry, 41, route)
    assert (got.outcome, got.rule, got.reason, got.request_ids, got.offset) == (outcome, rule, reason, [], 41)


def test_a_replayed_or_redriven_copy_carries_its_epoch_or_dead_letter():
    replayed = D.model_copy(update={"replay_epoch": "e1"})
    got = recorded(replayed, DedupEntry(T.timestamp(), T.timestamp() + 60, 3, 40), 90, routes(REQUEST))
    assert (got.outcome, got.reason, got.replay_epoch) == ("routed", "new replay epoch", "e1")
    redriven = D.model_copy(update={"redrive_of": "abc"})
    assert recorded(redriven, None, 91, routes(REQUEST)).redrive_of == "abc"


def test_an_undecodable_copy_is_recorded_from_its_key():
    got = codec.decode(
        DeliveryOutcome, codec.encode_fields(ledger.undecodable_fields("github/gh/x9", 1, 7, "not JSON", T))
    )
    assert (got.plugin, got.instance, got.delivery_id, got.outcome, got.rule) == (
        "github",
        "gh",
        "x9",
        "dead_lettered",
        "decode",
    )
    odd = codec.decode(DeliveryOutcome, codec.encode_fields(ledger.undecodable_fields("no-slashes", 1, 8, "x", T)))
    assert (odd.plugin, odd.delivery_id) == ("unknown", "no-slashes")


def outcome(offset: int, what: str, at: int, **kw) -> DeliveryOutcome:
    return DeliveryOutcome(
        key="github/gh/d1",
        plugin="github",
        instance="gh",
        delivery_id="d1",
        received_at=T + timedelta(seconds=at),
        partition=3,
        offset=offset,
        outcome=what,
        **kw,
    )


def fold(*records: DeliveryOutcome) -> ledger.DeliveryRow:
    row = None
    for r in records:
        row = ledger.delivery_after(row, r)
    assert row is not None
    return row


def test_duplicates_count_as_copies_and_keep_the_outcome_that_decided():
    row = fold(
        outcome(1, "routed", 0, request_ids=["d1"], source_ids=["github:1"]),
        outcome(2, "duplicate", 5),
        outcome(3, "duplicate", 9),
    )
    assert (row.copies, row.outcome, row.request_ids, row.first_received_at, row.last_received_at) == (
        3,
        "routed",
        ("d1",),
        T,
        T + timedelta(seconds=9),
    )


def test_a_key_seen_only_as_a_duplicate_is_a_duplicate():
    assert fold(outcome(2, "duplicate", 5)).outcome == "duplicate"


def test_a_later_deciding_copy_takes_over_and_replay_epochs_accumulate():
    row = fold(
        outcome(1, "dead_lettered", 0, rule="route", reason="bad"),
        outcome(2, "routed", 5, request_ids=["d1"], redrive_of="x"),
        outcome(3, "routed", 9, request_ids=["d1"], replay_epoch="e1"),
        outcome(4, "duplicate", 10, replay_epoch="e1"),
    )
    assert (row.outcome, row.rule, row.reason, row.request_ids, row.replay_epochs, row.copies) == (
        "routed",
        None,
        None,
        ("d1",),
        ("e1",),
        4,
    )
