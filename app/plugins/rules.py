"""Routing rules for senders whose payloads hookstream does not know (standard-webhooks, generic-hmac).

An instance's `options.rules` is an ordered list; the first rule whose every
`match` condition holds decides:

- `sync`: a `SyncRequested` for the source id made from `source_id`, a template
  whose `{/json/pointer}` parts are replaced by body values (e.g.
  `"billing:{/data/account_id}"`), with `mode` (`incremental` default, `full`),
  `trigger` (default `webhook`), hint paths from the `paths` pointer (a list of
  strings or one string) and `after` from the `after` pointer. Its request id is
  the delivery id, so a redelivery asks for the same request.
- `ignore`: counted under `<instance>.<rule name>`.
- `producer-event`: the body is a hookstream producer event, routed as itself.

A condition reads one `header` (case-insensitive name) or one `pointer` (RFC 6901,
into the JSON body) and tests it with one of `equals` (the same JSON value),
`prefix` or `glob` (strings only; `*`, `?`, `[...]` as in shell patterns) or
`present` (true/false). A value that is absent, or a body that is not JSON,
matches nothing but `present = false`.

A delivery no rule matches is ignored under `<instance>.unmatched`, or
dead-lettered with `unmatched = "dead-letter"`. Without `rules` every body is a
hookstream producer event, as before rules existed.

Invariants: rules are parsed and validated from the instance's options
(`rule_set`, called at start through `validate_options`), and a bad rule names
the instance and the rule; rule names become metric labels, so labels are bounded
by the configuration and never hold a sender-chosen value; routing is a pure
function of the delivery and the instance.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from app.events import Delivery, DeliveryRef, SyncMode, SyncRequested
from app.instances import ConfigError, InstanceConfig
from app.plugins.base import Ignored, Routed, RoutingError
from app.plugins.payloads import json_object
from app.plugins.producer_events import route_producer_event

Action = Literal["sync", "ignore", "producer-event"]
ACTIONS = ("sync", "ignore", "producer-event")
TESTS = ("equals", "prefix", "glob", "present")
RULE_KEYS = {"name", "match", "action", "source_id", "mode", "trigger", "paths", "after"}
UNMATCHED_RULE = "unmatched"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")  # an HTTP token (RFC 9110)
# A body value put into a source id or a hint: visible ASCII, bounded (it becomes a Kafka key).
_TEMPLATE_VALUE = re.compile(r"[\x21-\x7e]{1,200}")
_MISSING = object()


@dataclass(frozen=True)
class Condition:
    header: str | None  # lower-cased
    pointer: str | None
    test: str
    value: Any

    def holds(self, headers: Mapping[str, str], body: dict[str, Any] | None) -> bool:
        if self.header is not None:
            found: Any = headers.get(self.header, _MISSING)
        else:
            found = _MISSING if body is None else resolve_pointer(body, self.pointer or "")
        if self.test == "present":
            return (found is not _MISSING) is self.value
        if found is _MISSING:
            return False
        if self.test == "equals":
            return same_json(found, self.value)
        if not isinstance(found, str):
            return False
        return found.startswith(self.value) if self.test == "prefix" else fnmatch.fnmatchcase(found, self.value)


@dataclass(frozen=True)
class Rule:
    name: str
    conditions: tuple[Condition, ...]
    action: Action
    source_id: tuple[str | tuple[str], ...] = ()  # literal text, or (pointer,)
    mode: SyncMode = "incremental"
    trigger: str = "webhook"
    paths: str | None = None
    after: str | None = None

    def matches(self, headers: Mapping[str, str], body: dict[str, Any] | None) -> bool:
        return all(c.holds(headers, body) for c in self.conditions)


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    unmatched: Literal["ignore", "dead-letter"]
    headers: tuple[str, ...]  # every header a rule reads (lower-cased): verify keeps them
    configured: bool  # False: no `rules` option, every body is a producer event


# --- JSON values ------------------------------------------------------------------------


def resolve_pointer(document: Any, pointer: str) -> Any:
    """The value at an RFC 6901 pointer, or `_MISSING`. `""` is the whole document."""
    if pointer == "":
        return document
    current = document
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(current, dict):
            if token not in current:
                return _MISSING
            current = current[token]
        elif isinstance(current, list):
            if not token.isdigit() or (len(token) > 1 and token.startswith("0")) or int(token) >= len(current):
                return _MISSING
            current = current[int(token)]
        else:
            return _MISSING
    return current


def same_json(a: Any, b: Any) -> bool:
    """JSON equality: `true` is not `1`, `1` is `1.0`."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


# --- parsing and validation -------------------------------------------------------------


def rule_set(instance: InstanceConfig) -> RuleSet:
    """The instance's rules, validated (cached per options); ConfigError naming instance and rule."""
    return _parse(instance.plugin, instance.id, orjson.dumps(instance.options, option=orjson.OPT_SORT_KEYS))


