"""The agents' dead-letter path: a record an agent cannot apply is dead-lettered, counted, and the agent goes on.

`DeadLetters.guard(message, apply, stage)` runs one record's work:

- it returns normally: the record was applied. If it was a redrive (the record
  carries the `hookstream-redrive-of` header, set by `hookstream dlq redrive`),
  a `RedriveAccepted` follows, which retires the dead letter's row;
- it raises `CannotApply(stage, reason)` (an agent's own refusal) or any other
  error: the record goes to `hookstream.dlq` with the stage and the reason,
  counted in `hookstream_records_dead_lettered{agent, stage}`, and the agent
  takes the next record. Without this, an exception would end the agent's
  iteration, Faust would restart the agent, and the record (acked on the way
  out) would be gone: no effect, no dead letter, no counter;
- it raises an infrastructure error (PostgreSQL or the broker unreachable): not
  the record's fault. The work is retried with backoff until it goes through,
  as a crash and a replay would (the work is idempotent), and nothing is skipped.

The dead letter is put into the worker's producer before the record is acked
(faust_tuning's `Output`), so the commit that passes the record flushes it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import psycopg
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError

from app import codec
from app.core import poison
from app.core.retry import RetryPolicy
from app.events import DeadLettered, RedriveAccepted, utcnow
from app.store.db import retriable
from app.stream import faust_tuning

log = logging.getLogger(__name__)

DLQ = "hookstream.dlq"
REDRIVE_HEADER = poison.REDRIVE_HEADER
# Waits between tries of a record whose work met an infrastructure failure (unbounded: never skipped).
INFRASTRUCTURE_BACKOFF = RetryPolicy(attempts=0, base_seconds=0.2, max_seconds=5.0)


def retry_policy(settings: Any) -> RetryPolicy:
    """HOOKSTREAM_RETRY_*: how the plan and batch stages retry transient failures."""
    return RetryPolicy(settings.retry_attempts, settings.retry_base_seconds, settings.retry_max_seconds)


def is_infrastructure(exc: BaseException) -> bool:
    """PostgreSQL or the broker is unreachable (the work can be tried again as it is): not the record's fault.
    A record too large for the broker, or a value past one of PostgreSQL's limits, is the record's fault."""
    if isinstance(exc, (MessageSizeTooLargeError, RecordListTooLargeError)):
        return False
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return retriable(exc)
    return isinstance(exc, (KafkaError, ConnectionError, TimeoutError))


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Inside it, an error that is not an infrastructure failure becomes `CannotApply(name, reason)`."""
    try:
        yield
    except poison.CannotApply:
        raise
    except Exception as exc:
        if is_infrastructure(exc):
            raise
        raise poison.CannotApply(name, poison.reason_of(exc)) from exc


def header(message: Any, name: str) -> str | None:
    """The value of a consumed record's header `name`, or None (Faust hands headers over as a list or a mapping)."""
    headers = getattr(message, "headers", None) or ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in items:
        if key == name and value:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return None


def redrive_of(message: Any) -> str | None:
    """The dead letter a consumed record redrives (its `hookstream-redrive-of` header), or None."""
    return header(message, REDRIVE_HEADER)


class DeadLetters:
    """The dead letters of one agent (`agent`, a counter label) reading the logical topics of `topics`
    (real topic name -> logical name)."""

    def __init__(self, worker: Any, agent: str, topics: Mapping[str, str]) -> None:
        self.app = worker.app
        self.agent = agent
        self.topics = dict(topics)
        self.dlq_topic = worker.settings.topic(DLQ)
        self.counter = worker.metrics.records_dead_lettered

    @classmethod
    def of(cls, worker: Any, agent: str, *logical: str) -> DeadLetters:
        return cls(worker, agent, {worker.settings.topic(name): name for name in logical})

    async def guard(self, message: Any, apply: Callable[[], Awaitable[Any]], default_stage: str) -> bool:
        """Apply one record (see the module's docstring); True when it was applied, False when dead-lettered."""
        tries = 0
        while True:
            try:
                await apply()
            except poison.CannotApply as exc:
                await self.send(message, exc.stage, exc.reason)
                return False
            except Exception as exc:  # a record an agent cannot apply is dead-lettered, never dropped
                if is_infrastructure(exc):
                    delay = INFRASTRUCTURE_BACKOFF.delay(tries, 0.5)
                    tries += 1
                    log.warning(
                        "%s: %s[%d]@%d met %s; trying it again in %.1fs",
                        self.agent,
                        message.topic,
                        message.partition,
                        message.offset,
                        poison.reason_of(exc),
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                log.exception(
                    "%s: %s[%d]@%d cannot be applied", self.agent, message.topic, message.partition, message.offset
                )
                await self.send(message, default_stage, poison.reason_of(exc))
                return False
            await self.accepted(message)
            return True

    async def send(self, message: Any, stage: str, reason: str, original: Any = None) -> None:
        """Dead-letter the consumed `message` at `stage` with `reason`, and count it."""
        await self.dead_letter(message, stage, reason, original)

    async def dead_letter(self, message: Any, stage: str, reason: str, original: Any = None) -> DeadLettered:
        """`send`, returning the dead letter it sent (for an agent that records it elsewhere too)."""
        logical = self.topics.get(message.topic, message.topic)
        value = message.value or b""
        record = poison.dead_letter(
            dead_letter_id=poison.id_of(logical, message.key, value),
            stage=stage,
            error=reason,
            key=message.key,
            value=value,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            failed_at=utcnow(),
            original=original,
        )
        log.warning(
            "%s: dead-lettered %s[%d]@%d at stage %s: %s",
            self.agent,
            message.topic,
            message.partition,
            message.offset,
            stage,
            record.error[:300],
        )
        await faust_tuning.send_raw(self.app, self.dlq_topic, message.key, codec.encode(record))
        self.counter.labels(self.agent, stage).inc()
        return record

    async def accepted(self, message: Any) -> None:
        """Confirm an applied redrive: its dead letter's row retires."""
        dead_letter_id = redrive_of(message)
        if dead_letter_id is None:
            return
        confirmation = RedriveAccepted(
            dead_letter_id=dead_letter_id, key=codec.decode_key(message.key) or "", accepted_at=utcnow()
        )
        await faust_tuning.send_raw(self.app, self.dlq_topic, message.key, codec.encode(confirmation))
        log.info(
            "%s: redrive of dead letter %s accepted (%s[%d]@%d)",
            self.agent,
            dead_letter_id,
            message.topic,
            message.partition,
            message.offset,
        )
