"""What one record on `hookstream.dlq` does to its dead-letter row, pure.

One row per `dead_letter_id` (the dedup/routing stage derives it from the
delivery key, every other agent from the failed record's bytes, `app.core.poison`;
a redrive carries it along, as `redrive_of` or a record header):

- `DeadLettered` is one failure. The first makes the row; each later one (a
  redrive that failed again, a provider's redelivery that failed the same way)
  adds an attempt, reopens the row and takes the latest stage, error and time.
  The same consumed record failing again at the same position (a stage that
  crashed before committing, a replay) is not another attempt.
- `RedriveAccepted` is the stage's confirmation that a redrive was applied: it
  retires the row. Nothing else retires a row, a publish never does.

The projection applies each record once (offset fence, `app.store.projection`),
so `fold` need not be idempotent for failures; retiring is idempotent anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from app import codec
from app.core.read_model import without_nul
from app.events import DeadLettered, Delivery, RedriveAccepted

OPEN = "open"
RETIRED = "retired"
UNKNOWN = "unknown"

# The columns of the `dlq` table, in the order `DeadLetterRow` declares them.
COLUMNS = (
    "dead_letter_id",
    "key",
    "plugin",
    "instance",
    "stage",
    "error",
    "attempts",
    "status",
    "original",
    "raw",
    "first_failed_at",
    "last_failed_at",
    "retired_at",
    "source_topic",
    "source_partition",
    "source_offset",
    "truncated",
)

DELIVERIES_TOPIC = "hookstream.deliveries"


@dataclass(frozen=True)
class DeadLetterRow:
    dead_letter_id: str
    key: str
    plugin: str
    instance: str
    stage: str  # of the latest failure
    error: str  # of the latest failure
    attempts: int
    status: str  # OPEN | RETIRED
    # The delivery as last consumed; None when the record did not decode, then `raw` holds its bytes.
    original: Delivery | None
    raw: bytes | None
    first_failed_at: datetime
    last_failed_at: datetime
    retired_at: datetime | None
    # Where the latest failure was consumed.
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    # `raw` holds only the first bytes of a record too large for a dead letter.
    truncated: bool = False

    @property
    def of_delivery(self) -> bool:
        """Whether the failed record was consumed from the deliveries topic (or is not known to be otherwise)."""
        return self.source_topic is None or is_deliveries_topic(self.source_topic)

    @property
    def redrivable(self) -> bool:
        """Whether the row holds what a redrive republishes: a decoded delivery, or the whole
        record of another topic that decoded (it failed later: validate, fold, project, plan, batch)."""
        if self.original is not None:
            return True
        return not self.of_delivery and self.raw is not None and not self.truncated and self.stage != "decode"


def is_deliveries_topic(topic: str) -> bool:
    """`topic` (with the deployment's prefix, if any) is the deliveries topic."""
    return topic == DELIVERIES_TOPIC or topic.endswith("." + DELIVERIES_TOPIC)


def plugin_and_instance(key: str, original: Delivery | None, source_topic: str | None = None) -> tuple[str, str]:
    """From the delivery when there is one, else from its key `plugin/instance/deliveryId`, else unknown.
    A record of another topic than the deliveries has no plugin: unknown."""
    if original is not None:
        return original.plugin, original.instance
    if source_topic is not None and not is_deliveries_topic(source_topic):
        return UNKNOWN, UNKNOWN
    parts = key.split("/", 2)
    if len(parts) == 3 and all(parts):
        return parts[0], parts[1]
    return UNKNOWN, UNKNOWN


def fold(row: DeadLetterRow | None, record: DeadLettered | RedriveAccepted) -> DeadLetterRow | None:
    """The row after `record`; None when there is no row and the record makes none."""
    if isinstance(record, DeadLettered):
        return failed(row, record)
    return retired(row, record)


def failed(row: DeadLetterRow | None, record: DeadLettered) -> DeadLetterRow:
    """A new failure: insert, or converge on the existing row with one more attempt, reopened."""
    original = record.original
    if row is None:
        plugin, instance = plugin_and_instance(record.key, original, record.source_topic)
        return DeadLetterRow(
            dead_letter_id=record.dead_letter_id,
            key=record.key,
            plugin=plugin,
            instance=instance,
            stage=record.stage,
            error=record.error,
            attempts=record.attempt,
            status=OPEN,
            original=original,
            raw=record.raw,
            first_failed_at=record.failed_at,
            last_failed_at=record.failed_at,
            retired_at=None,
            source_topic=record.source_topic,
            source_partition=record.source_partition,
            source_offset=record.source_offset,
            truncated=record.truncated,
        )
    if record.source_offset is not None and (row.source_topic, row.source_partition, row.source_offset) == (
        record.source_topic,
        record.source_partition,
        record.source_offset,
    ):
        return row  # the same consumed record again (a replay, a stage that stopped before committing)
    return replace(
        row,
        stage=record.stage,
        error=record.error,
        attempts=max(row.attempts + 1, record.attempt),
        status=OPEN,
        retired_at=None,
        # Keep what can be redriven: a later failure without a delivery does not erase it.
        original=original if original is not None else row.original,
        raw=record.raw if record.raw is not None else row.raw,
        truncated=record.truncated if record.raw is not None else row.truncated,
        first_failed_at=min(row.first_failed_at, record.failed_at),
        last_failed_at=max(row.last_failed_at, record.failed_at),
        source_topic=record.source_topic,
        source_partition=record.source_partition,
        source_offset=record.source_offset,
    )


def retired(row: DeadLetterRow | None, record: RedriveAccepted) -> DeadLetterRow | None:
    """The stage accepted a redrive: retire the row (a retired row keeps its first retirement)."""
    if row is None or row.status == RETIRED:
        return row
    return replace(row, status=RETIRED, retired_at=record.accepted_at)


def to_columns(row: DeadLetterRow) -> dict[str, Any]:
    """Column values for the `dlq` table; `original` in its JSON wire form.

    PostgreSQL text and jsonb cannot hold NUL characters, which a record
    produced straight to Kafka may carry: they are written as U+FFFD.
    """
    values = {name: getattr(row, name) for name in COLUMNS}
    values["original"] = without_nul(row.original.model_dump(mode="json")) if row.original is not None else None
    for name in ("dead_letter_id", "key", "plugin", "instance", "stage", "error", "source_topic"):
        values[name] = without_nul(values[name])
    return values


def from_columns(values: Mapping[str, Any]) -> DeadLetterRow:
    """The row read back from the `dlq` table (a mapping of column name to value)."""
    data = {name: values[name] for name in COLUMNS}
    if data["original"] is not None:
        data["original"] = codec.validate(Delivery, data["original"])
    if data["raw"] is not None:
        data["raw"] = bytes(data["raw"])
    return DeadLetterRow(**data)