@lru_cache(maxsize=256)
def _parse(plugin: str, instance_id: str, options_json: bytes) -> RuleSet:
    options = orjson.loads(options_json)
    where = f"instance {plugin}/{instance_id} options"
    unmatched = options.get("unmatched", "ignore")
    if unmatched not in ("ignore", "dead-letter"):
        raise ConfigError(f"{where}.unmatched: {unmatched!r} is not one of ignore, dead-letter")
    if "rules" not in options:
        if "unmatched" in options:
            raise ConfigError(f"{where}.unmatched: applies only with options.rules")
        return RuleSet((), "ignore", (), configured=False)
    raw_rules = options["rules"]
    if not isinstance(raw_rules, list) or not raw_rules:
        raise ConfigError(f"{where}.rules: must be a non-empty array of tables ([[instance.options.rules]])")
    rules: list[Rule] = []
    for index, raw in enumerate(raw_rules):
        name = raw.get("name") if isinstance(raw, dict) else None
        label = f"{where}.rules[{index}]" + (f" ({name!r})" if isinstance(name, str) else "")
        rule = _rule(raw, label)
        if rule.name == UNMATCHED_RULE or any(r.name == rule.name for r in rules):
            raise ConfigError(
                f"{label}.name: {rule.name!r} is taken (by another rule or the default {UNMATCHED_RULE!r})"
            )
        rules.append(rule)
    headers = tuple(sorted({c.header for r in rules for c in r.conditions if c.header is not None}))
    return RuleSet(tuple(rules), unmatched, headers, configured=True)


def _rule(raw: Any, label: str) -> Rule:
    if not isinstance(raw, dict):
        raise ConfigError(f"{label}: must be a table")
    unknown = sorted(set(raw) - RULE_KEYS)
    if unknown:
        raise ConfigError(f"{label}: unknown key(s) {unknown}; a rule has {sorted(RULE_KEYS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{label}.name: required, 1 to 64 letters, digits, '_' or '-' (it names the rule's metric)")
    action = raw.get("action")
    if action not in ACTIONS:
        raise ConfigError(f"{label}.action: {action!r} is not one of {', '.join(ACTIONS)}")
    matches = raw.get("match", [])
    if isinstance(matches, dict):
        matches = [matches]
    if not isinstance(matches, list):
        raise ConfigError(f"{label}.match: must be a table or an array of tables")
    conditions = tuple(_condition(m, f"{label}.match[{i}]") for i, m in enumerate(matches))
    sync_keys = [k for k in ("source_id", "mode", "trigger", "paths", "after") if k in raw]
    if action != "sync":
        if sync_keys:
            raise ConfigError(f"{label}.{sync_keys[0]}: only a `sync` rule takes it")
        return Rule(name, conditions, action)
    template = raw.get("source_id")
    if not isinstance(template, str) or not template:
        raise ConfigError(
            f'{label}.source_id: a sync rule needs a source id template, e.g. "billing:{{/data/account_id}}"'
        )
    mode = raw.get("mode", "incremental")
    if mode not in ("incremental", "full"):
        raise ConfigError(f"{label}.mode: {mode!r} is not one of incremental, full")
    trigger = raw.get("trigger", "webhook")
    if not isinstance(trigger, str) or not 1 <= len(trigger) <= 64:
        raise ConfigError(f"{label}.trigger: must be a string of 1 to 64 characters")
    if mode == "full" and "paths" in raw:
        raise ConfigError(f"{label}.paths: a full sync lists everything; hint paths are for mode incremental")
    return Rule(
        name,
        conditions,
        "sync",
        _template(template, f"{label}.source_id"),
        mode,
        trigger,
        _pointer_option(raw, "paths", label),
        _pointer_option(raw, "after", label),
    )


def _condition(raw: Any, label: str) -> Condition:
    if not isinstance(raw, dict):
        raise ConfigError(f'{label}: must be a table like {{ pointer = "/type", equals = "invoice.paid" }}')
    subjects = [k for k in ("header", "pointer") if k in raw]
    tests = [k for k in TESTS if k in raw]
    unknown = sorted(set(raw) - {"header", "pointer", *TESTS})
    if unknown:
        raise ConfigError(
            f"{label}: unknown key(s) {unknown}; a condition has header or pointer, and one of {', '.join(TESTS)}"
        )
    if len(subjects) != 1:
        raise ConfigError(f"{label}: give exactly one of header, pointer")
    if len(tests) != 1:
        raise ConfigError(f"{label}: give exactly one of {', '.join(TESTS)}")
    test, value = tests[0], raw[tests[0]]
    if test in ("prefix", "glob") and not isinstance(value, str):
        raise ConfigError(f"{label}.{test}: must be a string")
    if test == "present" and not isinstance(value, bool):
        raise ConfigError(f"{label}.present: must be true or false")
    if subjects[0] == "header":
        header = raw["header"]
        if not isinstance(header, str) or not _HEADER.fullmatch(header):
            raise ConfigError(f"{label}.header: must be an HTTP header name")
        if test == "equals" and not isinstance(value, str):
            raise ConfigError(f"{label}.equals: a header's value is a string")
        return Condition(header.lower(), None, test, value)
    return Condition(None, _pointer(raw["pointer"], f"{label}.pointer"), test, value)


