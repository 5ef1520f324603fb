"""The ingress's one Kafka producer: publish a record and return only once the broker acknowledged it.

Every request handler awaits its own record's acknowledgement (acks="all"), so a
2xx answer always means the record is in Kafka. Concurrent requests share
producer batches: `send()` appends to the batch that is being filled and the
handler awaits that record's future, instead of one `send_and_wait` round trip
after another (docs/performance.md: batch size and linger are the levers).

A broker that is down or slower than `publish_timeout_seconds` raises
`PublishUnavailable`; the ingress answers 503 with Retry-After. A record whose
wait timed out may still be written later: that is at-least-once, and the
delivery id makes the provider's retry a duplicate that dedup drops.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError
from aiokafka.structs import RecordMetadata

from app.settings import Settings

log = logging.getLogger(__name__)


class PublishUnavailable(Exception):
    """The broker did not acknowledge the record in time (or refused it): answer 503, never 2xx."""


class RecordTooLarge(Exception):
    """The record exceeds what the producer or the broker accepts: retrying cannot help (413)."""


def record_size_limit(body_limit_bytes: int) -> int:
    """The largest delivery record the ingress can produce: the body travels base64-encoded
    (4/3 of its size) inside a JSON envelope with the headers routing needs."""
    return -(-body_limit_bytes // 3) * 4 + 64 * 1024


class Publisher:
    """An aiokafka producer with acks=all, started and stopped by its owner."""

    def __init__(self, settings: Settings, client_id: str = "hookstream-ingress") -> None:
        self.settings = settings
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    def _build_producer(self) -> AIOKafkaProducer:
        timeout_ms = int(self.settings.publish_timeout_seconds * 1000)
        return AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            client_id=self.client_id,
            acks="all",
            # tansu rejects aiokafka's InitProducerId (docs/local-broker.md, row 2); at-least-once is
            # the design anyway: the delivery id makes a duplicate harmless.
            enable_idempotence=False,
            compression_type=None,
            linger_ms=self.settings.producer_linger_ms,
            max_batch_size=self.settings.producer_max_batch_bytes,
            # A request may be retried by aiokafka, but never for much longer than the
            # ingress waits: a record that missed its answer should not linger for 40 s.
            request_timeout_ms=max(timeout_ms, 1000),
            retry_backoff_ms=100,
            # A body at the limit must fit in one request (the topic's max.message.bytes must allow it too).
            max_request_size=max(1024 * 1024, record_size_limit(self.settings.body_limit_bytes)),
        )

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = self._build_producer()
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise PublishUnavailable(
                f"cannot reach the Kafka broker at {self.settings.kafka_bootstrap_servers}: {exc}"
            ) from None
        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("Publisher.start() was not awaited")
        return self._producer

    async def publish(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]] | None = None
    ) -> RecordMetadata:
        """Write one record and wait for the broker's acknowledgement, at most publish_timeout_seconds."""
        producer = self.producer
        timeout = self.settings.publish_timeout_seconds
        try:
            # asyncio.timeout rather than wait_for: the same bound without a task per request.
            async with asyncio.timeout(timeout):
                ack = await producer.send(topic, value=value, key=key, headers=headers)
                return await ack
        except TimeoutError:
            raise PublishUnavailable(f"the broker did not acknowledge within {timeout:g}s") from None
        except (MessageSizeTooLargeError, RecordListTooLargeError) as exc:
            raise RecordTooLarge(
                f"{len(value)} bytes exceed the broker's record size limit ({type(exc).__name__})"
            ) from None
        except KafkaError as exc:
            raise PublishUnavailable(f"the broker refused the record: {type(exc).__name__}") from None

    async def existing_topics(self, timeout: float | None = None) -> set[str]:
        """The topics the cluster reports right now; raises PublishUnavailable if no broker answers."""
        timeout = min(self.settings.publish_timeout_seconds, 5.0) if timeout is None else timeout
        try:
            metadata = await asyncio.wait_for(self.producer.client.fetch_all_metadata(), timeout)
        except TimeoutError:
            raise PublishUnavailable(f"the broker did not answer a metadata request within {timeout:g}s") from None
        except KafkaError as exc:
            raise PublishUnavailable(f"the broker did not answer a metadata request: {exc}") from None
        return set(metadata.topics())
