"""Workarounds for the tansu broker's quirks (BROKER.md). Active only against tansu.

`install(settings)` is called by every process entry point (worker, replay,
lag); it does nothing unless `settings.embedded_broker == "tansu"`, so
production on Apache Kafka never runs any of this.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from app.settings import Settings

log = logging.getLogger(__name__)

_installed = False


def install(settings: Settings) -> None:
    global _installed
    if settings.embedded_broker != "tansu" or _installed:
        return
    _fix_list_offsets_latest()
    _installed = True
    log.info("tansu quirk workarounds active: ListOffsets LATEST")


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
    if getattr(original, "_tansu_fixed", False):
        return

    async def end_offsets(self, partitions, timeout_ms):
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

    end_offsets._tansu_fixed = True  # type: ignore[attr-defined]
    Fetcher.end_offsets = end_offsets
