"""The dedup window decision (DESIGN invariant 2), pure.

An entry remembers the first sighting of a delivery key: when (event time),
where (source partition and offset) and until when it blocks redeliveries.
The same message consumed again after a crash (same partition and offset) is
routed again — downstream is idempotent — while a redelivery (another offset)
inside the window is a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

import orjson


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

    Invariant: within `window` seconds of event time after a key's first
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

    `now` is the stream time of the entry's partition (the newest event time consumed
    there), never the wall clock: windows are in event time."""
    return expired(entry, now)
