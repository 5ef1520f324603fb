"""`deduplicate_deliveries`: consume deliveries, drop redeliveries inside the window, route the rest.

A thin shell: decode, load the entry, `core.intake.process`, store, send, count.
The dedup table is RocksDB-backed, keyed by the delivery key and co-partitioned
with `hookstream.deliveries` through its explicit changelog topic.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging

from app import codec
from app.core import intake, labels, ledger, poison
from app.core.dedup import DedupEntry, purgeable
from app.events import DeadLettered, Delivery, utcnow
from app.instances import PLUGINS
from app.plugins import get_plugin
from app.stream import faust_tuning
from app.stream.app import Worker

log = logging.getLogger(__name__)

PURGE_CHUNK = 2000


def register(worker: Worker) -> None:
    app, settings, metrics = worker.app, worker.settings, worker.metrics
    deliveries = worker.topic("hookstream.deliveries")
    changelog = worker.changelog_topic("hookstream.dedup.changelog")
    dedup_table = app.Table(
        "dedup",
        default=None,
        partitions=8,
        changelog_topic=changelog,
        key_type=bytes,
        value_type=bytes,
    )
    worker.topics["dedup_table"] = dedup_table
    sink_names = {name: settings.topic(name) for name in (intake.CONTROL, intake.DLQ)}
    outcomes_topic = settings.topic(ledger.OUTCOMES_TOPIC)
    deliveries_topic_name = settings.topic("hookstream.deliveries")
    routers: dict[tuple[str, str], tuple[float | None, object]] = {}
    counters = _Counters(metrics)
    # Newest event time consumed per partition: the purge's clock. Entries expire in event
    # time, so a worker working through a backlog (or old event times) must not purge by
    # the wall clock an entry that a redelivery still inside its window would need.
    stream_time: dict[int, float] = {}

    def router_for(delivery: Delivery):
        """(window, route) of the delivery's instance, (None, None) when it is not configured."""
        found = routers.get((delivery.plugin, delivery.instance))
        if found is None:
            instance = worker.instances.get((delivery.plugin, delivery.instance))
            if instance is None:
                return None, None  # not cached: an instance may be configured later
            plugin = get_plugin(delivery.plugin)
            found = routers[(delivery.plugin, delivery.instance)] = (
                instance.dedup_window_seconds,
                functools.partial(plugin.route, instance=instance),
            )
        return found

    @app.agent(deliveries, name="deduplicate_deliveries", concurrency=1)
    async def deduplicate_deliveries(stream):
        # Table reads and writes go through faust_tuning (same partitions, same at-least-once, fewer layers).
        table_writer = faust_tuning.TableWriter(dedup_table)
        output = faust_tuning.Output.of(app)
        async for event in faust_tuning.events(stream):
            message = event.message
            key_bytes = message.key or b""
            try:
                delivery = codec.decode(Delivery, message.value)
            except codec.DecodeError as exc:
                record = poison.bounded(
                    DeadLettered(
                        dead_letter_id=hashlib.sha256(key_bytes + message.value).hexdigest()[:24],
                        key=key_bytes.decode("utf-8", "replace"),
                        stage="decode",
                        error=str(exc)[:2000],
                        failed_at=utcnow(),
                        source_topic=deliveries_topic_name,
                        source_partition=message.partition,
                        source_offset=message.offset,
                        raw=message.value,
                    ),
                    message.value,
                )
                metrics.dead_lettered.labels("unknown", "decode").inc()
                metrics.records_dead_lettered.labels("deduplicate_deliveries", "decode").inc()
                await faust_tuning.send_raw(app, sink_names[intake.DLQ], key_bytes, codec.encode(record))
                await output.send(
                    outcomes_topic,
                    key_bytes,
                    codec.encode_fields(
                        ledger.undecodable_fields(
                            record.key, message.partition, message.offset, record.error, record.failed_at
                        )
                    ),
                    message.partition,
                    record_future=False,
                )
                continue
            count = counters.of(delivery.plugin)
            count.received.inc()
            seen = delivery.received_at.timestamp()
            if seen > stream_time.get(message.partition, 0.0):
                stream_time[message.partition] = seen
            stored = table_writer.get(key_bytes, message.partition)
            entry = DedupEntry.from_bytes(stored) if stored is not None else None
            window, route = router_for(delivery)
            outcome = intake.process(
                delivery, entry, message.partition, message.offset, deliveries_topic_name, window, route
            )
            if outcome.store is intake.DELETE:
                dedup_table.pop(key_bytes, None)
            elif outcome.store is not None:
                await table_writer.set(key_bytes, outcome.store.to_bytes())
            for send in outcome.sends:
                await faust_tuning.send_raw(
                    app, sink_names[send.topic], codec.encode_key(send.key), codec.encode(send.record)
                )
                if send.topic == intake.CONTROL:
                    counters.event(delivery.plugin, send.record.type).inc()
            # The ledger's record of this copy, after its effects. The outcomes topic is keyed and
            # partitioned like the deliveries: the copy's own partition, with no partitioner run, and
            # no per-record future (its batch's outcome is watched; nothing awaits the record).
            await output.send(
                outcomes_topic,
                key_bytes,
                codec.encode_fields(ledger.outcome_fields(delivery, message.partition, message.offset, outcome)),
                message.partition,
                record_future=False,
            )
            count.count(outcome)

    @app.timer(interval=settings.dedup_purge_interval_seconds, on_leader=False)
    async def purge_expired_dedup_entries():
        """Delete entries past their window (Faust window expiry is unreliable after restarts).

        An entry is past its window when its partition's stream time (the newest event
        time consumed there) reached its expiry. A tombstone goes to the changelog
        partition the entry was made on (the entry stores it), then the local store
        forgets the key.
        """
        expired: list[tuple[bytes, int]] = []
        live = 0
        for i, (key, raw) in enumerate(dedup_table.data.items()):
            if raw is None:
                continue
            live += 1
            entry = DedupEntry.from_bytes(raw)
            if purgeable(entry, stream_time.get(entry.partition, 0.0)):
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


