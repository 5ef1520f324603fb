"""Every change hookstream makes to Faust's own behaviour, in one place (docs/performance.md has the figures).

`install(app)` is called by `create_worker`. It changes four things (1, 2, 3, 7), fixes
two ways Faust loses records (5, 6); (4) is a faster way for an agent to write a
table and send its output, (8) to iterate its stream and (9) to decode its records.
The code is split along Faust's seams: `consumer.py` (1, 5, 6, 7), `producer.py`
(3, 4), `monitor.py` (2), `stream.py` (8, 9); `guard.py` says which are which.

Each patch is either a **correctness** patch (3, 4, 5, 6: a guarantee depends on it)
or a **speed** patch (1, 2, 7, 8, 9). `guard.py` lists the Faust, mode and aiokafka code
each one replaces or relies on, with the sha256 of its source in the pinned versions
(pyproject.toml, constraints.txt). `install` refuses, before changing anything, when a
correctness patch's code differs: the worker does not start, and the message names the
installed versions and the ones the patches are written against. A speed patch whose
code differs is left out with a warning, and Faust's own path runs. 3 and 4 are faster
ways to send, but they are where a failed send crashes the worker and where the
persisted offset of a table is set, and Faust's own path is weaker (its producer
buffer's flush gives up after 0.1 s): a stale copy of them could lose records, so they
are guarded as correctness patches.

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
   order are untouched: the loop is Faust 0.15.3's, line for line, but for that call.
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
   or were never processed. `Consumer._add_gap`, which the drain loop calls for such
   a jump (Faust's loop and point 1's copy alike), now logs the jump and lets the acks
   decide the commit: at worst a partition's commit waits, and a restart
   replays from it. Topics without acks (table changelogs) never had gaps filled.
   Installed whatever the drain loop's source: it needs only `_add_gap` and
   `_new_offset` as they are, and a drain loop that still calls `_add_gap`.

7. **The consumer's fetch wait** (`install_fetch_wait`): Faust creates its consumer with
   `fetch_max_wait_ms=1500` and no setting. The worker uses
   `Settings.consumer_fetch_max_wait_ms` (100 ms by default): Kafka answers a fetch as
   soon as records arrive, so there it only paces idle polling, but tansu answers when
   the wait ends (measured: a record produced into an idle partition reached a waiting
   consumer after up to ~360 ms at 1500, ~120 ms at 500, ~20 ms at 100), and a sync
   crosses four topics before its completion.

8. **An agent's loop over its stream** (`events(stream)`, used by the agents in place of
   `stream.events()`). Faust's compiled iterator awaits `asyncio.sleep(0)` and then the
   channel's `__anext__()` for every event, even when the buffer already holds the next
   one (its quick path is behind an opt-in setting), under two async generators: a
   full loop iteration, with an epoll call, per event. `events` takes the buffered
   events one at a time as Faust does, each through the same steps (the generation
   and flow-control check that skips records fetched before a rebalance, tracking,
   sensors, the current event, and the ack in Faust's own `StreamIterator.after`, also
   when the body raised or the stream is stopped), and lets the loop run other tasks
   once per run of events: when the buffer is empty or after 100 in a row, as the
   drain loop hands them over. A stream with processors or a join keeps Faust's
   iterator. Measured on the dedup stage: 6.2k -> 10.0k events/s.
   Safe because: tests/unit/test_faust_tuning_stream.py runs the same buffered events
   through both iterators and compares what the agent saw and the consumer's acks.

9. **Decoding a record of a raw-bytes topic** (`BytesTopic`, the app's Topic class).
   hookstream's topics carry bytes with the `raw` serializer (app/codec.py decodes),
   and Faust's compiled decode passes key and value through the schema, the
   serializer registry and the `raw` codec to hand back the message's own bytes.
   `BytesTopic` creates the same event from the message directly; any other topic
   (other types or serializers) keeps Faust's decode. Stage: ~+5 % (within noise
   alone; the `raw` codec's loads was 2.4 % of the stage's samples).
   Safe because: tests/unit/test_faust_tuning_stream.py compares the events both make.

If the installed Faust's `_drain_messages` is not the one (1) was written against, (1)
is left out and a warning says so: an upgrade falls back to Faust's own loop rather
than running a stale copy, and (6) is installed all the same.
"""

from __future__ import annotations

from typing import Any

from app.stream.faust_tuning import guard
from app.stream.faust_tuning.consumer import (
    DRAIN_MESSAGES_SHA256,
    KeepBuffersFlowControl,
    deliver,
    faust_drain_source_digest,
    install_fast_deliver,
    install_fetch_wait,
    install_no_gap_fill,
    keep_buffers_on_active_resume,
    on_offset_jump,
    skip_gap,
    uninstall_fast_deliver,
    uninstall_no_gap_fill,
)
from app.stream.faust_tuning.monitor import LeanMonitor
from app.stream.faust_tuning.producer import (
    NodeBatchingAccumulator,
    NodeBatchingProducer,
    Output,
    TableWriter,
    install_node_batching,
    send_raw,
    without_wal,
)
from app.stream.faust_tuning.stream import BytesTopic, events


def install(app: Any, fetch_max_wait_ms: int | None = None) -> None:
    """Activate the tuning for `app` (and, once per process, the consumer's patches).

    Raises `guard.UnsafeDependencies` (the worker must not start) when a correctness
    patch cannot install; a speed patch that cannot is left out with a warning.
    """
    guard.require()
    install_no_gap_fill()
    keep_buffers_on_active_resume(app.flow_control)
    install_node_batching()
    if fetch_max_wait_ms is not None:
        install_fetch_wait(fetch_max_wait_ms)
    install_fast_deliver()
    if app._monitor is None and guard.speed_patch_applies(2):
        app.conf.Monitor = LeanMonitor
    app._hookstream_events = guard.speed_patch_applies(8)  # read by events()
    if guard.speed_patch_applies(9):
        app.conf.Topic = BytesTopic


__all__ = [
    "BytesTopic",
    "DRAIN_MESSAGES_SHA256",
    "KeepBuffersFlowControl",
    "LeanMonitor",
    "NodeBatchingAccumulator",
    "NodeBatchingProducer",
    "Output",
    "TableWriter",
    "deliver",
    "events",
    "faust_drain_source_digest",
    "install",
    "install_fast_deliver",
    "install_fetch_wait",
    "install_no_gap_fill",
    "install_node_batching",
    "keep_buffers_on_active_resume",
    "on_offset_jump",
    "send_raw",
    "skip_gap",
    "uninstall_fast_deliver",
    "uninstall_no_gap_fill",
    "without_wal",
]
