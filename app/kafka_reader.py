"""Reading topics without a consumer group, and the one group request aiokafka's admin lacks.

`TopicReader` is a consumer that joins no group (no offsets committed, no
rebalance): it finds a topic's partitions (a topic created after it started
included), their bounds (the earliest and the true end offset), the offsets at
a time, and reads: given ranges of offsets (`read`), given offsets (`read_at`),
or a whole topic from its start and on for ever (`follow`). `hookstream
replay` and `lag` (app/offsets.py), the projection rebuild, the batch workers'
cancellations and `hookstream trace` all read through it.

This is the one module of app/ that touches aiokafka's private members (ruff's
SLF001 is allowed here only): aiokafka has no public way to refresh a
consumer's metadata for a topic it is not subscribed to, nor to send a
LeaveGroup for another member. Both are used as aiokafka 0.14 (pinned) has them.

Against the embedded broker the tansu workarounds must be active (the reader
installs them): the true end offsets and "no record at or after this time"
need them there (docs/local-broker.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.protocol.group import LeaveGroupRequest
from aiokafka.structs import ConsumerRecord, TopicPartition

from app.embedded import tansu_quirks
from app.settings import Settings

# (earliest, true end) of a partition: the offset of its first record and of the next one to come.
Bounds = tuple[int, int]
STALL_SECONDS = 60.0


class ReadError(Exception):
    """Kafka could not be read as asked (no broker, no such topic, a read that stalled); the message says what to do."""


class TopicReader:
    """A consumer that joins no group. Start it (`async with`), then ask it; one reader reads one
    thing at a time (each read assigns the partitions it reads)."""

    def __init__(
        self,
        settings: Settings,
        client_id: str,
        fetch_max_wait_ms: int = 100,
        max_partition_fetch_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.settings = settings
        tansu_quirks.install(settings)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id=client_id,
            enable_auto_commit=False,
            # an offset retention deleted meanwhile: go on from what is left, never jump to the end
            auto_offset_reset="earliest",
            # not 0: the embedded broker never answers a 0 ms fetch (docs/local-broker.md, row 7)
            fetch_max_wait_ms=max(fetch_max_wait_ms, 1),
            max_partition_fetch_bytes=max_partition_fetch_bytes,
            request_timeout_ms=15000,
        )

    async def start(self) -> None:
        try:
            await self.consumer.start()
        except (KafkaError, OSError) as exc:
            await self.consumer.stop()
            raise ReadError(
                f"cannot reach the Kafka broker at {self.settings.kafka_bootstrap_servers}: {exc}"
            ) from None

    async def stop(self) -> None:
        await self.consumer.stop()

    async def __aenter__(self) -> TopicReader:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- what there is ------------------------------------------------------------------------

    async def partitions(self, topic: str) -> list[int]:
        """The topic's partitions; `ReadError` when it does not exist."""
        found = await self._partitions(topic)
        if not found:
            raise ReadError(
                f"topic {topic} does not exist on the cluster: run `hookstream topics apply` "
                "(and check HOOKSTREAM_TOPIC_PREFIX)"
            )
        return found

    async def wait_for_partitions(self, topic: str, retry_seconds: float = 0.5) -> list[int]:
        """The topic's partitions, once it exists (a worker may start before `hookstream topics apply`)."""
        while not (found := await self._partitions(topic)):
            await asyncio.sleep(retry_seconds)
        return found

    async def _partitions(self, topic: str) -> list[int]:
        found = self.consumer.partitions_for_topic(topic)
        if not found:
            # Metadata is fetched for the topics a consumer knows: one created after start needs a refresh.
            await self.consumer._client.force_metadata_update()
            found = self.consumer.partitions_for_topic(topic)
        return sorted(found or ())

    async def bounds(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, Bounds]:
        """(earliest, true end) per partition."""
        tps = list(tps)
        if not tps:
            return {}
        earliest = await self.consumer.beginning_offsets(tps)
        end = await self.consumer.end_offsets(tps)
        return {tp: (earliest[tp], max(end[tp], earliest[tp])) for tp in tps}

    async def offsets_at(self, tps: Iterable[TopicPartition], when_ms: int) -> dict[TopicPartition, int | None]:
        """The first offset at or after `when_ms` per partition; None when the time is past the last record."""
        tps = list(tps)
        if not tps:
            return {}
        found = await self.consumer.offsets_for_times({tp: max(when_ms, 0) for tp in tps})
        return {tp: (found[tp].offset if found.get(tp) is not None else None) for tp in tps}

    # -- reading ------------------------------------------------------------------------------

    async def read(
        self, ranges: dict[TopicPartition, tuple[int, int]], stall_seconds: float = STALL_SECONDS
    ) -> AsyncIterator[dict[TopicPartition, list[ConsumerRecord]]]:
        """Every record in [start, stop) of each partition, in batches ({partition: its next records,
        in order}); ends when every partition reached its stop. A stop must not lie past the end:
        `ReadError` when no record came for `stall_seconds`."""
        todo = {TopicPartition(*tp): stop for tp, (start, stop) in ranges.items() if stop > start}
        if not todo:
            return
        self.consumer.assign(list(todo))
        for tp in todo:
            self.consumer.seek(tp, ranges[tp][0])
        idle_since = time.monotonic()
        while todo:
            batch = await self.consumer.getmany(*todo, timeout_ms=500, max_records=2000)
            wanted = {tp: [r for r in records if r.offset < todo.get(tp, -1)] for tp, records in batch.items()}
            if any(wanted.values()):
                yield {tp: records for tp, records in wanted.items() if records}
            for tp in list(todo):
                if await self.consumer.position(tp) >= todo[tp]:
                    del todo[tp]
                    self.consumer.pause(tp)  # no prefetching past its stop
            if batch:
                idle_since = time.monotonic()
            elif todo and time.monotonic() - idle_since > stall_seconds:
                where = ", ".join(
                    [
                        f"{tp.topic}[{tp.partition}] at {await self.consumer.position(tp)} of {stop}"
                        for tp, stop in todo.items()
                    ]
                )
                raise ReadError(f"reading stalled: no records for {stall_seconds:.0f} s ({where})")

    async def read_at(
        self, wanted: dict[TopicPartition, list[int]], timeout: float
    ) -> dict[tuple[str, int, int], ConsumerRecord | None]:
        """The record at each wanted offset, None where there is none (before the earliest, past the
        end, compacted away, or not read within `timeout` seconds). Reads from the wanted offsets on
        only: one seek per gap between them."""
        found: dict[tuple[str, int, int], ConsumerRecord | None] = {}
        if not wanted:
            return found
        tps = [TopicPartition(*tp) for tp in wanted]
        self.consumer.assign(tps)
        bounds = await self.bounds(tps)
        todo: dict[TopicPartition, list[int]] = {}
        for tp in tps:
            start, end = bounds[tp]
            offsets = sorted(wanted[tp])
            for o in offsets:
                if not start <= o < end:
                    found[(tp.topic, tp.partition, o)] = None
            todo[tp] = [o for o in offsets if start <= o < end]
            if todo[tp]:
                self.consumer.seek(tp, todo[tp][0])
            else:
                self.consumer.pause(tp)
        deadline = time.monotonic() + timeout
        while any(todo.values()) and time.monotonic() < deadline:
            batch = await self.consumer.getmany(timeout_ms=200, max_records=500)
            for tp, records in batch.items():
                need = todo[tp]
                for record in records:
                    if need and record.offset == need[0]:
                        found[(tp.topic, tp.partition, record.offset)] = record
                        need.pop(0)
                    while need and need[0] < record.offset:  # a compacted or missing offset
                        found[(tp.topic, tp.partition, need.pop(0))] = None
                if need and (not records or records[-1].offset < need[0] - 1):
                    self.consumer.seek(tp, need[0])  # skip the gap to the next wanted offset
                elif not need:
                    self.consumer.pause(tp)
        for tp, need in todo.items():
            for o in need:
                found.setdefault((tp.topic, tp.partition, o), None)
        return found

    async def follow(self, topic: str) -> AsyncIterator[tuple[list[ConsumerRecord], bool]]:
        """Every record of `topic` from the earliest offset of each partition on, for ever (waiting
        for the topic to exist), in batches: (records, whether the reader has reached the end each
        partition had when it began)."""
        tps = [TopicPartition(topic, p) for p in await self.wait_for_partitions(topic)]
        ends = {tp: end for tp, (_, end) in (await self.bounds(tps)).items()}
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        caught_up = False
        while True:
            batch = await self.consumer.getmany(timeout_ms=500)
            if not caught_up:
                caught_up = all([await self.consumer.position(tp) >= end for tp, end in ends.items()])
            yield [record for records in batch.values() for record in records], caught_up


async def leave_group(admin: Any, group: str, member_id: str) -> int:
    """Make the group's coordinator drop `member_id` (a LeaveGroup on its behalf: aiokafka's admin
    has no RemoveMembersFromConsumerGroup); the error code answered, 0 when it left."""
    node = await admin.find_coordinator(group)
    response = await admin._client.send(node, LeaveGroupRequest(group, member_id))
    return int(response.error_code)
