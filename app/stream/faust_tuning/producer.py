"""Faust's producer side, as hookstream runs it: points 3 and 4 of `app.stream.faust_tuning`."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import MessageAccumulator
from aiokafka.structs import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka

from app.stream.faust_tuning import guard

log = logging.getLogger(__name__)

guard.keep_original("faust.transport.drivers.aiokafka:Producer._producer_type")  # replaced by install_node_batching


class NodeBatchingAccumulator(MessageAccumulator):
    """aiokafka's accumulator, draining whole brokers and flushing without waiting out the linger."""

    def drain_by_nodes(self, ignore_nodes, muted_partitions=frozenset()):
        nodes, unknown_leaders_exist = super().drain_by_nodes(ignore_nodes, muted_partitions)
        if nodes:
            # A request goes to these brokers anyway: take their other partitions' batches along.
            for tp in list(self._batches.keys()):
                if tp in muted_partitions:
                    continue
                node_batches = nodes.get(self._cluster.leader_for_partition(tp))
                if node_batches is None or tp in node_batches:
                    continue
                batch = self._pop_batch(tp)
                if batch.is_empty():
                    batch.done_noack()
                else:
                    node_batches[tp] = batch
        return nodes, unknown_leaders_exist

    # The app's `Output` (point 4), once it sent something: told how each batch ended.
    _output: Output | None = None

    def _append_batch(self, builder, tp):
        batch = super()._append_batch(builder, tp)
        output = self._output
        if output is not None and tp.topic in output.topics:
            batch.future.add_done_callback(functools.partial(output.batch_done, batch))
        return batch

    async def flush(self) -> None:
        for batches in self._batches.values():
            for batch in batches:
                # Ready now, yet still open: a send meanwhile joins it instead of waiting
                # for it to drain (flush_for_commit closes the builder; that would block sends).
                batch._linger_time = 0
        if not self._waiter_future.done():
            self._waiter_future.set_result(None)  # wake the sender
        await super().flush()


