"""The bounds of app/events/bounds.py, as every decoder sees them: bytes (the worker, POST /events) and
parsed JSON (`hookstream send event --kafka`). Each refusal names the field and the bound."""

from __future__ import annotations

import base64

import orjson
import pytest

from app import codec
from app.events import PRODUCER_EVENTS, ProducerEvent
from app.events.bounds import (
    MAX_CONFIG_BYTES,
    MAX_HEADER_VALUE_LENGTH,
    MAX_KEPT_HEADERS,
    MAX_PATH_HINTS,
    path_hints_fit,
)

REQUESTED = {
    "type": "sync.requested",
    "source_id": "git:demo",
    "occurred_at": "2024-01-01T00:00:00Z",
    "request_id": "r-1",
    "mode": "incremental",
    "trigger": "push",
    "paths": ["docs/a.md"],
    "before": "a" * 40,
    "after": "b" * 40,
}
CONNECTED = {
    "type": "source.connected",
    "source_id": "github:42",
    "occurred_at": "2024-01-01T00:00:00Z",
    "source_type": "github",
    "name": "octo-org/handbook",
    "config": {"repository": "octo-org/handbook", "installation_id": 7},
}
DISCONNECTED = {
    "type": "source.disconnected",
    "source_id": "github:42",
    "occurred_at": "2024-01-01T00:00:00Z",
    "reason": "manual",
}
CONFIG_CHANGED = {
    "type": "source.config_changed",
    "source_id": "git:demo",
    "occurred_at": "2024-01-01T00:00:00Z",
    "config_path": ".hookstream.yml",
    "commit": "c" * 40,
}
DELIVERY = {
    "type": "delivery",
    "delivery_id": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    "plugin": "github",
    "instance": "acme",
    "route": None,
    "received_at": "2024-01-01T00:00:00Z",
    "headers": {"x-github-event": "push"},
    "body": base64.b64encode(b"{}").decode(),
}

PRODUCER_TYPES = {model.model_fields["type"].default for model in PRODUCER_EVENTS}


def refusal(logical_topic: str, record: dict) -> str:
    with pytest.raises(codec.DecodeError) as bytes_error:
        codec.decode_topic(logical_topic, orjson.dumps(record))
    # A superseded record type (source.config_changed) still decodes on the topic, but producers cannot send it.
    if logical_topic == "hookstream.sync.control" and record["type"] in PRODUCER_TYPES:
        with pytest.raises(codec.DecodeError) as parsed_error:
            codec.validate(ProducerEvent, record)
        assert str(parsed_error.value) == str(bytes_error.value)
    return str(bytes_error.value)


def test_records_within_their_bounds_decode():
    for record in (REQUESTED, CONNECTED, DISCONNECTED, CONFIG_CHANGED):
        assert codec.decode_topic("hookstream.sync.control", orjson.dumps(record)).type == record["type"]
    assert codec.decode_topic("hookstream.deliveries", orjson.dumps(DELIVERY)).delivery_id == DELIVERY["delivery_id"]
    # Printable beyond ASCII is printable.
    assert (
        codec.validate(ProducerEvent, {**CONNECTED, "source_id": "git:café", "name": "Café — docs"}).name
        == "Café — docs"
    )


