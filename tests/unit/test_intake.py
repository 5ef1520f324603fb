"""The dedup/routing stage's per-delivery outcome (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from app.core import intake
from app.core.dedup import DedupEntry
from app.events import Delivery, SyncRequested
from app.plugins.base import Ignored, Routed, RoutingError

T = datetime(2026, 1, 1, tzinfo=UTC)
D = Delivery(delivery_id="d1", plugin="generic-hmac", instance="a", received_at=T, body=b"{}")
EVENT = SyncRequested(source_id="s", occurred_at=T, request_id="d1", mode="full", trigger="producer")


def routes(*events, ignored=None):
    return lambda d: Routed(events=tuple(events), ignored=ignored)


def test_a_first_sighting_is_routed_to_the_control_topic_keyed_by_source_with_its_exact_position():
    out = intake.process(D, None, 2, 40, "deliveries", 60.0, routes(EVENT))
    assert out.counted == "routed"
    (send,) = out.sends
    assert (send.topic, send.key) == (intake.CONTROL, "s")
    assert (send.record.delivery.key, send.record.delivery.partition, send.record.delivery.offset) == (D.key, 2, 40)
    assert isinstance(out.store, DedupEntry)


def test_a_redelivery_inside_the_window_emits_nothing():
    entry = DedupEntry(T.timestamp(), T.timestamp() + 60, 2, 40)
    out = intake.process(D, entry, 2, 41, "deliveries", 60.0, routes(EVENT))
    assert (out.counted, out.sends, out.store) == ("duplicate", [], None)


def test_an_ignored_delivery_is_counted_with_its_rule_and_remembered():
    out = intake.process(D, None, 0, 1, "deliveries", 60.0, routes(ignored=Ignored("ping")))
    assert (out.counted, out.rule, out.sends) == ("ignored", "ping", [])
    assert isinstance(out.store, DedupEntry)


def test_a_routing_error_dead_letters_and_releases_the_key():
    def fail(d):
        raise RoutingError("body is not an event")

    entry = DedupEntry(0.0, 1.0, 0, 0)  # expired entry of an earlier sighting
    out = intake.process(D, entry, 0, 5, "deliveries", 60.0, fail)
    assert out.counted == "dead_lettered" and out.store is intake.DELETE
    assert out.sends[0].record.error == "body is not an event"


def test_a_plugin_bug_dead_letters_the_delivery_instead_of_stopping_the_stage():
    def bug(d):
        raise KeyError("repository")

    out = intake.process(D, None, 0, 5, "deliveries", 60.0, bug)
    assert out.counted == "dead_lettered"
    assert out.sends[0].record.error.startswith("KeyError in generic-hmac routing")


def test_an_unknown_instance_is_dead_lettered():
    out = intake.process(D, None, 0, 5, "deliveries", None, None)
    assert out.counted == "dead_lettered"
    assert "unknown instance generic-hmac/a" in out.sends[0].record.error


def test_an_accepted_redrive_confirms_after_its_routed_events():
    redrive = D.model_copy(update={"redrive_of": "dl-1"})
    out = intake.process(redrive, None, 0, 9, "deliveries", 60.0, routes(EVENT))
    assert [s.topic for s in out.sends] == [intake.CONTROL, intake.DLQ]
    assert out.sends[1].record.dead_letter_id == "dl-1"