class NodeBatchingProducer(AIOKafkaProducer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The sender holds the same object: swapping its class changes both.
        self._message_accumulator.__class__ = NodeBatchingAccumulator


def install_node_batching() -> None:
    faust_aiokafka.Producer._producer_type = property(lambda self: NodeBatchingProducer)  # type: ignore[assignment]


class Output:
    """An agent's sends, straight into the worker's producer (point 4). One per app.

    `send` puts the record into the accumulator of the aiokafka producer Faust runs, as
    `AIOKafkaProducer.send` does (same partitioner, same timeout), without the layers
    around it (Faust's `Producer.send`, the sensors, the per-record checks of
    aiokafka's `send` for transactions and serializers, which hookstream does not use).
    Outcomes are taken per produce batch, not per record: a batch that fails crashes
    the worker (its records are replayed from the last commit), and a listener of the
    topic is told the batch's last offset once it is acknowledged. The commit still
    flushes the producer first, so nothing sent for an event is lost after its offset
    is committed.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.producer: Any = None
        self.topics: set[str] = set()
        self.acked: dict[str, Callable[[Any, int], None]] = {}
        self._tps: dict[tuple[str, int], Any] = {}
        self._partitions: dict[tuple[str, bytes, int], int] = {}

    @classmethod
    def of(cls, app: Any) -> Output:
        found = getattr(app, "_hookstream_output", None)
        if found is None:
            found = app._hookstream_output = cls(app)
        return found

    def _bind(self) -> Any:
        producer = self.app.producer._ensure_producer()
        accumulator = producer._message_accumulator
        if not isinstance(accumulator, NodeBatchingAccumulator):
            raise TypeError("Output needs the NodeBatchingProducer (faust_tuning point 3)")
        accumulator._output = self
        self.producer = producer
        self._watch_open(accumulator, self.topics)  # a producer Faust replaced: its open batches
        return producer

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        record_future: bool = True,
    ) -> None:
        """`record_future=False`: into the partition's open batch without the future aiokafka makes
        per record (and resolves with a RecordMetadata when the batch is acknowledged). Nothing
        waits for it: the batch's outcome is watched as every batch of a watched topic is. Only for
        a topic no listener takes offsets of (`acked`): a listener reads the last record's."""
        producer = self.producer
        if producer is None or producer is not self.app.producer._producer:
            producer = self._bind()
        if topic not in self.topics:
            await producer.client._wait_on_metadata(topic)
            self.watch(topic)
        if partition is None:
            partition = self._partition_of(producer, topic, key, value)
        tp = self._tps.get((topic, partition))
        if tp is None:
            tp = self._tps[(topic, partition)] = TopicPartition(topic, partition)
        accumulator = producer._message_accumulator
        if not record_future and topic not in self.acked:
            open_batches = accumulator._batches.get(tp)
            # aiokafka's add_message appends to the same batch (its last open one); a closed or full
            # one refuses, and add_message below opens the next (or waits for room).
            if open_batches and open_batches[-1]._builder.append(timestamp=None, key=key, value=value) is not None:
                return
        await accumulator.add_message(tp, key, value, producer._request_timeout_ms / 1000)

    def _partition_of(self, producer: Any, topic: str, key: bytes | None, value: bytes | None) -> int:
        """aiokafka's partitioner (murmur2 in Python), remembered per key and partition count."""
        if key is None:
            return producer._partition(topic, None, key, value, key, value)
        cache_key = (topic, key, len(producer._metadata._partitions.get(topic, ())))
        partition = self._partitions.get(cache_key)
        if partition is None:
            partition = producer._partition(topic, None, key, value, key, value)
            if len(self._partitions) >= 100_000:
                self._partitions.clear()
            self._partitions[cache_key] = partition
        return partition

    def watch(self, topic: str) -> None:
        """Take the outcome of `topic`'s batches, the open ones included (a record sent now may
        join a batch another sender opened)."""
        if topic in self.topics:
            return
        self.topics.add(topic)
        self._watch_open((self.producer or self._bind())._message_accumulator, {topic})

    def _watch_open(self, accumulator: Any, topics: set[str]) -> None:
        for tp, batches in list(accumulator._batches.items()):
            if tp.topic in topics:
                for batch in batches:
                    batch.future.add_done_callback(functools.partial(self.batch_done, batch))

    def batch_done(self, batch: Any, fut: asyncio.Future) -> None:
        if fut.cancelled() or fut.exception() is not None:
            _send_failed(self.app, fut)
            return
        meta = fut.result()
        listener = self.acked.get(batch.tp.topic)
        if meta is not None and listener is not None and batch._msg_futures:
            listener(batch.tp, meta.offset + batch._msg_futures[-1][1].offset)


class TableWriter:
    """`table[key] = value` for a raw-bytes, non-windowed RocksDB table, from inside its agent (point 4).

    Reads and writes go to the partition's database directly (the event's partition, as
    the store itself picks it), without the serializer layer, the context-variable
    lookup and the key-index LRU (a lock and a reorder per write; the index only
    narrows which databases a key-less lookup or a delete searches, and those search
    every database without it). The changelog record goes out through `Output`; the
    persisted offset Faust writes to RocksDB after each acknowledged changelog record
    is written once per acknowledged batch, its last offset: recovery reads the
    changelog from there, as it would have.
    """

    def __init__(self, table: Any) -> None:
        from faust.stores.rocksdb import Store as RocksDBStore

        if table.window is not None or table.key_serializer != "raw" or table.value_serializer != "raw":
            raise ValueError(f"TableWriter writes raw-bytes, non-windowed tables only: {table!r}")
        if not isinstance(table.data, RocksDBStore):
            raise ValueError(f"TableWriter writes RocksDB tables only: {table!r}")
        self.table = table
        self.store = table.data
        self.topic = table.changelog_topic.get_topic_name()
        self.output = Output.of(table.app)
        self.output.acked[self.topic] = self.store.set_persisted_offset
        without_wal(self.store)

    def get(self, key: bytes, partition: int) -> bytes | None:
        """The stored value of `key` for an event of `partition` (as `table.data.get(key)` in the agent)."""
        return self.store._db_for_partition(partition).get(key)

    async def set(self, key: bytes, value: bytes) -> None:
        # The current event's partition, as Table.on_key_set.
        await self.write(key, value, self.table.partition_for_key(key))

    async def write(self, key: bytes, value: bytes | None, partition: int) -> None:
        """Store `value` for `key` in `partition`'s database and send its changelog record to that
        partition; `value=None` deletes the key there and sends a tombstone (as `del table[key]`
        from an event of `partition`, which deletes the key from every database holding it: here
        from the one `get(key, partition)` reads, where the table's writes put it).

        The database is written before anything awaits: a caller that read the key just before
        writes on what it read."""
        db = self.store._db_for_partition(partition)
        if value is None:
            db.delete(key)
        else:
            db.put(key, value)
        await self.output.send(self.topic, key, value, partition)


def without_wal(store: Any) -> None:
    """Write the store's RocksDB databases without their write-ahead log.

    The changelog topic is the table's log: a database is a cache of it, and the
    persisted offset (in the same database) says where recovery resumes reading it.
    Without the WAL a crash loses the writes since the last memtable flush, and
    since a flush persists memtables in write order what survives is a prefix of the
    writes: every persisted offset in it comes after the data of the changelog
    records up to that offset (data is written before its record is sent, the offset
    after the record is acknowledged). Recovery then reads the changelog from that
    offset and writes the rest again (tests/integration/test_dedup_faults.py kills a
    worker with SIGKILL and restarts it on the same directory). A clean close flushes
    the memtables. Saves a write() to the WAL file per table write.
    """
    import rocksdict

    rocksdb_options = store.rocksdb_options
    if getattr(rocksdb_options, "_hookstream_without_wal", False):
        return
    options = rocksdict.WriteOptions()
    options.disable_wal = True  # type: ignore[method-assign,assignment]  # a property at run time; rocksdict's stub says method
    open_db = rocksdb_options.open

    def open_without_wal(path: Any, *, read_only: bool = False) -> Any:
        db = open_db(path, read_only=read_only)
        db.set_write_options(options)
        return db

    rocksdb_options.open = open_without_wal
    rocksdb_options._hookstream_without_wal = True
    for db in store._dbs.values():
        db.set_write_options(options)


async def send_raw(app: Any, topic: str, key: bytes | None, value: bytes | None) -> None:
    """Produce bytes through the worker's producer (`Output`); flushed before the next commit."""
    await Output.of(app).send(topic, key, value)


def _send_failed(app: Any, fut: asyncio.Future) -> None:
    exc = asyncio.CancelledError() if fut.cancelled() else fut.exception()
    log.error("a record could not be produced (%r): crashing the worker so that it is replayed", exc)
    asyncio.ensure_future(app.crash(exc))
