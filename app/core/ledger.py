"""The delivery ledger, pure: the outcome record of each consumed copy, and the rows it makes.

The dedup stage publishes one `DeliveryOutcome` per copy it consumes
(`outcome_fields`); the ledger projection folds them into two tables:

- `delivery_copies`, one row per copy, keyed by where the copy is in
  `hookstream.deliveries` (`copy_id`): a copy consumed again after a crash (the
  same message, so the same partition and offset) is the same row, whatever
  its second outcome record says; the first one recorded wins.
- `deliveries`, one row per delivery key (`delivery_after`): first and last
  received, copies seen, and the outcome of the latest copy that decided
  something (a duplicate decides nothing: it keeps the outcome before it, or is
  the outcome when no deciding copy was seen).

Every copy of a key is on one partition of the outcomes topic, in order, so
folding a partition's records in order gives the same rows live and in a
rebuild.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from app.core import intake
from app.core.read_model import without_nul
from app.events import ControlEvent, DeadLettered, Delivery, DeliveryOutcome, SyncRequested

OUTCOMES_TOPIC = "hookstream.deliveries.outcomes"

# Headers that name the provider's event (the ingress keeps them in the delivery record).
EVENT_HEADERS = ("x-github-event", "linear-event")
MAX_EVENT = 128
MAX_REASON = 500

ROUTED, DUPLICATE, IGNORED, DEAD_LETTERED = "routed", "duplicate", "ignored", "dead_lettered"
OUTCOMES = (ROUTED, DUPLICATE, IGNORED, DEAD_LETTERED)


def event_name(headers: Mapping[str, str]) -> str | None:
    if not headers:
        return None
    for name in EVENT_HEADERS:
        value = headers.get(name)
        if value:
            return value[:MAX_EVENT]
    return None


def outcome_fields(delivery: Delivery, partition: int, offset: int, outcome: intake.Outcome) -> dict[str, Any]:
    """The wire fields of the `DeliveryOutcome` of one consumed copy and what `intake.process` made of it.

    Fields, not the model: this runs for every copy on the dedup stage's hot path, where
    building and serializing the model cost ~11 us a copy (the stage ran at 0.71x its
    throughput) and a dict for `codec.encode_fields` ~1 us. The ledger decodes (and
    validates) the record like any other; tests/unit/test_ledger.py checks that the
    fields decode to the model. Fields at their defaults are left out.
    """
    fields: dict[str, Any] = {
        "type": "delivery.outcome",
        "key": delivery.key,
        "plugin": delivery.plugin,
        "instance": delivery.instance,
        "delivery_id": delivery.delivery_id,
        "received_at": delivery.received_at,
        "partition": partition,
        "offset": offset,
        "outcome": outcome.counted,
    }
    event = event_name(delivery.headers)
    if event is not None:
        fields["event"] = event
    if outcome.rule:
        fields["rule"] = outcome.rule
    reason = outcome.reason
    if outcome.sends:
        request_ids: list[str] = []
        source_ids: list[str] = []
        event_types: list[str] = []
        for send in outcome.sends:
            record = send.record
            if send.topic == intake.CONTROL and isinstance(record, ControlEvent):
                event_types.append(record.type)
                if record.source_id not in source_ids:
                    source_ids.append(record.source_id)
                if isinstance(record, SyncRequested):
                    request_ids.append(record.request_id)
            elif isinstance(record, DeadLettered):
                reason = record.error
        if request_ids:
            fields["request_ids"] = request_ids
        if source_ids:
            fields["source_ids"] = source_ids
            fields["event_types"] = event_types
    if reason:
        fields["reason"] = reason[:MAX_REASON]
    if delivery.replay_epoch is not None:
        fields["replay_epoch"] = delivery.replay_epoch
    if delivery.redrive_of is not None:
        fields["redrive_of"] = delivery.redrive_of
    return fields


def undecodable_fields(key: str, partition: int, offset: int, error: str, now: datetime) -> dict[str, Any]:
    """The record of a copy that did not decode (dead-lettered at stage `decode`): the key says what it was."""
    parts = key.split("/", 2)
    plugin, instance, delivery_id = (
        parts if len(parts) == 3 and all(parts) else ("unknown", "unknown", key or "unknown")
    )
    return {
        "type": "delivery.outcome",
        "key": key,
        "plugin": plugin,
        "instance": instance,
        "delivery_id": delivery_id,
        "received_at": now,
        "partition": partition,
        "offset": offset,
        "outcome": DEAD_LETTERED,
        "rule": "decode",
        "reason": error[:MAX_REASON],
    }


# --- rows --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyRow:
    copy_id: str
    key: str
    partition: int
    offset: int
    received_at: datetime
    outcome: str
    rule: str | None
    reason: str | None
    request_ids: tuple[str, ...]
    source_ids: tuple[str, ...]
    event_types: tuple[str, ...]
    replay_epoch: str | None
    redrive_of: str | None
    # Where the outcome record itself is (hookstream.deliveries.outcomes): what `trace` reads.
    outcome_partition: int
    outcome_offset: int


@dataclass(frozen=True)
class DeliveryRow:
    key: str
    plugin: str
    instance: str
    delivery_id: str
    event: str | None
    first_received_at: datetime
    last_received_at: datetime
    copies: int
    outcome: str
    rule: str | None
    reason: str | None
    request_ids: tuple[str, ...]
    source_ids: tuple[str, ...]
    replay_epochs: tuple[str, ...]


COPY_COLUMNS = tuple(f.name for f in fields(CopyRow))
DELIVERY_COLUMNS = tuple(f.name for f in fields(DeliveryRow))


def copy_id(deliveries_topic: str, partition: int, offset: int) -> str:
    return f"{deliveries_topic}/{partition}/{offset}"


def copy_row(record: DeliveryOutcome, deliveries_topic: str, outcome_partition: int, outcome_offset: int) -> CopyRow:
    return CopyRow(
        copy_id=copy_id(deliveries_topic, record.partition, record.offset),
        key=record.key,
        partition=record.partition,
        offset=record.offset,
        received_at=record.received_at,
        outcome=record.outcome,
        rule=record.rule,
        reason=record.reason,
        request_ids=tuple(record.request_ids),
        source_ids=tuple(record.source_ids),
        event_types=tuple(record.event_types),
        replay_epoch=record.replay_epoch,
        redrive_of=record.redrive_of,
        outcome_partition=outcome_partition,
        outcome_offset=outcome_offset,
    )


def delivery_after(row: DeliveryRow | None, record: DeliveryOutcome) -> DeliveryRow:
    """The key's row after one more copy (never called twice for one copy: see the module docstring)."""
    decides = record.outcome != DUPLICATE
    if row is None:
        return DeliveryRow(
            key=record.key,
            plugin=record.plugin,
            instance=record.instance,
            delivery_id=record.delivery_id,
            event=record.event,
            first_received_at=record.received_at,
            last_received_at=record.received_at,
            copies=1,
            outcome=record.outcome,
            rule=record.rule,
            reason=record.reason,
            request_ids=tuple(record.request_ids),
            source_ids=tuple(record.source_ids),
            replay_epochs=(record.replay_epoch,) if record.replay_epoch and decides else (),
        )
    after = replace(
        row,
        event=row.event if row.event is not None else record.event,
        first_received_at=min(row.first_received_at, record.received_at),
        last_received_at=max(row.last_received_at, record.received_at),
        copies=row.copies + 1,
    )
    if not decides:
        return after
    epochs = row.replay_epochs + (
        (record.replay_epoch,) if record.replay_epoch and record.replay_epoch not in row.replay_epochs else ()
    )
    return replace(
        after,
        outcome=record.outcome,
        rule=record.rule,
        reason=record.reason,
        request_ids=_union(row.request_ids, record.request_ids),
        source_ids=_union(row.source_ids, record.source_ids),
        replay_epochs=epochs,
    )


