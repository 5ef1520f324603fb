"""What `hookstream replay deliveries` selects, checks and re-submits. Table-driven, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from app.core import delivery_replay as dr
from app.core.dedup import Action, decide
from app.events import Delivery, SyncRequested
from app.instances import InstanceConfig
from app.plugins.base import fallback_delivery_id

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=5)


def sync_request(request_id: str = "r-1") -> bytes:
    event = SyncRequested(source_id="src-1", occurred_at=T0, request_id=request_id, mode="full", trigger="producer")
    return orjson.dumps(event.model_dump(mode="json"))


def delivery(
    plugin: str = "generic-hmac",
    instance: str = "a",
    delivery_id: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    at: datetime = T0,
    **extra,
) -> Delivery:
    body = sync_request() if body is None else body
    if delivery_id is None:
        delivery_id = fallback_delivery_id(plugin, instance, None, body)
    return Delivery(
        delivery_id=delivery_id,
        plugin=plugin,
        instance=instance,
        received_at=at,
        headers=headers or {},
        body=body,
        **extra,
    )


def instance(plugin: str = "generic-hmac", id: str = "a", **options) -> InstanceConfig:
    return InstanceConfig(plugin=plugin, id=id, secrets=("s",), options=options)


INSTANCES = {
    ("generic-hmac", "a"): instance(),
    ("generic-hmac", "ids"): instance(id="ids", id_header="X-Request-Id"),
    ("generic-hmac", "broken"): instance(id="broken", algorithm="md5"),
    ("github", "a"): instance("github"),
    ("linear", "a"): instance("linear"),
    ("standard-webhooks", "a"): instance("standard-webhooks"),
}


@pytest.mark.parametrize(
    "name, key, d, resubmit, reason, origin, routing",
    [
        (
            "a producer delivery through the ingress",
            None,
            delivery(),
            True,
            "",
            dr.ID_FROM_BODY,
            "routes to 1 SyncRequested",
        ),
        (
            "an id from the instance's id header",
            None,
            delivery(instance="ids", delivery_id="req-9", headers={"x-request-id": "req-9"}),
            True,
            "",
            dr.ID_FROM_HEADER,
            "routes to 1 SyncRequested",
        ),
        (
            "an id written straight to Kafka",
            None,
            delivery(delivery_id="d-1"),
            True,
            "",
            dr.ID_OTHER,
            "routes to 1 SyncRequested",
        ),
        (
            "a github delivery with its id header, ignored by rule",
            None,
            delivery(
                "github", delivery_id="g-1", body=b"{}", headers={"x-github-event": "star", "x-github-delivery": "g-1"}
            ),
            True,
            "",
            dr.ID_FROM_HEADER,
            "ignored by rule star",
        ),
        (
            "a body that no longer routes is reported as a dead letter",
            None,
            delivery(body=b"not json"),
            True,
            "",
            dr.ID_FROM_BODY,
            "dead letter: RoutingError: body is not a hookstream producer event: not JSON",
        ),
        (
            "a standard-webhooks id",
            None,
            delivery("standard-webhooks", delivery_id="msg_1", headers={"webhook-id": "msg_1"}),
            True,
            "",
            dr.ID_FROM_HEADER,
            "routes to 1 SyncRequested",
        ),
        (
            "a linear delivery id",
            None,
            delivery("linear", delivery_id="l-1", body=b'{"type": "Cycle"}', headers={"linear-delivery": "l-1"}),
            True,
            "",
            dr.ID_FROM_HEADER,
            "ignored by rule linear.Cycle",
        ),
        (
            "a record key that is not the delivery's",
            "generic-hmac/a/other",
            delivery(),
            False,
            "record key 'generic-hmac/a/other' is not the delivery's",
            "",
            "",
        ),
        (
            "an instance no longer configured",
            None,
            delivery(instance="gone"),
            False,
            "instance generic-hmac/gone is not configured",
            "",
            "",
        ),
        ("an unknown plugin", None, delivery(plugin="gitlab", delivery_id="x"), False, "unknown plugin gitlab", "", ""),
        (
            "an instance with invalid options",
            None,
            delivery(instance="broken"),
            False,
            "instance generic-hmac/broken has invalid options",
            "",
            "",
        ),
    ],
)
def test_check(name, key, d, resubmit, reason, origin, routing):
    verdict = dr.check(d.key if key is None else key, d, INSTANCES)
    assert verdict.resubmit is resubmit, name
    assert verdict.reason.startswith(reason), (name, verdict.reason)
    assert (verdict.id_origin, verdict.routing[: len(routing) or None] if routing else verdict.routing) == (
        origin,
        routing,
    ), name


def test_a_changed_body_no_longer_matches_its_hashed_id():
    original = delivery()
    tampered = original.model_copy(update={"body": original.body + b" "})
    assert dr.id_origin(tampered, INSTANCES[("generic-hmac", "a")]) == dr.ID_OTHER


@pytest.mark.parametrize(
    "at, plugin, instance_id, in_range, matches",
    [
        (T0, None, None, True, True),
        (T0 - timedelta(microseconds=1), None, None, False, True),
        (T0 + timedelta(hours=1), None, None, False, True),  # the end is exclusive
        (T0 + timedelta(minutes=59), "generic-hmac", "a", True, True),
        (T0, "github", None, True, False),
        (T0, None, "b", True, False),
    ],
)
def test_selection(at, plugin, instance_id, in_range, matches):
    selection = dr.Selection(T0, T0 + timedelta(hours=1), plugin, instance_id)
    d = delivery(at=at)
    assert (selection.in_range(d), selection.matches(d)) == (in_range, matches)


def test_a_resubmission_keeps_key_body_and_headers_and_carries_the_epoch():
    original = delivery(instance="ids", delivery_id="req-9", headers={"x-request-id": "req-9"}, redrive_of="dl-1")
    again = dr.resubmission(original, "replay-e1", NOW)
    assert (again.key, again.body, again.headers) == (original.key, original.body, original.headers)
    assert (again.replay_epoch, again.redrive_of, again.received_at) == ("replay-e1", None, NOW)


def test_the_dedup_stage_routes_a_resubmission_once_per_epoch():
    """The contract with core.dedup: a new epoch routes once, inside or after the window."""
    original = delivery()
    first = decide(None, original.received_at.timestamp(), 3600, 0, 10)
    again = dr.resubmission(original, "replay-e1", T0 + timedelta(minutes=5))
    inside = decide(first.entry, again.received_at.timestamp(), 3600, 0, 20, replay_epoch=again.replay_epoch)
    assert inside.action is Action.ROUTE
    copy = decide(inside.entry, again.received_at.timestamp() + 1, 3600, 0, 21, replay_epoch=again.replay_epoch)
    assert copy.action is Action.DUPLICATE
    late = dr.resubmission(original, "replay-e2", NOW)  # after the window: routes, and remembers the epoch
    after = decide(inside.entry, late.received_at.timestamp(), 3600, 0, 30, replay_epoch=late.replay_epoch)
    assert after.action is Action.ROUTE and "replay-e2" in after.entry.epochs


def test_an_epoch_names_the_run_time_and_its_token():
    assert dr.new_epoch(NOW, "1a2b3c4d") == "replay-20261101T070000Z-1a2b3c4d"


def test_the_tally_counts_what_was_and_was_not_resubmitted():
    tally = dr.Tally(read=5, undecodable=1, repeated_key=1)
    gone = delivery(instance="gone")
    tally.count(dr.check(gone.key, gone, INSTANCES))
    d = delivery()
    tally.count(dr.check(d.key, d, INSTANCES))
    tally.resubmitted = 1
    dry = "\n".join(tally.lines(executed=False))
    assert "would be re-submitted 1" in dry
    assert "not re-submitted      1: instance generic-hmac/gone is not configured" in dry
    assert f"delivery id from      1: {dr.ID_FROM_BODY}" in dry
    assert "routing now           1: routes to 1 SyncRequested" in dry
    assert "re-submitted          1" in "\n".join(tally.lines(executed=True))