def _pointer(value: Any, label: str) -> str:
    if not isinstance(value, str) or (value and not value.startswith("/")):
        raise ConfigError(f"{label}: a JSON pointer starts with '/' (RFC 6901), e.g. \"/data/id\"")
    if re.search(r"~(?![01])", value):
        raise ConfigError(f"{label}: '~' must be written ~0 and '/' inside a key ~1 (RFC 6901)")
    return value


def _pointer_option(raw: dict[str, Any], key: str, label: str) -> str | None:
    return _pointer(raw[key], f"{label}.{key}") if key in raw else None


def _template(template: str, label: str) -> tuple[str | tuple[str], ...]:
    parts: list[str | tuple[str]] = []
    rest = template
    while rest:
        start = rest.find("{")
        end = rest.find("}")
        if start < 0:
            if end >= 0:
                raise ConfigError(f"{label}: a '}}' without its '{{'")
            parts.append(rest)
            break
        if end < start:
            raise ConfigError(f"{label}: a '{{' without its '}}'" if end < 0 else f"{label}: a '}}' without its '{{'")
        if start:
            parts.append(rest[:start])
        parts.append((_pointer(rest[start + 1 : end], f"{label} {{...}}"),))
        rest = rest[end + 1 :]
    return tuple(parts)


def kept_headers(instance: InstanceConfig, headers: Mapping[str, str]) -> dict[str, str]:
    """The headers the instance's rules read, to keep in the delivery record (lower-cased names)."""
    return {name: headers[name] for name in rule_set(instance).headers if name in headers}


# --- routing ----------------------------------------------------------------------------


def route_by_rules(delivery: Delivery, instance: InstanceConfig) -> Routed:
    """What the first matching rule says; the unmatched default otherwise. RoutingError dead-letters."""
    try:
        rules = rule_set(instance)
    except ConfigError as exc:
        # validate_options was not run or not heeded: dead-letter, redrive after the fix.
        raise RoutingError(f"cannot route with this instance's options: {exc}") from None
    if not rules.configured:
        return route_producer_event(delivery)
    body = json_object(delivery.body)
    for rule in rules.rules:
        if rule.matches(delivery.headers, body):
            return _apply(rule, delivery, instance, body)
    if rules.unmatched == "dead-letter":
        raise RoutingError(
            f'no rule of {instance.plugin}/{instance.id} matches this delivery (options.unmatched = "dead-letter")'
        )
    return Routed(ignored=Ignored(f"{instance.id}.{UNMATCHED_RULE}"))


def _apply(rule: Rule, delivery: Delivery, instance: InstanceConfig, body: dict[str, Any] | None) -> Routed:
    if rule.action == "ignore":
        return Routed(ignored=Ignored(f"{instance.id}.{rule.name}"))
    if rule.action == "producer-event":
        return route_producer_event(delivery)
    if body is None and (any(isinstance(p, tuple) for p in rule.source_id) or rule.paths or rule.after):
        raise RoutingError(f"rule {rule.name!r}: the body is not a JSON object, so its fields cannot be read")
    source_id = "".join(p if isinstance(p, str) else _text(rule, body, p[0]) for p in rule.source_id)
    try:
        request = SyncRequested(
            source_id=source_id,
            occurred_at=delivery.received_at,
            delivery=DeliveryRef(key=delivery.key),
            request_id=delivery.delivery_id,
            mode=rule.mode,
            trigger=rule.trigger,
            paths=_paths(rule, body) if rule.paths else [],
            after=_text(rule, body, rule.after, required=False) if rule.after else None,
        )
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        raise RoutingError(
            f"rule {rule.name!r} makes no valid sync request: {'.'.join(map(str, err['loc']))}: {err['msg']}"
        ) from None
    return Routed(events=(request,))


def _text(rule: Rule, body: Any, pointer: str, required: bool = True) -> Any:
    value = resolve_pointer(body, pointer)
    if value is _MISSING:
        if not required:
            return None
        raise RoutingError(f"rule {rule.name!r}: the body has no {pointer}")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _TEMPLATE_VALUE.fullmatch(value):
        raise RoutingError(
            f"rule {rule.name!r}: {pointer} is not a string or integer of 1 to 200 visible ASCII characters"
        )
    return value


def _paths(rule: Rule, body: Any) -> list[str]:
    value = resolve_pointer(body, rule.paths or "")
    if value is _MISSING:
        return []  # no hints: the adapter lists whatever changed
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise RoutingError(f"rule {rule.name!r}: {rule.paths} is not a path or a list of paths")
    return value
