"""Every change hookstream makes to Faust's own behaviour, in one place (PERF.md has the figures).

`install(app)` is called by `create_worker`. It changes three things, fixes two
ways Faust loses records (5, 6), and (4) is a faster way for an agent to write a table:

1. **The consumer's per-message hand-off** (`Consumer._drain_messages`). Faust runs
   `wait_first(callback(message), suspend_flow.wait())` for every message: four
   tasks and an `asyncio.wait` per event, so that a rebalance (`stop_flow()`), a
   stop or a crash can interrupt a callback that is *blocked* (a full stream
   buffer, flow control, a full producer buffer). `deliver` runs the callback
   inline up to its first suspension point instead; only a callback that really
   blocks is handed to the very same `wait_first` race, resumed where it stopped.
   A callback that did not block could not have been interrupted under Faust's
   own scheme either (its task would have run to completion in one step), and
   while the flow is suspended Faust's path is taken unchanged. Acking and commit
   order are untouched: the loop is Faust 0.15.3's, line for line, but for that call
   and the gap handling of point 6.
   Safe because: see tests/unit/test_faust_tuning.py (a blocked callback is still
   interrupted by stop_flow, stop and crash; errors propagate; the loop matches
   Faust's source) and the SIGKILL and rebalance tests in tests/integration.

2. **The Monitor sensor** (`LeanMonitor`): Faust's default Monitor keeps per-event
   statistics (latency deques, counters by stream/task/topic, timestamps on every
   message) that nothing in hookstream reads: the worker exports its own
   Prometheus counters. The lean one keeps only what Faust itself consults,
   `stream_inbound_time` (the livelock detector's "stream stopped processing"
   check), and the infrequent commit/rebalance/assignment bookkeeping.

3. **How the worker's producer fills produce requests** (`NodeBatchingProducer`, the
   aiokafka producer Faust creates). aiokafka sends a partition's batch only once
   *that* batch has lingered, so 16 output partitions make up to 16 small produce
   requests per linger period, one in flight at a time; and `flush()`, which
   Faust's commit awaits, waits out the linger of open batches. Here, as in the
   Java producer, once any batch for a broker is ready every batch for that
   broker goes in the same request, and `flush()` sends open batches at once
   before waiting for them. Only *when* batches leave changes: per-partition
   order (one batch in flight per partition), acks, retries, and flush's promise
   (every record sent before it returns) are aiokafka's.

4. **`Output`, `TableWriter`, `send_raw`**: an agent's table write and output send
   without Faust's per-message layers (`Topic.send_soon`/`send`: FutureMessage,
   serializer registry, the producer buffer and its background task, sensors) nor
   aiokafka's (`AIOKafkaProducer.send`'s per-record checks for transactions and
   serializers, and a callback per record). The record goes into the accumulator of
   the producer Faust runs, to the partition aiokafka's partitioner picks or, for a
   changelog record, the one `table[key] = value` would use (`partition_for_key`,
   which also checks co-partitioning). The local store is the partition's RocksDB
   database, written directly. Outcomes are taken per produce batch: a failed batch
   crashes the worker (the at-least-once replay then resends its records), an
   acknowledged changelog batch records its last offset as the table's persisted
   offset, as Faust's `_on_changelog_sent` does per record. At-least-once holds as
   before: the record is in the producer's accumulator before the event is acked, and
   the commit flushes the producer before committing offsets. Unlike `send_soon`,
   nothing waits in an intermediate buffer that Faust's commit-time flush may give up
   on after 0.1 s.

5. **Resuming an active flow does not empty the stream buffers** (`KeepBuffersFlowControl`).
   `app.flow_control.resume()` clears every agent's stream buffer, so that records
   fetched before a rebalance are not processed after it. But Faust's recovery
   resumes the flow twice: once to read the changelogs, and again once the
   tables are restored, *after* it resumed the stream partitions and sought them
   to their committed offsets. Records fetched in between (the consumer's flow is
   already active) sit in the buffers at that second resume and were thrown away
   while the fetch position stayed past them: lost until the next restart, and
   for good once a later record made the consumer fill the "gap" (6). Found by
   tests/integration/test_dedup_faults.py (a restarted worker routed 15 of its 250
   deliveries, then nothing) and tests/faults/test_rebalance.py. A buffer is now
   cleared only by a resume that ends a suspension (a rebalance, a stop): exactly
   the records Faust meant to discard.

6. **No offset gaps on hookstream's own topics** (`on_offset_jump`). When the next
   record of a partition is more than one offset past the last one read, Faust
   marks the offsets in between as done (for compacted topics and transaction
   markers) and commits past them. hookstream's consumed topics are neither
   compacted nor transactional (tests/unit/test_topics.py), so there the jump
   only ever means the consumer's read position was reset by a seek (recovery
   does that while records are in flight) or that records were dropped in the
   process: marking them done would commit past records that are still buffered
   or were never processed. The drain loop now logs the jump and lets the acks
   decide the commit: at worst a partition's commit waits, and a restart
   replays from it. Topics without acks (table changelogs) never had gaps filled.

7. **The consumer's fetch wait** (`install_fetch_wait`): Faust creates its consumer with
   `fetch_max_wait_ms=1500` and no setting. The worker uses
   `Settings.consumer_fetch_max_wait_ms` (100 ms by default): Kafka answers a fetch as
   soon as records arrive, so there it only paces idle polling, but tansu answers when
   the wait ends (measured: a record produced into an idle partition reached a waiting
   consumer after up to ~360 ms at 1500, ~120 ms at 500, ~20 ms at 100), and a sync
   crosses four topics before its completion.

If the installed Faust's `_drain_messages` is not the one this was written
against, (1) and (6) are not installed and a warning says so: an upgrade falls back to
Faust's own path rather than running a stale copy.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import logging
import textwrap
from time import monotonic
from typing import Any, AsyncIterator, Awaitable, Callable, Optional, cast

from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition
from aiokafka.producer.message_accumulator import MessageAccumulator
from faust.sensors import Monitor
from faust.transport import consumer as faust_consumer
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode import Service, ServiceT
from mode.utils.queues import FlowControlEvent

log = logging.getLogger(__name__)

# sha256 of the source of faust.transport.consumer.Consumer._drain_messages (faust-streaming 0.15.3).
DRAIN_MESSAGES_SHA256 = "8f35dd7a11144daa6ec9a3739a497b03a9dd6b57cca18aa861bb4a549400fc68"

_original_drain_messages = faust_consumer.Consumer._drain_messages


def install(app: Any, fetch_max_wait_ms: int | None = None) -> None:
    """Activate the tuning for `app` (and, once per process, the consumer hand-off)."""
    if fetch_max_wait_ms is not None:
        install_fetch_wait(fetch_max_wait_ms)
    install_fast_deliver()
    install_node_batching()
    if app._monitor is None:
        app.conf.Monitor = LeanMonitor
    keep_buffers_on_active_resume(app.flow_control)


_original_create_worker_consumer = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer


def install_fetch_wait(fetch_max_wait_ms: int) -> None:
    """Point 7: the worker's consumer is created with this fetch wait instead of Faust's 1500 ms."""

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = _original_create_worker_consumer(self, transport)
        consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read by AIOKafkaConsumer.start() for its Fetcher
        return consumer

    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer


def faust_drain_source_digest() -> str:
    source = textwrap.dedent(inspect.getsource(_original_drain_messages))
    return hashlib.sha256(source.encode()).hexdigest()


def install_fast_deliver() -> bool:
    consumer_cls = faust_consumer.Consumer
    if consumer_cls._drain_messages is _drain_messages:
        return True
    digest = faust_drain_source_digest()
    if digest != DRAIN_MESSAGES_SHA256:
        log.warning(
            "faust's Consumer._drain_messages is not the one app/stream/faust_tuning.py was written "
            "against (sha256 %s): running Faust's own per-message hand-off", digest,
        )
        return False
    consumer_cls._drain_messages = _drain_messages
    return True


def uninstall_fast_deliver() -> None:
    faust_consumer.Consumer._drain_messages = _original_drain_messages


class _Resumed:
    """Awaitable that continues a coroutine already advanced to its first suspension point.

    It re-yields the future the coroutine is waiting on to whichever task awaits
    this, then relays results and exceptions (cancellation included) into the
    coroutine, exactly as that task would have done had it started the coroutine.
    """

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Any, pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self):  # type: ignore[no-untyped-def]
        coro, pending = self.coro, self.pending
        self.coro = self.pending = None
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - relayed, not swallowed
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def deliver(consumer: Any, callback: Callable[[Any], Awaitable[None]], message: Any) -> None:
    """`callback(message)` with Faust's interruption semantics, without a task per message.

    Equivalent to `await consumer.wait_first(callback(message), consumer.suspend_flow.wait())`:
    a callback that blocks is raced against flow suspension, stop and crash, and
    cancelled when one of those wins.
    """
    suspend_flow = consumer.suspend_flow
    if suspend_flow.is_set():
        await consumer.wait_first(callback(message), suspend_flow.wait())
        return
    coro = callback(message)
    try:
        pending = coro.send(None)
    except StopIteration:
        return
    await consumer.wait_first(_Resumed(coro, pending), suspend_flow.wait())


async def _drain_messages(self, fetcher: ServiceT) -> None:  # type: ignore[no-untyped-def]  # pragma: no cover
    # faust-streaming 0.15.3 `Consumer._drain_messages`, line for line, but for the
    # two lines marked "hookstream" (tests/unit/test_faust_tuning.py diffs the two).
    # This is the background thread started by Fetcher, used to
    # constantly read messages using Consumer.getmany.
    # It takes Fetcher as argument, because we must be able to
    # stop it using `await Fetcher.stop()`.
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = cast(Service, self)._stopped.is_set
    fetcher_should_stop = cast(Service, fetcher)._stopped.is_set

    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flag_consumer_fetching = CONSUMER_FETCHING
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for

    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep

    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            ait = cast(AsyncIterator, getmany(timeout=1.0))

            # Sleeping because sometimes getmany is called in a loop
            # never releasing to the event loop
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0

                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        # We have a gap in income messages
                        if gap > 1 and r_offset:
                            acks_enabled = acks_enabled_for(message.topic)
                            if acks_enabled:
                                on_offset_jump(tp, r_offset, offset)  # hookstream: was await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None:
                            if self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                        await deliver(self, callback, message)  # hookstream: was wait_first(callback(message), suspend_flow.wait())
                        set_read_offset(tp, offset)
                    else:
                        self.log.dev(
                            "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                            offset,
                            message.key,
                            message.value,
                        )
                unset_flag(flag_consumer_fetching)

    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            # we're already stopping so ignore
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)


def on_offset_jump(tp: Any, read: int, offset: int) -> None:
    """Point 6: the next record is `offset`, the last one read was `read`; no gap is filled."""
    log.info(
        "%s[%d]: next record at offset %d, last read %d (a seek reset the read position, or records "
        "were dropped): offsets in between are committed only once processed", tp.topic, tp.partition,
        offset, read,
    )


class KeepBuffersFlowControl(FlowControlEvent):
    """Point 5: `resume()` clears the stream buffers only when it ends a suspension."""

    def resume(self) -> None:
        if self.is_active():
            return  # nothing was suspended: the buffers hold live records
        super().resume()


def keep_buffers_on_active_resume(flow_control: FlowControlEvent) -> None:
    # The app (and every queue registered with it) holds this very object: swap its class.
    if type(flow_control) is FlowControlEvent:
        flow_control.__class__ = KeepBuffersFlowControl
    elif not isinstance(flow_control, KeepBuffersFlowControl):
        raise TypeError(f"unexpected flow control {type(flow_control)!r}: see faust_tuning point 5")


class NodeBatchingAccumulator(MessageAccumulator):
    """aiokafka's accumulator, draining whole brokers and flushing without waiting out the linger."""

    def drain_by_nodes(self, ignore_nodes, muted_partitions=frozenset()):  # type: ignore[no-untyped-def]
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
    _output: Optional["Output"] = None

    def _append_batch(self, builder, tp):  # type: ignore[no-untyped-def]
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
    def of(cls, app: Any) -> "Output":
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
        return producer

    async def send(self, topic: str, key: Optional[bytes], value: Optional[bytes], partition: Optional[int] = None) -> None:
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
        await producer._message_accumulator.add_message(tp, key, value, producer._request_timeout_ms / 1000)

    def _partition_of(self, producer: Any, topic: str, key: Optional[bytes], value: Optional[bytes]) -> int:
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
        accumulator = (self.producer or self._bind())._message_accumulator
        for tp, batches in list(accumulator._batches.items()):
            if tp.topic == topic:
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

    def get(self, key: bytes, partition: int) -> Optional[bytes]:
        """The stored value of `key` for an event of `partition` (as `table.data.get(key)` in the agent)."""
        return self.store._db_for_partition(partition).get(key)

    async def set(self, key: bytes, value: bytes) -> None:
        partition = self.table.partition_for_key(key)  # the current event's partition, as Table.on_key_set
        self.store._db_for_partition(partition).put(key, value)
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

    options = rocksdict.WriteOptions()
    options.disable_wal = True
    rocksdb_options = store.rocksdb_options
    if getattr(rocksdb_options, "_hookstream_without_wal", False):
        return
    open_db = rocksdb_options.open

    def open_without_wal(path: Any, *, read_only: bool = False) -> Any:
        db = open_db(path, read_only=read_only)
        db.set_write_options(options)
        return db

    rocksdb_options.open = open_without_wal
    rocksdb_options._hookstream_without_wal = True
    for db in store._dbs.values():
        db.set_write_options(options)


