"""Routing rules for standard-webhooks and generic-hmac instances: table-driven, pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from app.events import Delivery, DeliveryRef, SyncRequested
from app.instances import ConfigError, InstanceConfig
from app.plugins import PLUGINS
from app.plugins.base import Ignored, Routed, RoutingError
from app.plugins.rules import resolve_pointer, rule_set, same_json
from app.settings import Settings

RECEIVED_AT = datetime(2024, 5, 2, 10, 21, 7, tzinfo=UTC)
RULE_PLUGINS = ("standard-webhooks", "generic-hmac")
INVOICE = {
    "type": "invoice.paid",
    "data": {"account": {"id": "acct_42"}, "files": ["a.md", "b/c.md"], "rev": 7, "ok": True},
}

INVOICES = {
    "name": "invoices",
    "match": {"pointer": "/type", "glob": "invoice.*"},
    "action": "sync",
    "source_id": "billing:{/data/account/id}",
    "paths": "/data/files",
    "after": "/data/rev",
}
PINGS = {"name": "pings", "match": {"header": "X-Event-Kind", "equals": "ping"}, "action": "ignore"}
PRODUCER = {"name": "ours", "match": {"pointer": "/type", "prefix": "sync."}, "action": "producer-event"}


def instance(plugin: str = "standard-webhooks", **options: Any) -> InstanceConfig:
    return InstanceConfig(plugin=plugin, id="billing", secrets=("s",), options=options)


def delivery(body: object, headers: dict[str, str] | None = None, plugin: str = "standard-webhooks") -> Delivery:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Delivery(
        delivery_id="msg_1", plugin=plugin, instance="billing", received_at=RECEIVED_AT, headers=headers or {}, body=raw
    )


def route(
    body: object,
    *rules: dict[str, Any],
    headers: dict[str, str] | None = None,
    plugin: str = "standard-webhooks",
    **options: Any,
) -> Routed:
    return PLUGINS[plugin].route(delivery(body, headers, plugin), instance(plugin, rules=list(rules), **options))


def sync(
    source_id: str, mode: str = "incremental", paths: list[str] = (), after: str | None = None, trigger: str = "webhook"
) -> SyncRequested:
    return SyncRequested(
        source_id=source_id,
        occurred_at=RECEIVED_AT,
        delivery=DeliveryRef(key="standard-webhooks/billing/msg_1"),
        request_id="msg_1",
        mode=mode,
        trigger=trigger,
        paths=list(paths),
        after=after,
    )


# --- matching --------------------------------------------------------------------------------


def when(**condition: Any) -> dict[str, Any]:
    return {"name": "hit", "match": condition, "action": "ignore"}


MATCHES = [
    # test id, body, headers, condition, matches
    ("pointer equals a string", INVOICE, {}, {"pointer": "/type", "equals": "invoice.paid"}, True),
    ("pointer equals is exact", INVOICE, {}, {"pointer": "/type", "equals": "invoice"}, False),
    ("pointer equals a number", INVOICE, {}, {"pointer": "/data/rev", "equals": 7}, True),
    ("a number equals the same number written as a float", INVOICE, {}, {"pointer": "/data/rev", "equals": 7.0}, True),
    ("true is not 1", {"flag": True}, {}, {"pointer": "/flag", "equals": 1}, False),
    ("a boolean equals a boolean", INVOICE, {}, {"pointer": "/data/ok", "equals": True}, True),
    ("a number is not its string", INVOICE, {}, {"pointer": "/data/rev", "equals": "7"}, False),
    ("pointer prefix", INVOICE, {}, {"pointer": "/type", "prefix": "invoice."}, True),
    ("prefix of a non-string never matches", INVOICE, {}, {"pointer": "/data/rev", "prefix": "7"}, False),
    ("pointer glob", INVOICE, {}, {"pointer": "/type", "glob": "*.paid"}, True),
    ("glob is case-sensitive", INVOICE, {}, {"pointer": "/type", "glob": "INVOICE.*"}, False),
    ("glob character class", INVOICE, {}, {"pointer": "/type", "glob": "invoice.[pq]aid"}, True),
    ("an array element by index", INVOICE, {}, {"pointer": "/data/files/1", "equals": "b/c.md"}, True),
    ("an index past the end is absent", INVOICE, {}, {"pointer": "/data/files/2", "present": False}, True),
    ("an escaped slash in a key", {"a/b": "x"}, {}, {"pointer": "/a~1b", "equals": "x"}, True),
    ("an escaped tilde in a key", {"m~n": "x"}, {}, {"pointer": "/m~0n", "equals": "x"}, True),
    ("present true on a value", INVOICE, {}, {"pointer": "/data/account", "present": True}, True),
    ("present true on an absent value", INVOICE, {}, {"pointer": "/nope", "present": True}, False),
    ("an absent value matches no test", INVOICE, {}, {"pointer": "/nope", "equals": "x"}, False),
    (
        "a header equals (name case-insensitive)",
        INVOICE,
        {"x-event-kind": "ping"},
        {"header": "X-Event-Kind", "equals": "ping"},
        True,
    ),
    (
        "a header value is case-sensitive",
        INVOICE,
        {"x-event-kind": "PING"},
        {"header": "x-event-kind", "equals": "ping"},
        False,
    ),
    (
        "a header prefix",
        INVOICE,
        {"x-event-kind": "invoice.paid"},
        {"header": "X-Event-Kind", "prefix": "invoice."},
        True,
    ),
    ("a header glob", INVOICE, {"x-event-kind": "invoice.paid"}, {"header": "X-Event-Kind", "glob": "invoice.*"}, True),
    ("a missing header", INVOICE, {}, {"header": "X-Event-Kind", "present": False}, True),
    ("a body that is not JSON matches no pointer", b"<xml/>", {}, {"pointer": "/type", "glob": "*"}, False),
    ("the whole document", "just a string", {}, {"pointer": "", "present": True}, False),  # not an object: no body
]


@pytest.mark.parametrize("body, headers, condition, matches", [m[1:] for m in MATCHES], ids=[m[0] for m in MATCHES])
@pytest.mark.parametrize("plugin", RULE_PLUGINS)
def test_a_condition_matches(plugin, body, headers, condition, matches):
    routed = route(body, when(**condition), headers=headers, plugin=plugin)
    assert routed.ignored == Ignored("billing.hit" if matches else "billing.unmatched")


def test_every_condition_of_a_rule_must_hold():
    rule = {
        "name": "both",
        "match": [{"pointer": "/type", "prefix": "invoice."}, {"header": "X-Live", "equals": "1"}],
        "action": "ignore",
    }
    assert route(INVOICE, rule, headers={"x-live": "1"}).ignored == Ignored("billing.both")
    assert route(INVOICE, rule, headers={"x-live": "0"}).ignored == Ignored("billing.unmatched")


def test_a_rule_without_conditions_matches_everything():
    assert route(b"anything", {"name": "all", "action": "ignore"}).ignored == Ignored("billing.all")


# --- actions ---------------------------------------------------------------------------------

ACTIONS = [
    (
        "a sync rule makes a request for the templated source, with hints and after",
        INVOICE,
        {},
        [INVOICES, PINGS],
        [sync("billing:acct_42", paths=["a.md", "b/c.md"], after="7")],
    ),
    (
        "a sync rule without a hint pointer asks with no hints",
        INVOICE,
        {},
        [{**INVOICES, "paths": "/data/none"}],
        [sync("billing:acct_42", after="7")],
    ),
    (
        "a hint pointer to one string is one hint",
        {**INVOICE, "path": "x.md"},
        {},
        [{**INVOICES, "paths": "/path", "after": "/nope"}],
        [sync("billing:acct_42", paths=["x.md"])],
    ),
    (
        "a full sync rule with its own trigger",
        INVOICE,
        {},
        [{"name": "all", "action": "sync", "source_id": "git:handbook", "mode": "full", "trigger": "invoice"}],
        [sync("git:handbook", mode="full", trigger="invoice")],
    ),
    (
        "a template of several fields and literals",
        INVOICE,
        {},
        [{"name": "t", "action": "sync", "source_id": "acct/{/data/account/id}/rev{/data/rev}"}],
        [sync("acct/acct_42/rev7")],
    ),
    (
        "an ignore rule is counted under instance and rule",
        INVOICE,
        {"x-event-kind": "ping"},
        [PINGS, INVOICES],
        Ignored("billing.pings"),
    ),
    (
        "the first matching rule wins",
        INVOICE,
        {"x-event-kind": "ping"},
        [INVOICES, PINGS],
        [sync("billing:acct_42", paths=["a.md", "b/c.md"], after="7")],
    ),
    (
        "what no rule matches is ignored by the default rule",
        {"type": "customer.created"},
        {},
        [INVOICES, PINGS],
        Ignored("billing.unmatched"),
    ),
]


@pytest.mark.parametrize("body, headers, rules, expected", [a[1:] for a in ACTIONS], ids=[a[0] for a in ACTIONS])
def test_a_rule_routes(body, headers, rules, expected):
    routed = route(body, *rules, headers=headers)
    assert (routed.ignored if isinstance(expected, Ignored) else list(routed.events)) == expected


@pytest.mark.parametrize("plugin", RULE_PLUGINS)
def test_the_producer_event_action_routes_hookstream_events_as_themselves(plugin):
    event = {
        "type": "sync.requested",
        "source_id": "git:handbook",
        "occurred_at": "2024-05-02T10:00:00Z",
        "request_id": "r-1",
        "mode": "full",
        "trigger": "manual",
    }
    (routed,) = route(event, PRODUCER, INVOICES, plugin=plugin).events
    assert (routed.type, routed.source_id, routed.request_id) == ("sync.requested", "git:handbook", "r-1")


@pytest.mark.parametrize("plugin", RULE_PLUGINS)
def test_without_rules_every_body_is_a_producer_event_as_before(plugin):
    with pytest.raises(RoutingError, match="not a hookstream producer event"):
        PLUGINS[plugin].route(delivery(INVOICE, plugin=plugin), instance(plugin))


def test_unmatched_can_dead_letter_instead():
    with pytest.raises(RoutingError, match="no rule of standard-webhooks/billing matches"):
        route({"type": "customer.created"}, INVOICES, unmatched="dead-letter")


ROUTING_ERRORS = [
    ("a template field missing from the body", {"type": "invoice.paid"}, "the body has no /data/account/id"),
    (
        "a template field that is an object",
        {"type": "invoice.paid", "data": {"account": {"id": {"x": 1}}}},
        "not a string or integer",
    ),
    ("a template field with a space", {"type": "invoice.paid", "data": {"account": {"id": "a b"}}}, "visible ASCII"),
    (
        "hints that are not paths",
        {**INVOICE, "data": {**INVOICE["data"], "files": [1, 2]}},
        "not a path or a list of paths",
    ),
]


@pytest.mark.parametrize("body, reason", [e[1:] for e in ROUTING_ERRORS], ids=[e[0] for e in ROUTING_ERRORS])
def test_a_sync_rule_that_cannot_read_the_body_dead_letters_with_the_reason(body, reason):
    with pytest.raises(RoutingError, match=reason):
        route(body, INVOICES)


def test_a_sync_rule_on_a_body_that_is_not_json_dead_letters():
    rule = {"name": "any", "action": "sync", "source_id": "billing:{/id}"}
    with pytest.raises(RoutingError, match="not a JSON object"):
        route(b"not json", rule)


def test_a_templated_source_id_longer_than_the_model_allows_dead_letters():
    rule = {"name": "long", "action": "sync", "source_id": "x" * 150 + "{/id}"}
    with pytest.raises(RoutingError, match="makes no valid sync request: source_id"):
        route({"id": "y" * 200}, rule)


def test_rule_names_are_bounded_by_the_configuration_whatever_the_sender_sends():
    invoices = {"name": "inv", "match": {"pointer": "/type", "prefix": "invoice."}, "action": "ignore"}
    names = {route({"type": f"invoice.{i}"}, invoices).ignored.rule for i in range(50)}
    names |= {route({"type": f"other.{i}"}, invoices).ignored.rule for i in range(50)}
    assert names == {"billing.inv", "billing.unmatched"}


# --- validation ------------------------------------------------------------------------------

BAD_RULES = [
    ("rules not a list", {"rules": {"name": "x"}}, r"rules: must be a non-empty array"),
    ("unmatched unknown", {"rules": [PINGS], "unmatched": "drop"}, r"unmatched: 'drop' is not one of"),
    ("unmatched without rules", {"unmatched": "ignore"}, r"unmatched: applies only with options.rules"),
    ("no name", {"rules": [{"action": "ignore"}]}, r"rules\[0\].name: required"),
    ("a name with a dot", {"rules": [{"name": "a.b", "action": "ignore"}]}, r"rules\[0\] \('a.b'\).name"),
    ("a duplicate name", {"rules": [PINGS, PINGS]}, r"rules\[1\] \('pings'\).name: 'pings' is taken"),
    ("the default's name", {"rules": [{"name": "unmatched", "action": "ignore"}]}, r"'unmatched' is taken"),
    (
        "an unknown action",
        {"rules": [{"name": "x", "action": "drop"}]},
        r"\('x'\).action: 'drop' is not one of sync, ignore",
    ),
    (
        "an unknown key",
        {"rules": [{"name": "x", "action": "ignore", "sourceid": "a"}]},
        r"\('x'\): unknown key\(s\) \['sourceid'\]",
    ),
    ("sync without a source id", {"rules": [{"name": "x", "action": "sync"}]}, r"\('x'\).source_id: a sync rule needs"),
    (
        "a source id on an ignore rule",
        {"rules": [{"name": "x", "action": "ignore", "source_id": "a"}]},
        r"\('x'\).source_id: only a `sync` rule",
    ),
    ("an unknown mode", {"rules": [{**INVOICES, "mode": "partial"}]}, r"\('invoices'\).mode: 'partial'"),
    (
        "hints on a full sync",
        {"rules": [{**INVOICES, "mode": "full"}]},
        r"\('invoices'\).paths: a full sync lists everything",
    ),
    (
        "an unclosed template field",
        {"rules": [{**INVOICES, "source_id": "billing:{/data"}]},
        r"source_id: a '\{' without its '\}'",
    ),
    (
        "a stray closing brace",
        {"rules": [{**INVOICES, "source_id": "billing:}x"}]},
        r"source_id: a '\}' without its '\{'",
    ),
    (
        "a template field that is not a pointer",
        {"rules": [{**INVOICES, "source_id": "billing:{data}"}]},
        r"a JSON pointer starts with '/'",
    ),
    (
        "a condition with two subjects",
        {"rules": [when(header="X-A", pointer="/a", equals="x")]},
        r"match\[0\]: give exactly one of header, pointer",
    ),
    (
        "a condition with two tests",
        {"rules": [when(pointer="/a", equals="x", prefix="y")]},
        r"match\[0\]: give exactly one of equals",
    ),
    ("a condition with no test", {"rules": [when(pointer="/a")]}, r"match\[0\]: give exactly one of equals"),
    ("a glob that is not a string", {"rules": [when(pointer="/a", glob=3)]}, r"match\[0\].glob: must be a string"),
    (
        "present that is not a boolean",
        {"rules": [when(pointer="/a", present="yes")]},
        r"match\[0\].present: must be true or false",
    ),
    (
        "a header name with a space",
        {"rules": [when(header="X Event", equals="x")]},
        r"match\[0\].header: must be an HTTP header name",
    ),
    (
        "a header compared with a number",
        {"rules": [when(header="X-N", equals=3)]},
        r"match\[0\].equals: a header's value is a string",
    ),
    ("a bad tilde escape", {"rules": [when(pointer="/a~2", equals="x")]}, r"'~' must be written ~0"),
    (
        "an unknown condition key",
        {"rules": [when(pointer="/a", equal="x")]},
        r"match\[0\]: unknown key\(s\) \['equal'\]",
    ),
]


@pytest.mark.parametrize("options, message", [b[1:] for b in BAD_RULES], ids=[b[0] for b in BAD_RULES])
@pytest.mark.parametrize("plugin", RULE_PLUGINS)
def test_a_bad_rule_fails_validation_naming_the_instance_and_the_rule(plugin, options, message):
    with pytest.raises(ConfigError, match=rf"instance {plugin}/billing options\.?.*{message}"):
        PLUGINS[plugin].validate_options(instance(plugin, **options))


def test_a_bad_rule_in_the_instances_file_stops_start_naming_the_file_instance_and_rule(tmp_path):
    path = tmp_path / "instances.toml"
    path.write_text(
        '[[instance]]\nplugin = "standard-webhooks"\nid = "billing"\nsecret = "whsec_c2VjcmV0"\n'
        '[[instance.options.rules]]\nname = "invoices"\naction = "sync"\n'
        '[[instance.options.rules.match]]\npointer = "/type"\nglob = "invoice.*"\n'
    )
    with pytest.raises(ConfigError) as caught:
        Settings(instances_file=path).instances()
    assert str(caught.value).startswith(
        f"{path}: instance standard-webhooks/billing options.rules[0] ('invoices').source_id"
    )


def test_rules_written_as_toml_tables_load_and_route(tmp_path):
    path = tmp_path / "instances.toml"
    path.write_text(
        '[[instance]]\nplugin = "generic-hmac"\nid = "billing"\nsecret = "s"\n'
        '[instance.options]\nscheme = "stripe"\nunmatched = "ignore"\n'
        '[[instance.options.rules]]\nname = "invoices"\naction = "sync"\nsource_id = "billing:{/data/account/id}"\n'
        'match = [{ pointer = "/type", glob = "invoice.*" }]\n'
        '[[instance.options.rules]]\nname = "pings"\naction = "ignore"\nmatch = { header = "X-Event-Kind", equals = "ping" }\n'
    )
    (inst,) = Settings(instances_file=path).instances().values()
    assert [r.name for r in rule_set(inst).rules] == ["invoices", "pings"]
    (event,) = PLUGINS["generic-hmac"].route(delivery(INVOICE, plugin="generic-hmac"), inst).events
    assert event.source_id == "billing:acct_42"


@pytest.mark.parametrize("plugin", RULE_PLUGINS)
def test_verify_keeps_the_headers_rules_read_so_routing_and_replays_see_them(plugin):
    inst = instance(plugin, rules=[PINGS, when(header="X-Other", present=True)])
    secret_inst = inst.model_copy(update={"secrets": inst.secrets})
    headers = {k.lower(): v for k, v in PLUGINS[plugin].sign(b"{}", secret_inst, 1_714_650_000).items()}
    headers.update({"x-event-kind": "ping", "x-unrelated": "1"})
    kept = PLUGINS[plugin].verify(b"{}", headers, inst, None, 1_714_650_000).headers
    assert kept["x-event-kind"] == "ping" and "x-unrelated" not in kept and "x-other" not in kept


def test_pointer_and_json_equality_helpers():
    assert resolve_pointer({"a": [{"b": 1}]}, "/a/0/b") == 1
    assert resolve_pointer({"a": [1, 2]}, "/a/01") != 2  # leading zeros are not indexes (RFC 6901)
    assert same_json(1, 1.0) and not same_json(True, 1) and not same_json("1", 1)
