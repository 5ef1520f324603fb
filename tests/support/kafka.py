"""Producing to and reading back from the real broker in tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from app import codec
from app.settings import Settings


async def produce(settings: Settings, logical: str, records: Iterable[tuple]) -> int:
    """Send (key, value) or (key, value, timestamp in ms) records: a test producer sets the broker
    timestamp as a producer's clock would (the fold's clock is that timestamp)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    n = 0
    try:
        futures = []
        for key, value, *when in records:
            futures.append(
                await producer.send(
                    settings.topic(logical), value=value, key=key.encode(), timestamp_ms=when[0] if when else None
                )
            )
            n += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return n


async def read_all(
    settings: Settings,
    logical: str,
    min_count: int = 0,
    timeout: float = 60.0,
    idle: float = 1.0,
    decode: bool = True,
    alive=None,
) -> list:
    """Read a topic from the beginning until at least `min_count` records arrived and the
    topic stayed quiet for `idle` seconds (or `timeout` passed). Returns (key, record, partition, offset).
    `alive()` returning False (a worker died) stops the wait early."""
    topic = settings.topic(logical)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    out: list = []
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            got = 0
            for messages in batch.values():
                for m in messages:
                    key = m.key.decode() if m.key is not None else None
                    value = codec.decode_topic(logical, m.value) if decode else m.value
                    out.append((key, value, m.partition, m.offset))
                    got += 1
            now = time.monotonic()
            if got:
                last_new = now
            elif len(out) >= min_count and now - last_new >= idle:
                break
            elif alive is not None and not alive():
                break
    finally:
        await consumer.stop()
    return out
