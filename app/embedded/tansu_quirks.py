"""Workarounds for the tansu broker's quirks (docs/local-broker.md). Active only against tansu.

`install(settings)` is called by every process entry point (worker, replay,
lag); it does nothing unless `settings.embedded_broker == "tansu"`, so
production on Apache Kafka never runs any of this.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

from app.settings import Settings

log = logging.getLogger(__name__)

_installed = False

# Each patch marks the function it installs, so that a second install (another Settings in
# the same process) sees aiokafka already patched and does not wrap the wrapper.
_MARK = "_tansu_fixed"
F = TypeVar("F", bound=Callable[..., Any])


def _marked(fn: F) -> F:
    setattr(fn, _MARK, True)
    return fn


def _is_marked(fn: object) -> bool:
    return getattr(fn, _MARK, False) is True


def install(settings: Settings) -> None:
    global _installed
    if settings.embedded_broker != "tansu" or _installed:
        return
    _fix_list_offsets_latest()
    _fix_offsets_for_times_past_the_end()
    _fix_offset_fetch_of_all_partitions()
    _leave_group_at_generation_zero()
    _installed = True
    log.info(
        "tansu quirk workarounds active: ListOffsets LATEST, OffsetsForTimes past the end, "
        "OffsetFetch of all partitions, LeaveGroup at generation 0"
    )


def _fix_list_offsets_latest() -> None:
    """Quirk 1, "ListOffsets LATEST is wrong": tansu answers the base offset of the
    newest batch + 1, too low when that batch holds several records. Faust takes
    it as the changelog high-water mark (ConsistencyError, or a table missing its
    tail), and replay/lag would be wrong too. The Fetch response's high watermark
    is right: fetch one byte from `reported - 1` and take max(reported, highwater).
    """
    from aiokafka.consumer.fetcher import Fetcher
    from aiokafka.protocol.fetch import FetchRequest

    original = Fetcher.end_offsets
    if _is_marked(original):
        return

    async def end_offsets(self: Any, partitions: Any, timeout_ms: int) -> dict[Any, int]:
        reported = await original(self, partitions, timeout_ms)
        by_node: dict[int, list] = defaultdict(list)
        for tp, offset in reported.items():
            node = self._client.cluster.leader_for_partition(tp)
            if node is None or node < 0:
                continue
            by_node[node].append((tp, offset))
        fixed = dict(reported)
        for node, items in by_node.items():
            topics: dict[str, list] = defaultdict(list)
            for tp, offset in items:
                topics[tp.topic].append((tp.partition, max(offset - 1, 0), 1))
            request = FetchRequest(1, 0, 1, 0, list(topics.items()))
            response = await self._client.send(node, request)
            for topic, parts in response.topics:
                for partition, error_code, highwater, *_ in parts:
                    if error_code == 0:
                        from aiokafka.structs import TopicPartition

                        tp = TopicPartition(topic, partition)
                        fixed[tp] = max(fixed.get(tp, 0), highwater)
        return fixed

    Fetcher.end_offsets = _marked(end_offsets)


def _fix_offsets_for_times_past_the_end() -> None:
    """Quirk 6, "OffsetsForTimes past the end returns offset 0": Apache Kafka answers
    offset -1 (aiokafka: None) when no record is at or after the asked time; tansu
    answers offset 0 with timestamp -1, and a replay to that time would rewind the
    whole partition. tansu answers from the broker's append time, one batch at a
    time: a real answer's timestamp is never before the asked time, so an answer
    whose timestamp is before it (-1 included) means "no such record" -> None.
    """
    from aiokafka.consumer.fetcher import Fetcher

    original = Fetcher.get_offsets_by_times
    if _is_marked(original):
        return

    async def get_offsets_by_times(self: Any, timestamps: Any, timeout_ms: int) -> dict[Any, Any]:
        asked = dict(timestamps)
        answers = await original(self, timestamps, timeout_ms)
        for tp, answer in answers.items():
            if answer is not None and answer.timestamp < asked.get(tp, 0):
                answers[tp] = None
        return answers

    Fetcher.get_offsets_by_times = _marked(get_offsets_by_times)


def _fix_offset_fetch_of_all_partitions() -> None:
    """Quirk "OffsetFetch of all partitions fails": an OffsetFetch with null topics
    (KIP-88: every offset the group committed) gets a truncated response from tansu;
    aiokafka cannot decode it and drops the connection. The same request naming the
    partitions works, so name every partition of every topic in the cluster's
    metadata and keep the ones the group has an offset for (-1 means none).
    """
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.structs import TopicPartition

    original = AIOKafkaAdminClient.list_consumer_group_offsets
    if _is_marked(original):
        return

    async def list_consumer_group_offsets(
        self: Any, group_id: str, group_coordinator_id: int | None = None, partitions: Any = None
    ) -> dict[Any, Any]:
        if partitions:
            return await original(self, group_id, group_coordinator_id, partitions)
        metadata = await self._client.fetch_all_metadata()
        every = [
            TopicPartition(topic, p)
            for topic in sorted(metadata.topics())
            for p in sorted(metadata.partitions_for_topic(topic) or ())
        ]
        if not every:
            return {}
        found = await original(self, group_id, group_coordinator_id, every)
        return {tp: meta for tp, meta in found.items() if meta.offset >= 0}

    AIOKafkaAdminClient.list_consumer_group_offsets = _marked(list_consumer_group_offsets)


def _leave_group_at_generation_zero() -> None:
    """Quirk "group generations start at 0": Kafka numbers a group's first generation 1,
    tansu 0, and aiokafka sends LeaveGroup on close only when generation > 0. So the
    members of a fresh group never leave it, and tansu keeps them listed (it does not
    expire them either) until the next rebalance: a stopped worker still looks
    active, and offsets cannot be committed from outside the group. Leave at
    generation 0 too, as aiokafka does at any later generation.
    """
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from aiokafka.errors import KafkaError
    from aiokafka.protocol.group import LeaveGroupRequest

    original = GroupCoordinator._maybe_leave_group
    if _is_marked(original):
        return

    async def _maybe_leave_group(self: Any) -> None:
        if self.generation == 0 and self.member_id and self._group_instance_id is None:
            try:
                await self._send_req(LeaveGroupRequest(self.group_id, self.member_id))
            except KafkaError as err:
                log.error("LeaveGroup request failed: %s", err)
            self.reset_generation()
            return
        await original(self)

    GroupCoordinator._maybe_leave_group = _marked(_maybe_leave_group)