@pytest.mark.parametrize(
    "record, field, bound",
    [
        ({**REQUESTED, "source_id": "git:demo\n"}, "source_id", "no NUL, newline or escape"),
        ({**REQUESTED, "source_id": "git:\x1b[2Jdemo"}, "source_id", "escape"),
        ({**REQUESTED, "source_id": "git:\x00"}, "source_id", "NUL"),
        ({**REQUESTED, "source_id": "git:a\u202eb"}, "source_id", "printable"),  # a bidi override
        ({**REQUESTED, "source_id": "git: demo"}, "source_id", "without spaces"),
        ({**REQUESTED, "source_id": ""}, "source_id", "at least 1"),
        ({**REQUESTED, "source_id": "s" * 301}, "source_id", "at most 300"),
        ({**REQUESTED, "request_id": "r\r\n"}, "request_id", "newline"),
        ({**REQUESTED, "trigger": "push;rm"}, "trigger", "letters, digits and . _ : -"),
        ({**REQUESTED, "trigger": "t" * 65}, "trigger", "at most 64"),
        ({**REQUESTED, "before": "--output=/tmp/x y"}, "before", "without spaces"),
        ({**REQUESTED, "after": "a" * 256}, "after", "at most 255"),
        ({**REQUESTED, "paths": ["p"] * (MAX_PATH_HINTS + 1)}, "paths", f"at most {MAX_PATH_HINTS}"),
        ({**REQUESTED, "paths": ["p" * 1025]}, "paths", "at most 1024"),
        ({**REQUESTED, "paths": ["p" * 1000] * 200}, "paths", "bytes in total"),
        ({**REQUESTED, "paths": [""]}, "paths", "at least 1"),
        ({**REQUESTED, "schema_version": 2}, "schema_version", "Input should be 1"),
        ({**CONNECTED, "name": "two\nlines"}, "name", "one line"),
        ({**CONNECTED, "name": "n" * 201}, "name", "at most 200"),
        ({**CONNECTED, "config": {"pad": "x" * MAX_CONFIG_BYTES}}, "config", f"at most {MAX_CONFIG_BYTES} bytes"),
        ({**CONNECTED, "config": {"a": {"b": {"c": [[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]}}}}, "config", "deeper than 16"),
        ({**DISCONNECTED, "reason": "r" * 1001}, "reason", "at most 1000"),
        ({**DISCONNECTED, "reason": "bye\x07"}, "reason", "control characters"),
        ({**CONFIG_CHANGED, "config_path": "a\x00b"}, "config_path", "NUL"),
        ({**REQUESTED, "delivery": {"type": "delivery.ref", "key": "k\n", "offset": 1}}, "key", "newline"),
        (
            {**REQUESTED, "delivery": {"type": "delivery.ref", "key": "k", "offset": 2**63}},
            "offset",
            "less than or equal to",
        ),
    ],
)
def test_a_control_record_outside_a_bound_is_refused_naming_field_and_bound(record, field, bound):
    message = refusal("hookstream.sync.control", record)
    assert field in message and bound in message, message


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999"])
def test_a_number_json_cannot_hold_is_refused_not_rewritten_to_null(number):
    raw = orjson.dumps(CONNECTED).replace(b'"installation_id":7', b'"installation_id":' + number)
    with pytest.raises(codec.DecodeError, match=r"config.*`installation_id` is not finite"):
        codec.decode_topic("hookstream.sync.control", raw)


@pytest.mark.parametrize(
    "record, field, bound",
    [
        ({**DELIVERY, "delivery_id": "d\x00"}, "delivery_id", "NUL"),
        ({**DELIVERY, "delivery_id": "d" * 201}, "delivery_id", "at most 200"),
        ({**DELIVERY, "plugin": "GitHub"}, "plugin", "lower-case letters"),
        ({**DELIVERY, "instance": "a/b"}, "instance", "letters, digits and . _ -"),
        ({**DELIVERY, "route": "a\nb"}, "route", "letters, digits and . _ ~ -"),
        ({**DELIVERY, "route": "r" * 129}, "route", "at most 128"),
        (
            {**DELIVERY, "headers": {"x-github-event": "e" * (MAX_HEADER_VALUE_LENGTH + 1)}},
            "headers",
            f"at most {MAX_HEADER_VALUE_LENGTH}",
        ),
        ({**DELIVERY, "headers": {"x-github-event": "push\r\nx-forged: 1"}}, "headers", "without control characters"),
        ({**DELIVERY, "headers": {"X-Upper": "1"}}, "headers", "lower-case HTTP header name"),
        (
            {**DELIVERY, "headers": {f"x-h{i}": "v" for i in range(MAX_KEPT_HEADERS + 1)}},
            "headers",
            f"at most {MAX_KEPT_HEADERS}",
        ),
        ({**DELIVERY, "replay_epoch": "e p"}, "replay_epoch", "without spaces"),
        ({**DELIVERY, "schema_version": 0}, "schema_version", "Input should be 1"),
    ],
)
def test_a_delivery_record_outside_a_bound_is_refused(record, field, bound):
    message = refusal("hookstream.deliveries", record)
    assert field in message and bound in message, message


def test_path_hints_that_do_not_fit_are_said_so_for_callers_to_go_without():
    assert path_hints_fit(["docs/a.md"] * MAX_PATH_HINTS)
    assert not path_hints_fit(["docs/a.md"] * (MAX_PATH_HINTS + 1))
    assert not path_hints_fit(["docs/a\nb.md"])
    assert not path_hints_fit(["d" * 1000] * 200)  # 200 kB of hints


def test_a_push_with_more_changed_paths_than_a_request_carries_syncs_incrementally_without_hints():
    from tests.unit.test_plugins_routing import commits, payload, route_github

    one = payload("push_several_commits")["commits"][0]
    wide = [
        dict(one, id=f"{i:040x}", added=[f"docs/{i}-{j}.md" for j in range(300)], modified=[], removed=[])
        for i in range(10)
    ]
    [request] = route_github("push", payload("push_several_commits", commits=wide)).events
    assert (request.mode, request.paths) == ("incremental", [])  # 3000 paths: the diff decides
    [request] = route_github("push", payload("push_several_commits", commits=commits(3))).events
    assert (request.mode, len(request.paths)) == ("incremental", 3)


@pytest.mark.parametrize("plugin", ["standard-webhooks", "generic-hmac"])
def test_a_signed_producer_event_outside_its_bounds_is_dead_lettered_by_routing_naming_the_bound(plugin):
    from datetime import UTC, datetime

    from app.events import Delivery
    from app.plugins import PLUGINS, RoutingError
    from app.settings import InstanceConfig

    body = orjson.dumps({**CONNECTED, "name": "n" * 900_000})
    delivery = Delivery(delivery_id="d-1", plugin=plugin, instance="acme", received_at=datetime.now(UTC), body=body)
    with pytest.raises(RoutingError, match="name.*at most 200"):
        PLUGINS[plugin].route(delivery, InstanceConfig(plugin=plugin, id="acme", secrets=("s",)))
