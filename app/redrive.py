"""Redriving a dead letter: what is republished, where, and the publish itself.

One place for `hookstream dlq redrive` and the console's redrive button. A row
that holds a decoded delivery republishes it to `hookstream.deliveries` with
the same key, marked `redrive_of`; a row of another topic's record (a control
record, a plan request, a file batch, ...) republishes its raw bytes
byte-exact to that topic with the same key and the `hookstream-redrive-of`
header. The row is retired only when the stage has applied the redrive and its
`RedriveAccepted` was projected, never here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from app import codec
from app.core import dlq
from app.core.poison import REDRIVE_HEADER
from app.events import Delivery
from app.settings import Settings

if TYPE_CHECKING:
    from aiokafka.structs import RecordMetadata

    from app.ingress.publisher import Publisher

DELIVERIES_TOPIC = dlq.DELIVERIES_TOPIC


@dataclass(frozen=True)
class Redrive:
    """What a redrive republishes: a delivery marked `redrive_of`, or the raw record to its topic with the header."""

    row: dlq.DeadLetterRow
    delivery: Delivery | None

    @property
    def key(self) -> str:
        return self.delivery.key if self.delivery is not None else self.row.key

    def topic(self, settings: Settings) -> str:
        """The topic the redrive goes to."""
        if self.delivery is not None:
            return settings.topic(DELIVERIES_TOPIC)
        assert self.row.source_topic is not None  # a redrivable row without a delivery has its topic
        return self.row.source_topic


def redrive(row: dlq.DeadLetterRow, now: datetime) -> Redrive:
    return Redrive(row, redrive_of(row, now) if row.original is not None else None)


def redrive_of(row: dlq.DeadLetterRow, now: datetime) -> Delivery:
    """The delivery to republish: the original, byte-exact, marked as a redrive of this row.

    `received_at` becomes the redrive's time: it is when hookstream took the
    delivery in again, so the failure or acceptance time and a GitHub event's
    time are the redrive's, not the original's. (The dedup window counts in the
    republished record's broker timestamp, the same moment.)
    """
    assert row.original is not None
    return row.original.model_copy(update={"redrive_of": row.dead_letter_id, "received_at": now})


def _format_time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def not_redrivable_reason(row: dlq.DeadLetterRow) -> str | None:
    """Why this row cannot be redriven now, or None when it can."""
    if row.truncated:
        return (
            f"keeps only the first bytes of a record too large for a dead letter: it cannot be redriven; "
            f"the record is at {row.source_topic}[{row.source_partition}]@{row.source_offset}"
        )
    if not row.redrivable:
        return "holds no delivery (its record did not decode): it cannot be redriven; fix the producer and resend"
    if row.status != dlq.OPEN:
        return f"is retired (its redrive was accepted {_format_time(row.retired_at)}): nothing to redrive"
    return None


async def start_publisher(settings: Settings, redrives: list[Redrive], client_id: str) -> Publisher:
    """A started publisher for these redrives. Raises `MissingTopics` when the deliveries topic
    is needed and missing, `PublishUnavailable`, `KafkaError` or `OSError` when the broker is not there."""
    from app.ingress.publisher import Publisher
    from app.topology import require_topics

    if any(r.delivery is not None for r in redrives):
        await require_topics(settings, [DELIVERIES_TOPIC])
    publisher = Publisher(settings, client_id=client_id)
    await publisher.start()
    return publisher


async def publish(publisher: Publisher, settings: Settings, redrive: Redrive) -> RecordMetadata:
    """Republish one redrive and wait for the broker's acknowledgement (`PublishUnavailable` otherwise)."""
    if redrive.delivery is not None:
        return await publisher.publish(
            redrive.topic(settings), codec.encode_key(redrive.delivery.key), codec.encode(redrive.delivery)
        )
    row = redrive.row
    assert row.raw is not None  # a redrivable row without a delivery holds its whole record
    return await publisher.publish(
        redrive.topic(settings),
        codec.encode_key(row.key),
        row.raw,
        headers=[(REDRIVE_HEADER, row.dead_letter_id.encode())],
    )
