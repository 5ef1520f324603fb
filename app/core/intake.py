"""What the dedup/routing stage does with one consumed delivery, as one pure function.

The agent only decodes, loads the dedup entry, calls `process`, stores and sends.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from app import codec
from app.core import poison
from app.core.dedup import Action, DedupEntry, decide
from app.events import DeadLettered, Delivery, DeliveryRef, Record, RedriveAccepted
from app.plugins.base import Routed, RoutingError

DLQ = "hookstream.dlq"
CONTROL = "hookstream.sync.control"

# Marker: delete the stored dedup entry (a dead-lettered delivery must not block its key).
DELETE = object()


@dataclass(frozen=True)
class Send:
    topic: str  # logical name
    key: str
    record: Record


@dataclass
class Outcome:
    """The effects of one delivery: what to store for its key, what to send, what to count."""

    store: object = None  # DedupEntry, DELETE, or None (unchanged)
    sends: list[Send] = field(default_factory=list)
    counted: str = ""  # "duplicate" | "routed" | "ignored" | "dead_lettered"
    rule: str = ""  # the ignore rule or the DLQ stage
    reason: str = ""


def dead_letter_id(key: str) -> str:
    """One dead letter per delivery key: a failure of the same key again converges on its row."""
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def dead_letter(
    delivery: Delivery, stage: str, error: str, partition: int, offset: int, topic: str, now: datetime
) -> Send:
    record = DeadLettered(
        dead_letter_id=delivery.redrive_of or dead_letter_id(delivery.key),
        key=delivery.key,
        stage=stage,
        error=error[:2000],
        failed_at=now,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        original=delivery,
    )
    # A delivery near its topic's record limit does not fit a dead letter whole: keep its first bytes.
    return Send(DLQ, delivery.key, poison.bounded(record, codec.encode(delivery)))


def refused(delivery: Delivery, reason: str, partition: int, offset: int, topic: str, now: datetime) -> Outcome:
    """A delivery no clock can decide (its broker timestamp gives none, `core.dedup.tick`):
    dead-lettered whole at stage `validate`, so that a redrive republishes it with a time. The
    key's entry is left as it is: the refused copy must not let a later redelivery through."""
    return Outcome(
        sends=[dead_letter(delivery, "validate", reason, partition, offset, topic, now)],
        counted="dead_lettered",
        rule="validate",
        reason=reason,
    )


def process(
    delivery: Delivery,
    entry: DedupEntry | None,
    partition: int,
    offset: int,
    topic: str,
    window: float | None,
    route: Callable[[Delivery], Routed] | None,
    now: float | None = None,
) -> Outcome:
    """Dedup, then route. `window`/`route` are None when the instance is not configured (dead letter).

    `now` is the stream time of the delivery's partition (`core.dedup.tick`: its broker timestamps),
    never the delivery's own `received_at`; a caller without a broker (a test, a tool) passes None
    and decides at `received_at`.

    Total: a delivery the stage cannot handle for any reason is dead-lettered (stage `route`
    when routing refused or failed, `dedup` for anything else), never raised to the agent."""
    at = delivery.received_at if now is None else datetime.fromtimestamp(now, UTC)
    try:
        return _process(
            delivery, entry, partition, offset, topic, window, route, at.timestamp() if now is None else now, at
        )
    except Exception as exc:  # noqa: BLE001 — a record the stage cannot apply is dead-lettered, never dropped
        return Outcome(
            store=DELETE if entry is not None else None,
            sends=[dead_letter(delivery, "dedup", poison.reason_of(exc), partition, offset, topic, at)],
            counted="dead_lettered",
            rule="dedup",
        )


def _process(
    delivery: Delivery,
    entry: DedupEntry | None,
    partition: int,
    offset: int,
    topic: str,
    window: float | None,
    route: Callable[[Delivery], Routed] | None,
    now: float,
    at: datetime,
) -> Outcome:
    """`now`: the clock, in seconds; `at`: the same as a datetime (a dead letter's or a redrive's time)."""
    if route is None or window is None:
        return Outcome(
            store=DELETE if entry is not None else None,
            sends=[
                dead_letter(
                    delivery,
                    "route",
                    f"unknown instance {delivery.plugin}/{delivery.instance}",
                    partition,
                    offset,
                    topic,
                    at,
                )
            ],
            counted="dead_lettered",
            rule="route",
        )
    decision = decide(
        entry,
        now,
        window,
        partition,
        offset,
        replay_epoch=delivery.replay_epoch,
        redrive=delivery.redrive_of is not None,
    )
    if decision.action is Action.DUPLICATE:
        return Outcome(counted="duplicate", reason=decision.reason)
    try:
        routed = route(delivery)
    except Exception as exc:  # noqa: BLE001 — a plugin bug dead-letters the delivery, never stops the stage
        reason = (
            str(exc) if isinstance(exc, RoutingError) else f"{type(exc).__name__} in {delivery.plugin} routing: {exc}"
        )
        return Outcome(
            store=DELETE if entry is not None else None,
            sends=[dead_letter(delivery, "route", reason, partition, offset, topic, at)],
            counted="dead_lettered",
            rule="route",
        )
    ref = DeliveryRef(key=delivery.key, partition=partition, offset=offset)
    sends = [Send(CONTROL, event.source_id, _with_ref(event, delivery.key, ref)) for event in routed.events]
    if delivery.redrive_of:
        sends.append(
            Send(
                DLQ,
                delivery.key,
                RedriveAccepted(
                    dead_letter_id=delivery.redrive_of,
                    key=delivery.key,
                    accepted_at=at,
                ),
            )
        )
    if routed.ignored is not None:
        return Outcome(
            store=decision.entry, sends=sends, counted="ignored", rule=routed.ignored.rule, reason=decision.reason
        )
    return Outcome(store=decision.entry, sends=sends, counted="routed", reason=decision.reason)


def _with_ref(event: Record, key: str, ref: DeliveryRef) -> Record:
    """Point the event at the exact message it was routed from (a producer's own reference is kept)."""
    current = getattr(event, "delivery", None)
    if current is None or current.key == key:
        return event.model_copy(update={"delivery": ref})
    return event
