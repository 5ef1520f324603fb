"""app/stream/faust_tuning/ keeps the guarantees of the Faust code it replaces.

`deliver` stands in for `wait_first(callback(message), suspend_flow.wait())` in the
consumer's drain loop: a callback that blocks must still be interrupted by a
rebalance (`Consumer.stop_flow()` sets `suspend_flow`), a stop or a crash, exactly
as before; one that does not block runs inline. The consumer here is a mode
Service with Faust's `suspend_flow` (an asyncio.Event): `wait_first` is mode's own.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import textwrap

import pytest
from aiokafka.structs import TopicPartition as TP
from mode import Service

from app.stream import faust_tuning
from app.stream.faust_tuning import LeanMonitor, NodeBatchingAccumulator, deliver
from app.stream.faust_tuning import consumer as tuned_consumer
from tests.support.services import wait_until


class Consumer(Service):
    """What `deliver` uses of faust's Consumer: wait_first (mode's), suspend_flow, stop_flow."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()

    def stop_flow(self) -> None:  # what faust's Consumer.stop_flow does to suspend_flow
        self.suspend_flow.set()


class Blocking:
    """A conductor callback that blocks on `gate` (a full stream buffer, flow control...)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.steps: list[str] = []

    async def __call__(self, message: str) -> None:
        self.steps.append(f"start {message}")
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.steps.append("cancelled")
            raise
        self.steps.append(f"done {message}")


class CountingTasks:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self.created, self.previous = loop, 0, loop.get_task_factory()

    def __enter__(self) -> CountingTasks:
        def factory(loop, coro, **kwargs):
            self.created += 1
            return asyncio.Task(coro, loop=loop, **kwargs)

        self.loop.set_task_factory(factory)
        return self

    def __exit__(self, *exc) -> None:
        self.loop.set_task_factory(self.previous)


async def test_a_callback_that_does_not_block_runs_inline_without_a_task():
    consumer, seen = Consumer(), []

    async def callback(message):
        seen.append(message)

    with CountingTasks(asyncio.get_running_loop()) as tasks:
        for i in range(100):
            await deliver(consumer, callback, i)
    assert seen == list(range(100))
    assert tasks.created == 0


async def test_a_blocked_callback_resumes_where_it_stopped_and_finishes():
    consumer, callback = Consumer(), Blocking()
    delivery = asyncio.ensure_future(deliver(consumer, callback, "m1"))
    await asyncio.sleep(0.01)
    assert callback.steps == ["start m1"] and not delivery.done()
    callback.gate.set()
    await asyncio.wait_for(delivery, 1)
    assert callback.steps == ["start m1", "done m1"]


async def test_a_rebalance_interrupts_a_blocked_callback():
    consumer, callback = Consumer(), Blocking()
    delivery = asyncio.ensure_future(deliver(consumer, callback, "m1"))
    await asyncio.sleep(0.01)
    consumer.stop_flow()
    await asyncio.wait_for(delivery, 1)  # the drain loop is free again
    await asyncio.sleep(0)
    assert callback.steps == ["start m1", "cancelled"]


@pytest.mark.parametrize("event", ["_stopped", "_crashed"])
async def test_a_stop_or_a_crash_interrupts_a_blocked_callback(event):
    consumer, callback = Consumer(), Blocking()
    delivery = asyncio.ensure_future(deliver(consumer, callback, "m1"))
    await asyncio.sleep(0.01)
    getattr(consumer, event).set()
    await asyncio.wait_for(delivery, 1)
    await asyncio.sleep(0)
    assert callback.steps == ["start m1", "cancelled"]


async def test_while_the_flow_is_suspended_fausts_own_race_is_used():
    consumer, callback = Consumer(), Blocking()
    consumer.stop_flow()
    calls = []
    original = consumer.wait_first

    async def spy(*coros, **kwargs):
        calls.append([inspect.iscoroutine(c) for c in coros])
        return await original(*coros, **kwargs)

    consumer.wait_first = spy
    await asyncio.wait_for(deliver(consumer, callback, "m1"), 1)
    await asyncio.sleep(0)
    assert calls == [[True, True]]  # callback(message), suspend_flow.wait(): Faust's call as is
    assert "done m1" not in callback.steps


@pytest.mark.parametrize("blocks_first", [False, True])
async def test_errors_in_the_callback_propagate(blocks_first):
    consumer = Consumer()

    async def callback(message):
        if blocks_first:
            await asyncio.sleep(0.001)
        raise ValueError(f"bad {message}")

    with pytest.raises(ValueError, match="bad m1"):
        await deliver(consumer, callback, "m1")


async def test_a_cancelled_drain_loop_cancels_the_blocked_callback():
    consumer, callback = Consumer(), Blocking()
    delivery = asyncio.ensure_future(deliver(consumer, callback, "m1"))
    await asyncio.sleep(0.01)
    delivery.cancel()
    with pytest.raises(asyncio.CancelledError):
        await delivery
    await asyncio.sleep(0)
    assert callback.steps == ["start m1", "cancelled"]


def _significant_lines(fn) -> list[str]:
    lines = []
    for line in textwrap.dedent(inspect.getsource(fn)).splitlines():
        line = line.split("  #")[0].rstrip()
        if line.strip() and not line.strip().startswith("#"):
            lines.append(line)
    return lines


def test_the_drain_loop_is_fausts_but_for_the_hand_off():
    assert faust_tuning.faust_drain_source_digest() == faust_tuning.DRAIN_MESSAGES_SHA256, (
        "faust's Consumer._drain_messages changed: re-check app/stream/faust_tuning/consumer.py against it"
    )
    diff = [
        line
        for line in difflib.unified_diff(
            _significant_lines(tuned_consumer._original_drain_messages),
            _significant_lines(tuned_consumer._drain_messages),
            lineterm="",
            n=0,
        )
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert [line[0] + line[1:].strip() for line in diff] == [
        "-await self.wait_first(",
        "-callback(message), self.suspend_flow.wait()",
        "-)",
        "+await deliver(self, callback, message)",
    ]


def test_the_topics_agents_read_are_neither_compacted_nor_transactional(tmp_path):
    """Point 6 holds only there: an offset jump on such a topic is never a real gap."""
    from app.settings import Settings
    from app.stream.app import create_worker
    from app.topology import load_specs

    settings = Settings(worker_data_dir=tmp_path, topic_prefix="p.")
    worker = create_worker(settings, instances={})
    read = {topic for agent in worker.app.agents.values() for topic in agent.channel.topics}
    specs = {spec.name: spec for spec in load_specs(settings.topics_dir, "p.")}
    assert read and read <= set(specs)
    assert {name: specs[name].config.get("cleanup.policy") for name in read} == {name: "delete" for name in read}
    assert worker.app.conf.processing_guarantee.value == "at_least_once"


async def test_resuming_an_active_flow_keeps_the_stream_buffers():
    from mode.utils.queues import FlowControlEvent, FlowControlQueue

    flow = FlowControlEvent(initially_suspended=True)
    faust_tuning.keep_buffers_on_active_resume(flow)
    buffer = FlowControlQueue(maxsize=10, flow_control=flow, clear_on_resume=True)
    buffer.put_nowait("stale")
    flow.resume()  # ends the initial suspension: Faust's clear, as before
    assert buffer.qsize() == 0
    buffer.put_nowait("live")
    flow.resume()  # recovery's second resume, the flow never suspended in between
    assert buffer.get_nowait() == "live"
    buffer.put_nowait("fetched before a rebalance")
    flow.suspend()
    flow.resume()
    assert buffer.qsize() == 0


def test_the_app_flow_control_is_the_keeping_one(tmp_path):
    from app.settings import Settings
    from app.stream.app import create_worker

    worker = create_worker(Settings(worker_data_dir=tmp_path, topic_prefix="p."), instances={})
    assert isinstance(worker.app.flow_control, faust_tuning.KeepBuffersFlowControl)


def test_install_replaces_the_drain_loop_and_an_unknown_loop_is_left_alone_with_a_warning(monkeypatch, caplog):
    from faust.transport.consumer import Consumer as FaustConsumer

    from app.stream.faust_tuning import guard

    try:
        assert faust_tuning.install_fast_deliver()
        assert FaustConsumer._drain_messages is tuned_consumer._drain_messages
        faust_tuning.uninstall_fast_deliver()
        monkeypatch.setattr(guard, "PATCHES", _with_target_digest(guard.PATCHES, 1, "0" * 64))
        assert not faust_tuning.install_fast_deliver()
        assert FaustConsumer._drain_messages is tuned_consumer._original_drain_messages
        assert "point 1" in caplog.text and "Faust's own path runs" in caplog.text
    finally:
        faust_tuning.uninstall_fast_deliver()


def test_the_offset_gap_fix_installs_whatever_the_drain_loop_is(monkeypatch, tmp_path):
    """Point 6 is a correctness patch of its own: a drain loop point 1 does not know keeps it."""
    from faust.transport.consumer import Consumer as FaustConsumer

    from app.settings import Settings
    from app.stream.app import create_worker
    from app.stream.faust_tuning import guard

    try:
        faust_tuning.uninstall_fast_deliver()
        faust_tuning.uninstall_no_gap_fill()
        monkeypatch.setattr(guard, "PATCHES", _with_target_digest(guard.PATCHES, 1, "0" * 64))
        create_worker(Settings(worker_data_dir=tmp_path, topic_prefix="p."), instances={})
        assert FaustConsumer._drain_messages is tuned_consumer._original_drain_messages  # Faust's own loop
        assert FaustConsumer._add_gap is faust_tuning.skip_gap
        assert "self._add_gap(" in inspect.getsource(FaustConsumer._drain_messages)  # ... which reaches the fix
    finally:
        faust_tuning.install_no_gap_fill()
        faust_tuning.install_fast_deliver()


async def test_an_offset_jump_is_not_committed_past(tmp_path):
    """The consumer commits only what was acked: the offsets a jump skipped are never marked done."""
    from app.settings import Settings
    from app.stream.app import create_worker

    consumer = create_worker(Settings(worker_data_dir=tmp_path, topic_prefix="p."), instances={}).app.consumer
    tp = TP("p.t", 0)
    consumer._committed_offset[tp] = 3
    await consumer._add_gap(tp, 4, 9)  # what the drain loop calls when offset 10 follows offset 3
    consumer._acked[tp].extend([10, 11, 12])
    assert consumer._new_offset(tp) is None  # Faust's own _add_gap: 13, past offsets 4..9 never processed
    assert not consumer._gap[tp]


def _with_target_digest(patches, point, sha256):
    """`patches` with every hashed target of `point` expecting `sha256` (an upgrade, simulated)."""
    import dataclasses

    return tuple(
        dataclasses.replace(
            p, targets=tuple(dataclasses.replace(t, sha256=sha256) if t.sha256 else t for t in p.targets)
        )
        if p.point == point
        else p
        for p in patches
    )


def test_the_lean_monitor_keeps_what_the_livelock_detector_reads():
    monitor = LeanMonitor()
    assert monitor.on_stream_event_in("tp", 1, None, None) is None
    assert "tp" in monitor.stream_inbound_time


class Cluster:
    def leader_for_partition(self, tp):
        return 0


def _accumulator(linger_ms: int) -> NodeBatchingAccumulator:
    return NodeBatchingAccumulator(Cluster(), 1024 * 1024, 0, 30_000, linger_ms=linger_ms)


async def test_a_ready_batch_takes_every_other_batch_for_its_broker_along():
    acc = _accumulator(linger_ms=60_000)
    for partition in range(4):
        await acc.add_message(TP("t", partition), b"k", b"v", timeout=1)
    nodes, _ = acc.drain_by_nodes(ignore_nodes=set())
    assert nodes == {}  # nothing has lingered long enough yet
    acc._batches[TP("t", 2)][0]._builder.close()  # one batch ready (full)
    nodes, _ = acc.drain_by_nodes(ignore_nodes=set())
    assert sorted(nodes[0]) == [TP("t", p) for p in range(4)]


async def test_a_partition_with_a_batch_in_flight_is_not_drained_twice():
    acc = _accumulator(linger_ms=60_000)
    for partition in range(3):
        await acc.add_message(TP("t", partition), b"k", b"v", timeout=1)
    acc._batches[TP("t", 0)][0]._builder.close()
    nodes, _ = acc.drain_by_nodes(ignore_nodes=set(), muted_partitions={TP("t", 1)})
    assert sorted(nodes[0]) == [TP("t", 0), TP("t", 2)]


async def test_flush_sends_lingering_batches_now_and_waits_for_them():
    acc = _accumulator(linger_ms=60_000)
    futures = [await acc.add_message(TP("t", p), b"k", b"v", timeout=1) for p in range(2)]
    flushing = asyncio.ensure_future(acc.flush())
    await asyncio.sleep(0.01)
    assert not flushing.done()
    # A send while the flush waits is not held up by it.
    futures.append(await asyncio.wait_for(acc.add_message(TP("t", 0), b"k", b"v", timeout=1), 0.1))
    nodes, _ = acc.drain_by_nodes(ignore_nodes=set())  # what the woken sender does
    assert sorted(nodes[0]) == [TP("t", 0), TP("t", 1)]
    for batch in nodes[0].values():
        batch.done(base_offset=0)
    await asyncio.wait_for(flushing, 1)
    assert all(f.done() for f in futures)


async def test_the_workers_consumer_waits_for_fetches_as_long_as_the_setting_says(tmp_path):
    """Point 7: Faust creates its consumer with fetch_max_wait_ms=1500 whatever the app says."""
    from app.settings import Settings
    from app.stream.app import create_worker

    settings = Settings(worker_data_dir=tmp_path, topic_prefix="p.", consumer_fetch_max_wait_ms=37)
    worker = create_worker(settings, instances={})
    thread = worker.app.consumer._thread
    consumer = thread._create_worker_consumer(thread.transport)  # built, not started: no I/O
    assert consumer._fetch_max_wait_ms == 37


class _Batch:
    """What Output.batch_done reads of an aiokafka MessageBatch."""

    def __init__(self, topic: str, partition: int, records: int) -> None:
        from types import SimpleNamespace

        self.tp = TP(topic, partition)
        self._msg_futures = [(None, SimpleNamespace(offset=i)) for i in range(records)]


class _App:
    def __init__(self) -> None:
        self.crashed: list[BaseException] = []

    async def crash(self, exc: BaseException) -> None:
        self.crashed.append(exc)


async def test_an_acknowledged_changelog_batch_persists_its_last_offset_and_a_failed_one_crashes_the_worker():
    from aiokafka.structs import RecordMetadata

    from app.stream.faust_tuning import Output

    app = _App()
    output = Output(app)
    persisted: list[tuple[TP, int]] = []
    output.acked["p.changelog"] = lambda tp, offset: persisted.append((tp, offset))
    loop = asyncio.get_running_loop()

    acked = loop.create_future()
    acked.set_result(RecordMetadata("p.changelog", 3, TP("p.changelog", 3), 100, -1, 0, 0))
    output.batch_done(_Batch("p.changelog", 3, 5), acked)
    assert persisted == [(TP("p.changelog", 3), 104)]  # records 100..104
    output.batch_done(_Batch("p.control", 0, 5), acked)  # no listener: nothing persisted
    assert len(persisted) == 1 and app.crashed == []

    failed = loop.create_future()
    failed.set_exception(RuntimeError("broker gone"))
    output.batch_done(_Batch("p.control", 0, 2), failed)
    await wait_until(lambda: app.crashed, timeout=5, what="the worker crashed")  # a task the failure scheduled
    assert [str(e) for e in app.crashed] == ["broker gone"] and len(persisted) == 1


class _Producer:
    """What Output._partition_of reads of the aiokafka producer: its partitioner and metadata."""

    def __init__(self, partitions: int) -> None:
        from types import SimpleNamespace

        self.calls = 0
        self._metadata = SimpleNamespace(_partitions={"p.control": dict.fromkeys(range(partitions))})

    def _partition(self, topic, partition, key, value, key_bytes, value_bytes) -> int:
        self.calls += 1
        return sum(key_bytes) % len(self._metadata._partitions[topic])


def test_a_keys_partition_is_remembered_until_the_topics_partition_count_changes():
    from app.stream.faust_tuning import Output

    output, producer = Output(_App()), _Producer(8)
    assert [output._partition_of(producer, "p.control", k, b"v") for k in (b"a", b"b", b"a", b"a")] == [1, 2, 1, 1]
    assert producer.calls == 2
    producer._metadata._partitions["p.control"] = dict.fromkeys(range(16))  # the topic grew
    assert output._partition_of(producer, "p.control", b"a", b"v") == 97 % 16 and producer.calls == 3
