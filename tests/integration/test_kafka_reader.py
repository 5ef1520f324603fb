"""The group-less reader (app/kafka_reader.py) on the real broker: partitions, ranges, offsets, following."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import NewTopic
from aiokafka.structs import TopicPartition

from app.kafka_reader import ReadError, TopicReader
from app.topology import admin_client
from tests.support.kafka import produce

pytestmark = pytest.mark.integration


async def create_topic(settings, name: str, partitions: int) -> None:
    admin = admin_client(settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def test_a_topic_created_after_the_reader_started_is_found_and_a_missing_one_is_named(settings):
    topic = settings.topic("hookstream.reader.later")
    async with TopicReader(settings, "test-reader") as reader:
        with pytest.raises(ReadError, match="does not exist"):
            await reader.partitions(settings.topic("hookstream.reader.never"))
        await create_topic(settings, topic, 3)
        assert await reader.partitions(topic) == [0, 1, 2]


async def test_ranges_and_single_offsets_read_exactly_what_was_asked(settings):
    topic = settings.topic("hookstream.reader.ranges")
    await create_topic(settings, topic, 1)
    await produce(settings, "hookstream.reader.ranges", [("k", f"v{i}".encode()) for i in range(10)])
    tp = TopicPartition(topic, 0)
    async with TopicReader(settings, "test-reader") as reader:
        assert await reader.bounds([tp]) == {tp: (0, 10)}
        read = [r.value async for batch in reader.read({tp: (2, 5)}) for r in batch[tp]]
        assert read == [b"v2", b"v3", b"v4"]
        found = await reader.read_at({tp: [7, 1, 50]}, timeout=10)
        assert {k: (r.value if r is not None else None) for k, r in found.items()} == {
            (topic, 0, 1): b"v1",
            (topic, 0, 7): b"v7",
            (topic, 0, 50): None,
        }


async def test_following_reads_every_partition_from_the_start_and_says_when_it_caught_up(settings):
    topic = settings.topic("hookstream.reader.follow")
    await create_topic(settings, topic, 2)
    await produce(settings, "hookstream.reader.follow", [(f"k{i}", f"v{i}".encode()) for i in range(20)])
    seen: list[bytes] = []

    async def follow() -> None:
        async with TopicReader(settings, "test-reader") as reader:
            async for records, caught_up in reader.follow(topic):
                seen.extend(r.value for r in records)
                if caught_up:
                    return

    await asyncio.wait_for(follow(), timeout=30)
    assert sorted(seen) == sorted(f"v{i}".encode() for i in range(20))
