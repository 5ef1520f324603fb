"""Which jobs were cancelled: every worker reads `hookstream.sync.cancellations` whole.

The topic is compacted and small (one record per cancelled job), so each worker
follows all of its partitions with a group-less reader (`app.kafka_reader`) and keeps the job ids
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

from app import codec
from app.events import JobCancelled
from app.kafka_reader import TopicReader
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
        async with TopicReader(self.settings, "hookstream-cancellations") as reader:
            async for records, caught_up in reader.follow(topic):
                for m in records:
                    try:
                        self.jobs.add(codec.decode(JobCancelled, m.value).job_id)
                    except codec.DecodeError as exc:
                        log.error("undecodable cancellation at %s[%d]@%d: %s", topic, m.partition, m.offset, exc)
                        if self.on_undecodable is not None:
                            await self.on_undecodable(m, "decode", str(exc))
                if caught_up:
                    self.caught_up.set()
