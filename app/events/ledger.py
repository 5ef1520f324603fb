"""`hookstream.deliveries.outcomes`, key = the delivery key: what the dedup stage did with each copy.

One small record per consumed copy (no body, no headers): the delivery ledger's
projection folds them into PostgreSQL, and `hookstream trace` finds a copy by
the partition and offset it names.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.events.base import Record, Timestamp

Outcome = Literal["routed", "duplicate", "ignored", "dead_lettered"]


class DeliveryOutcome(Record):
    """One delivery copy consumed from `hookstream.deliveries` at `partition`/`offset`, and its outcome.

    `routed`: the events it produced (`event_types`), the requests (`request_ids`)
    and sources (`source_ids`) they name; `ignored`: the rule (`rule`); `dead_lettered`:
    the stage (`rule`) and the error (`reason`); `duplicate`: dropped inside its window.
    `reason` of a routed or ignored copy is the dedup decision ("first sighting",
    "new replay epoch", ...); `replay_epoch` and `redrive_of` are the delivery's own.
    """

    type: Literal["delivery.outcome"] = "delivery.outcome"
    key: str
    plugin: str
    instance: str
    delivery_id: str
    # The provider's event name when its headers carry one (GitHub, Linear).
    event: str | None = None
    received_at: Timestamp
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    outcome: Outcome
    rule: str | None = None
    reason: str | None = None
    request_ids: list[str] = Field(default_factory=list)
    source_ids: list[str] = Field(default_factory=list)
    event_types: list[str] = Field(default_factory=list)
    replay_epoch: str | None = None
    redrive_of: str | None = None