def _union(current: tuple[str, ...], new: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*current, *new)))


def copy_to_columns(row: CopyRow) -> dict[str, Any]:
    values = {name: without_nul(getattr(row, name)) for name in COPY_COLUMNS}
    for name in ("request_ids", "source_ids", "event_types"):
        values[name] = list(values[name])
    return values


def delivery_to_columns(row: DeliveryRow) -> dict[str, Any]:
    values = {name: without_nul(getattr(row, name)) for name in DELIVERY_COLUMNS}
    for name in ("request_ids", "source_ids", "replay_epochs"):
        values[name] = list(values[name])
    return values


def delivery_to_json(row: DeliveryRow) -> dict[str, Any]:
    """The delivery's row as JSON values (times in ISO 8601): `trace --json` and the console's API."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in delivery_to_columns(row).items()}


def delivery_from_columns(values: Mapping[str, Any]) -> DeliveryRow:
    data: dict[str, Any] = {name: values.get(name) for name in DELIVERY_COLUMNS}
    for name in ("request_ids", "source_ids", "replay_epochs"):
        data[name] = tuple(data[name] or ())
    return DeliveryRow(**data)


def copy_from_columns(values: Mapping[str, Any]) -> CopyRow:
    data: dict[str, Any] = {name: values.get(name) for name in COPY_COLUMNS}
    for name in ("request_ids", "source_ids", "event_types"):
        data[name] = tuple(data[name] or ())
    return CopyRow(**data)
