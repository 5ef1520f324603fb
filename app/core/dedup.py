"""The dedup window decision (docs/architecture.md, invariant 2) and its clock, pure.

An entry remembers the first sighting of a delivery key: when (stream time),
where (source partition and offset) and until when it blocks redeliveries.
The same message consumed again after a crash (same partition and offset) is
routed again — downstream is idempotent — while a redelivery (another offset)
inside the window is a duplicate.

The clock (`tick`) is the stream time of the delivery's partition: the newest
broker timestamp consumed there. Never a field of the record (`received_at` is
what the sender says): a record dated in the year 9999 must not expire, nor
let the purge forget, every key of its partition at once. Never backwards: a
record with an older timestamp (another producer's clock) is decided at the
partition's time. A record whose broker timestamp is missing or outside what
the orchestrator's fold accepts (`app.core.admission.broker_datetime`) moves
no clock: it is refused, with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

import orjson

from app.core.admission import broker_datetime


@dataclass(frozen=True)
class DedupEntry:
    seen_at: float
    expires_at: float
    partition: int
    offset: int
    # Replay epochs this key was already let through for (hookstream replay deliveries).
    epochs: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        return orjson.dumps([self.seen_at, self.expires_at, self.partition, self.offset, list(self.epochs)])

    @classmethod
    def from_bytes(cls, raw: bytes) -> DedupEntry:
        seen_at, expires_at, partition, offset, epochs = orjson.loads(raw)
        return cls(seen_at, expires_at, partition, offset, tuple(epochs))


class Action(StrEnum):
    ROUTE = "route"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Decision:
    action: Action
    # What to store for the key (None: leave the stored entry as it is).
    entry: DedupEntry | None
    reason: str


def expired(entry: DedupEntry, now: float) -> bool:
    return now >= entry.expires_at


def decide(
    entry: DedupEntry | None,
    now: float,
    window: float,
    partition: int,
    offset: int,
    replay_epoch: str | None = None,
    redrive: bool = False,
) -> Decision:
    """Route or drop one delivery.

    Invariant: within `window` seconds of stream time after a key's first
    sighting, at most one routing per key, except (a) the very message the
    entry was made at (same partition and offset: a replay after a crash),
    (b) a redrive of a dead letter, (c) the first sighting in a new replay epoch.
    """
    fresh = DedupEntry(now, now + window, partition, offset, (replay_epoch,) if replay_epoch else ())
    if entry is None:
        return Decision(Action.ROUTE, fresh, "first sighting")
    if expired(entry, now):
        return Decision(Action.ROUTE, fresh, "window expired")
    if entry.partition == partition and entry.offset == offset:
        # Stored again: the crash may have come after the local write but before its
        # changelog record left, and a rebuild from the changelog must still know the key.
        return Decision(Action.ROUTE, entry, "same message replayed")
    if redrive:
        return Decision(Action.ROUTE, replace(entry, partition=partition, offset=offset), "redrive")
    if replay_epoch and replay_epoch not in entry.epochs:
        return Decision(
            Action.ROUTE,
            replace(entry, partition=partition, offset=offset, epochs=entry.epochs + (replay_epoch,)),
            "new replay epoch",
        )
    return Decision(Action.DUPLICATE, None, "redelivery inside window")


def purgeable(entry: DedupEntry, now: float) -> bool:
    """True when the worker may delete the entry: it can no longer block anything.

    `now` is the stream time of the entry's partition (`tick`), never the wall clock nor
    a time the records carry: windows are in stream time."""
    return expired(entry, now)


@dataclass(frozen=True)
class Tick:
    """A partition's stream clock after one more record."""

    # Seconds since the epoch; None only when the partition has no time yet and the record gave none.
    now: float | None
    # Why the record is refused (its broker timestamp holds no usable time), or None.
    refusal: str | None = None


def tick(clock: float | None, timestamp_ms: int | None) -> Tick:
    """The stream clock of a partition at `clock` (None: nothing consumed there yet) after a record
    whose broker timestamp is `timestamp_ms` (milliseconds since the epoch, as Kafka carries it).

    Invariant: the clock never moves backwards, and it moves only to a broker timestamp the
    orchestrator's fold would accept; a record without one is refused and leaves it where it was.
    """
    if timestamp_ms is None or broker_datetime(timestamp_ms) is None:
        return Tick(
            clock,
            f"the record's broker timestamp ({timestamp_ms} ms) is missing or outside the years 1970-8999: "
            "the dedup window cannot count from it",
        )
    now = timestamp_ms / 1000
    return Tick(now if clock is None or now > clock else clock)
