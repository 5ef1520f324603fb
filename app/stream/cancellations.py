"""Which jobs were cancelled: every worker reads `hookstream.sync.cancellations` whole.

The topic is compacted and small (one record per cancelled job), so each worker
follows all of its partitions with a group-less consumer and keeps the job ids
in memory; batch workers ask it before starting a batch. It is a best-effort
skip: a batch that starts before its cancellation arrives is still counted
once by the fold, or ignored there if the job already finished. A record that
does not decode is dead-lettered (`on_undecodable`), like on every topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from app import codec
from app.events import JobCancelled
from app.settings import Settings

log = logging.getLogger(__name__)


class CancelledJobs:
    def __init__(
        self, settings: Settings, on_undecodable: Callable[[Any, str, str], Awaitable[None]] | None = None
    ) -> None:
        self.settings = settings
        # (message, stage, reason): where a record that does not decode goes (DeadLetters.send).
        self.on_undecodable = on_undecodable
        self.jobs: set[str] = set()
        self.caught_up = asyncio.Event()

    def __contains__(self, job_id: str) -> bool:
        return job_id in self.jobs

    async def follow(self) -> None:
        topic = self.settings.topic("hookstream.sync.cancellations")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic)
            while not partitions:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic)
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    for m in messages:
                        try:
                            self.jobs.add(codec.decode(JobCancelled, m.value).job_id)
                        except codec.DecodeError as exc:
                            log.error("undecodable cancellation at %s[%d]@%d: %s", topic, m.partition, m.offset, exc)
                            if self.on_undecodable is not None:
                                await self.on_undecodable(m, "decode", str(exc))
                if not self.caught_up.is_set() and await _caught_up(consumer, ends):
                    self.caught_up.set()
        finally:
            await consumer.stop()


async def _caught_up(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True