class _Counters:
    """The agent's counter children, looked up once per label set instead of per event.

    Label values are bounded (app/core/labels.py): a plugin name from a record is a
    label only when it is a known plugin, an ignore rule only among the first
    `WorkerMetrics.ignore_rules` distinct ones.
    """

    def __init__(self, metrics) -> None:
        self.metrics = metrics
        self.plugins: dict[str, _PluginCounters] = {}
        self.events: dict[tuple[str, str], object] = {}

    def of(self, plugin: str) -> _PluginCounters:
        found = self.plugins.get(plugin)
        if found is None:
            label = labels.one_of(plugin, PLUGINS)
            found = self.plugins.get(label) or _PluginCounters(self.metrics, label)
            self.plugins[label] = found
            if label == plugin:
                self.plugins[plugin] = found
        return found

    def event(self, plugin: str, event_type: str):
        found = self.events.get((plugin, event_type))
        if found is None:
            label = labels.one_of(plugin, PLUGINS)
            found = self.metrics.events.labels(label, event_type)  # types: the wire models' literals
            if label == plugin:
                self.events[(plugin, event_type)] = found
        return found


class _PluginCounters:
    def __init__(self, metrics, plugin: str) -> None:
        self.metrics, self.plugin = metrics, plugin
        self.received = metrics.received.labels(plugin)
        self.duplicates = metrics.duplicates.labels(plugin)
        self.routed = metrics.routed.labels(plugin)
        self.ignored: dict[str, object] = {}

    def count(self, outcome: intake.Outcome) -> None:
        if outcome.counted == "duplicate":
            self.duplicates.inc()
        elif outcome.counted == "routed":
            self.routed.inc()
        elif outcome.counted == "ignored":
            child = self.ignored.get(outcome.rule)
            if child is None:
                child = self.metrics.ignored.labels(self.plugin, self.metrics.ignore_rule(outcome.rule))
                if len(self.ignored) < 1000:  # the rules are sender-chosen: a bounded cache
                    self.ignored[outcome.rule] = child
            child.inc()  # type: ignore[attr-defined]
        elif outcome.counted == "dead_lettered":
            self.metrics.dead_lettered.labels(self.plugin, outcome.rule).inc()
            self.metrics.records_dead_lettered.labels("deduplicate_deliveries", outcome.rule).inc()
