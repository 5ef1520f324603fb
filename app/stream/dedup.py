"""`deduplicate_deliveries`: consume deliveries, drop redeliveries inside the window, route the rest.

A thin shell: decode, tick the partition's clock (`core.dedup.tick`), load the entry,
`core.intake.process`, store, send, count. The dedup table is RocksDB-backed, keyed by
the delivery key and co-partitioned with `hookstream.deliveries` through its explicit
changelog topic; `DedupTable` is its one way in and out. A record that does not decode,
is dead-lettered as every agent does (`app.stream.poison.DeadLetters`); one whose broker
timestamp gives no clock is dead-lettered by the core (`intake.refused`), as its other
delivery dead letters are.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from app import codec
from app.core import dedup, intake, labels, ledger
from app.core.dedup import DedupEntry, purgeable
from app.events import Delivery, utcnow
from app.instances import PLUGINS
from app.plugins import get_plugin
from app.stream import faust_tuning
from app.stream.app import Worker
from app.stream.poison import DeadLetters

log = logging.getLogger(__name__)

AGENT = "deduplicate_deliveries"
DELIVERIES = "hookstream.deliveries"
PURGE_CHUNK = 2000


class DedupTable:
    """The dedup table's one read and one write path (faust_tuning's `TableWriter`).

    Every decision outcome goes through `put`: an entry stored for a key, or the key
    forgotten (a dead-lettered delivery releases it; the purge drops an expired one).
    A write goes to the database of the partition the entry belongs to and sends its
    changelog record (a tombstone for a forgotten key) to that partition.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self._writer: Any = None

    @property
    def writer(self) -> Any:
        # Built at first use, once the worker runs (its store is open then); one for the agent
        # and the purge, so that the changelog's acknowledged offsets have one listener.
        if self._writer is None:
            self._writer = faust_tuning.TableWriter(self.table)
        return self._writer

    def get(self, key: bytes, partition: int) -> DedupEntry | None:
        stored = self.writer.get(key, partition)
        return DedupEntry.from_bytes(stored) if stored is not None else None

    async def put(self, key: bytes, entry: DedupEntry | None, partition: int) -> None:
        """Store `entry` for `key` (None: forget the key) in `partition`."""
        await self.writer.write(key, entry.to_bytes() if entry is not None else None, partition)


def register(worker: Worker) -> None:
    app, settings, metrics = worker.app, worker.settings, worker.metrics
    deliveries = worker.topic(DELIVERIES)
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
    table = DedupTable(dedup_table)
    dead_letters = DeadLetters.of(worker, AGENT, DELIVERIES)
    sink_names = {name: settings.topic(name) for name in (intake.CONTROL, intake.DLQ)}
    outcomes_topic = settings.topic(ledger.OUTCOMES_TOPIC)
    deliveries_topic_name = settings.topic(DELIVERIES)
    routers: dict[tuple[str, str], tuple[float | None, object]] = {}
    counters = _Counters(metrics)
    # The stream clock of each partition (core.dedup.tick): the newest broker timestamp consumed
    # there, never moving back. Entries are made, expire and are purged in it: not the wall clock
    # (a backlog's entries would be purged while a redelivery inside their window may still come),
    # nor a time the records carry (a sender could expire every key of a partition at once).
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

    @app.agent(deliveries, name=AGENT, concurrency=1)
    async def deduplicate_deliveries(stream):
        output = faust_tuning.Output.of(app)

        async def record_outcome(key: bytes, partition: int, fields: dict[str, Any]) -> None:
            # The ledger's record of this copy, after its effects. The outcomes topic is keyed and
            # partitioned like the deliveries: the copy's own partition, with no partitioner run, and
            # no per-record future (its batch's outcome is watched; nothing awaits the record).
            await output.send(outcomes_topic, key, codec.encode_fields(fields), partition, record_future=False)

        async for event in faust_tuning.events(stream):
            message = event.message
            key_bytes = message.key or b""
            partition = message.partition
            try:
                delivery = codec.decode(Delivery, message.value)
            except codec.DecodeError as exc:
                record = await dead_letters.dead_letter(message, "decode", str(exc))
                metrics.dead_lettered.labels("unknown", "decode").inc()
                await record_outcome(
                    key_bytes,
                    partition,
                    ledger.undecodable_fields(record.key, partition, message.offset, record.error, record.failed_at),
                )
                continue
            count = counters.of(delivery.plugin)
            count.received.inc()
            timestamp = message.timestamp  # Faust's: the broker timestamp in seconds
            clock = dedup.tick(stream_time.get(partition), round(timestamp * 1000) if timestamp is not None else None)
            if clock.refusal is not None or clock.now is None:  # no clock to decide in
                reason = clock.refusal or "the record has no broker timestamp"
                outcome = intake.refused(delivery, reason, partition, message.offset, deliveries_topic_name, utcnow())
            else:
                stream_time[partition] = clock.now
                window, route = router_for(delivery)
                outcome = intake.process(
                    delivery,
                    table.get(key_bytes, partition),
                    partition,
                    message.offset,
                    deliveries_topic_name,
                    window,
                    route,
                    now=clock.now,
                )
            if outcome.store is not None:
                await table.put(key_bytes, None if outcome.store is intake.DELETE else outcome.store, partition)
            for send in outcome.sends:
                await faust_tuning.send_raw(
                    app, sink_names[send.topic], codec.encode_key(send.key), codec.encode(send.record)
                )
                if send.topic == intake.CONTROL:
                    counters.event(delivery.plugin, send.record.type).inc()
            await record_outcome(
                key_bytes, partition, ledger.outcome_fields(delivery, partition, message.offset, outcome)
            )
            count.count(outcome)

    @app.timer(interval=settings.dedup_purge_interval_seconds, on_leader=False)
    async def purge_expired_dedup_entries():
        """Delete entries past their window (Faust window expiry is unreliable after restarts).

        An entry is past its window when its partition's stream time (the newest broker
        timestamp consumed there) reached its expiry. It is forgotten through the table's
        one write path, in the partition it was made on (the entry stores it): a tombstone
        to that changelog partition. Each is read again just before it is deleted: the
        agent may have stored a fresh entry for the key since the scan.
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
        purged = 0
        for j, (key, partition) in enumerate(expired):
            entry = table.get(key, partition)
            if entry is not None and purgeable(entry, stream_time.get(partition, 0.0)):
                await table.put(key, None, partition)
                purged += 1
            if j % PURGE_CHUNK == PURGE_CHUNK - 1:
                await asyncio.sleep(0)
        metrics.dedup_entries.set(live - purged)
        if purged:
            metrics.purged.inc(purged)
            log.info("purged %d dedup entries past their window", purged)


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
