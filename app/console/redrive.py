"""A redrive from the console: the same republish as `hookstream dlq redrive ID` (app/redrive.py), for one row.

The row is retired by the stage's `RedriveAccepted`, never here: the answer
only says where the record was republished.
"""

from __future__ import annotations

from aiokafka.errors import KafkaError

from app.core.dlq import DeadLetterRow
from app.events import utcnow
from app.redrive import not_redrivable_reason, publish, redrive, start_publisher
from app.settings import Settings


class RedriveRefused(Exception):
    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


async def redrive_dead_letter(settings: Settings, row: DeadLetterRow | None, ident: str) -> str:
    """Republish the row's delivery, or its record to its own topic; returns `topic[partition]@offset`."""
    from app.ingress.publisher import PublishUnavailable, RecordTooLarge
    from app.topology import MissingTopics

    if row is None:
        raise RedriveRefused(f"no dead letter {ident!r}", 404, "not_found")
    reason = not_redrivable_reason(row)
    if reason is not None:
        raise RedriveRefused(f"dead letter {ident} {reason}", 409, "not_redrivable")
    what = redrive(row, utcnow())
    try:
        publisher = await start_publisher(settings, [what], "hookstream-console-redrive")
    except MissingTopics as exc:
        raise RedriveRefused(f"not republished: {exc}", 503, "unavailable") from None
    except (PublishUnavailable, KafkaError, OSError) as exc:
        raise RedriveRefused(f"not republished: the broker is not reachable ({exc})", 503, "unavailable") from None
    try:
        metadata = await publish(publisher, settings, what)
    except RecordTooLarge as exc:
        raise RedriveRefused(f"not republished: the broker refused the record ({exc})", 409, "too_large") from None
    except (PublishUnavailable, KafkaError, OSError) as exc:
        raise RedriveRefused(f"not republished: the broker did not take it ({exc})", 503, "unavailable") from None
    finally:
        await publisher.stop()
    return f"{metadata.topic}[{metadata.partition}]@{metadata.offset}"
