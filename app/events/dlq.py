"""`hookstream.dlq`: dead letters and the confirmations that retire them.

Keyed by the failed record's own key (a delivery key, a source id, a job id...):
every agent dead-letters what it cannot apply (`app.core.poison`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.events.base import RawBytes, Record, Timestamp
from app.events.deliveries import Delivery


class DeadLettered(Record):
    type: Literal["dlq.dead_lettered"] = "dlq.dead_lettered"
    dead_letter_id: str
    key: str
    stage: str
    error: str
    attempt: int = Field(default=1, ge=1)
    failed_at: Timestamp
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    # The delivery as consumed; None when the record did not even decode, then `raw` holds its bytes.
    # A record of any other topic is kept as `raw`, the value as consumed (a redrive republishes it).
    original: Delivery | None = None
    raw: RawBytes | None = None
    # True when the record was too large to keep whole in a dead letter: `raw` holds its first
    # bytes only (it cannot be redriven; `source_topic`, `source_partition`, `source_offset` say where it is).
    truncated: bool = False


class RedriveAccepted(Record):
    """Emitted by the dedup/routing stage once it accepted a redriven delivery: retires the row."""

    type: Literal["dlq.redrive_accepted"] = "dlq.redrive_accepted"
    dead_letter_id: str
    key: str
    accepted_at: Timestamp
