"""`deduplicate_deliveries`: consume deliveries, drop redeliveries inside the window, route the rest.

A thin shell: decode, load the entry, `core.intake.process`, store, send, count.
The dedup table is RocksDB-backed, keyed by the delivery key and co-partitioned
with `hookstream.deliveries` through its explicit changelog topic.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

from app import codec
from app.core import intake
from app.core.dedup import DedupEntry, purgeable
from app.events import DeadLettered, Delivery, utcnow
from app.plugins import get_plugin
from app.stream.app import Worker

log = logging.getLogger(__name__)

PURGE_CHUNK = 2000


def register(worker: Worker) -> None:
    app, settings, metrics = worker.app, worker.settings, worker.metrics
    deliveries = worker.topic("hookstream.deliveries")
    changelog = worker.topic("hookstream.dedup.changelog")
    dedup_table = app.Table(
        "dedup",
        default=None,
        partitions=8,
        changelog_topic=changelog,
        key_type=bytes,
        value_type=bytes,
    )
    worker.topics["dedup_table"] = dedup_table
    sinks = {name: worker.topic(name) for name in (intake.CONTROL, intake.DLQ)}
    deliveries_topic_name = settings.topic("hookstream.deliveries")

    def router_for(delivery: Delivery):
        instance = worker.instances.get((delivery.plugin, delivery.instance))
        if instance is None:
            return None, None
        plugin = get_plugin(delivery.plugin)
        return instance.dedup_window_seconds, (lambda d: plugin.route(d, instance))

    @app.agent(deliveries, name="deduplicate_deliveries", concurrency=1)
    async def deduplicate_deliveries(stream):
        async for event in stream.events():
            message = event.message
            key_bytes = message.key or b""
            try:
                delivery = codec.decode(Delivery, message.value)
            except codec.DecodeError as exc:
                record = DeadLettered(
                    dead_letter_id=hashlib.sha256(key_bytes + message.value).hexdigest()[:24],
                    key=key_bytes.decode("utf-8", "replace"), stage="decode", error=str(exc)[:2000],
                    failed_at=utcnow(), source_topic=deliveries_topic_name,
                    source_partition=message.partition, source_offset=message.offset, raw=message.value,
                )
                metrics.dead_lettered.labels("unknown", "decode").inc()
                await sinks[intake.DLQ].send(key=key_bytes, value=codec.encode(record))
                continue
            metrics.received.labels(delivery.plugin).inc()
            stored = dedup_table.get(key_bytes)
            entry = DedupEntry.from_bytes(stored) if stored is not None else None
            window, route = router_for(delivery)
            outcome = intake.process(
                delivery, entry, message.partition, message.offset, deliveries_topic_name, window, route
            )
            if outcome.store is intake.DELETE:
                dedup_table.pop(key_bytes, None)
            elif isinstance(outcome.store, DedupEntry):
                dedup_table[key_bytes] = outcome.store.to_bytes()
            for send in outcome.sends:
                await sinks[send.topic].send(key=codec.encode_key(send.key), value=codec.encode(send.record))
                if send.topic == intake.CONTROL:
                    metrics.events.labels(delivery.plugin, send.record.type).inc()
            _count(metrics, delivery.plugin, outcome)

    @app.timer(interval=settings.dedup_purge_interval_seconds, on_leader=False)
    async def purge_expired_dedup_entries():
        """Delete entries past their window (Faust window expiry is unreliable after restarts).

        A tombstone goes to the changelog partition the entry was made on (the
        entry stores it), then the local store forgets the key.
        """
        now = time.time()
        expired: list[tuple[bytes, int]] = []
        live = 0
        for i, (key, raw) in enumerate(dedup_table.data.items()):
            if raw is None:
                continue
            live += 1
            entry = DedupEntry.from_bytes(raw)
            if purgeable(entry, now):
                expired.append((key, entry.partition))
            if i % PURGE_CHUNK == PURGE_CHUNK - 1:
                await asyncio.sleep(0)
        for j, (key, partition) in enumerate(expired):
            dedup_table.send_changelog(partition, key, None, key_serializer="raw", value_serializer="raw")
            dedup_table.data.pop(key, None)
            if j % PURGE_CHUNK == PURGE_CHUNK - 1:
                await asyncio.sleep(0)
        metrics.dedup_entries.set(live - len(expired))
        if expired:
            metrics.purged.inc(len(expired))
            log.info("purged %d dedup entries past their window", len(expired))


def _count(metrics, plugin: str, outcome: intake.Outcome) -> None:
    if outcome.counted == "duplicate":
        metrics.duplicates.labels(plugin).inc()
    elif outcome.counted == "routed":
        metrics.routed.labels(plugin).inc()
    elif outcome.counted == "ignored":
        metrics.ignored.labels(plugin, outcome.rule).inc()
    elif outcome.counted == "dead_lettered":
        metrics.dead_lettered.labels(plugin, outcome.rule).inc()
