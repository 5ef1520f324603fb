"""A redrive from the console: the same republish as `hookstream dlq redrive ID`, for one row.

The row is retired by the dedup stage's `RedriveAccepted`, never here: the
answer only says where the delivery was republished.
"""

from __future__ import annotations

from aiokafka.errors import KafkaError

from app import codec
from app.cli.dlq import DELIVERIES_TOPIC, not_redrivable_reason, redrive_of
from app.core.dlq import DeadLetterRow
from app.events import utcnow
from app.settings import Settings


class RedriveRefused(Exception):
    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


async def redrive_dead_letter(settings: Settings, row: DeadLetterRow | None, ident: str) -> str:
    """Republish the row's delivery; returns `topic[partition]@offset`."""
    from app.ingress.publisher import Publisher, PublishUnavailable

    if row is None:
        raise RedriveRefused(f"no dead letter {ident!r}", 404, "not_found")
    reason = not_redrivable_reason(row)
    if reason is not None:
        raise RedriveRefused(f"dead letter {ident} {reason}", 409, "not_redrivable")
    delivery = redrive_of(row, utcnow())
    publisher = Publisher(settings, client_id="hookstream-console-redrive")
    try:
        await publisher.start()
        metadata = await publisher.publish(
            settings.topic(DELIVERIES_TOPIC), codec.encode_key(delivery.key), codec.encode(delivery)
        )
    except (PublishUnavailable, KafkaError, OSError) as exc:
        raise RedriveRefused(f"not republished: the broker did not take it ({exc})", 503, "unavailable") from None
    finally:
        await publisher.stop()
    return f"{metadata.topic}[{metadata.partition}]@{metadata.offset}"