async def send_raw(app: Any, topic: str, key: Optional[bytes], value: Optional[bytes]) -> None:
    """Produce bytes through the worker's producer (`Output`); flushed before the next commit."""
    await Output.of(app).send(topic, key, value)


def _send_failed(app: Any, fut: asyncio.Future) -> None:
    exc = asyncio.CancelledError() if fut.cancelled() else fut.exception()
    log.error("a record could not be produced (%r): crashing the worker so that it is replayed", exc)
    asyncio.ensure_future(app.crash(exc))


class LeanMonitor(Monitor):
    """Faust's Monitor without its per-event statistics (nothing in hookstream reads them).

    Kept: `stream_inbound_time` (read by the consumer's livelock detector) and the
    per-commit, per-rebalance and per-assignment bookkeeping, which is not per event.
    """

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> Optional[dict]:
        self.stream_inbound_time[tp] = monotonic()
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Optional[dict] = None) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_table_get(self, table: Any, key: Any) -> None:
        pass

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        pass

    def on_table_del(self, table: Any, key: Any) -> None:
        pass

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int, valsize: int) -> Any:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        pass

    def track_tp_end_offset(self, tp: Any, offset: int) -> None:
        pass


__all__ = ["KeepBuffersFlowControl", "install_fetch_wait", "LeanMonitor", "NodeBatchingProducer", "Output", "TableWriter", "deliver", "install",
           "install_fast_deliver", "install_node_batching", "keep_buffers_on_active_resume", "on_offset_jump", "send_raw", "without_wal",
           "uninstall_fast_deliver"]
