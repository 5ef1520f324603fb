"""`Output.send(..., record_future=False)`: a record joins its partition's open batch without a future
of its own; the batch still carries it, its outcome is still watched (app/stream/faust_tuning/producer.py)."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka.cluster import ClusterMetadata as Cluster
from aiokafka.structs import TopicPartition as TP

from app.stream.faust_tuning import NodeBatchingAccumulator, Output


class _Client:
    async def _wait_on_metadata(self, topic: str) -> None:
        return None


def _output(batch_size: int = 1024 * 1024) -> tuple[Output, NodeBatchingAccumulator]:
    accumulator = NodeBatchingAccumulator(Cluster(), batch_size, 0, 30_000, linger_ms=60_000)
    producer = SimpleNamespace(_message_accumulator=accumulator, client=_Client(), _request_timeout_ms=30_000)
    app = SimpleNamespace(producer=SimpleNamespace(_ensure_producer=lambda: producer, _producer=producer))
    return Output(app), accumulator


async def test_records_without_futures_join_the_open_batch_and_are_sent_with_it():
    output, accumulator = _output()
    for i in range(5):
        await output.send("p.outcomes", b"k%d" % i, b"v%d" % i, partition=3, record_future=False)
    [batch] = accumulator._batches[TP("p.outcomes", 3)]
    assert batch.record_count == 5
    assert len(batch._msg_futures) == 1  # the record that opened the batch (aiokafka's own path)
    batch.done(base_offset=40)  # acknowledged: the batch's future, which Output watches, resolves
    assert (await batch.future).offset == 40


async def test_a_record_the_open_batch_has_no_room_for_takes_aiokafkas_path():
    output, accumulator = _output(batch_size=200)
    original, calls = accumulator.add_message, []

    async def add_message(tp, key, value, timeout, *args, **kwargs):
        calls.append(value)
        if len(calls) == 1:
            return await original(tp, key, value, timeout, *args, **kwargs)  # opens the batch
        return None  # aiokafka would wait here until the sender drained the full batch

    accumulator.add_message = add_message
    for n in range(3):
        await output.send("p.outcomes", b"k", bytes([65 + n]) * 120, partition=0, record_future=False)
    assert calls == [b"A" * 120, b"B" * 120, b"C" * 120]  # no room after the first: each went the waiting way
    [batch] = accumulator._batches[TP("p.outcomes", 0)]
    assert batch.record_count == 1


async def test_a_topic_whose_offsets_a_listener_takes_keeps_a_future_per_record():
    output, accumulator = _output()
    output.acked["p.changelog"] = lambda tp, offset: None
    for _i in range(3):
        await output.send("p.changelog", b"k", b"v", partition=1, record_future=False)
    [batch] = accumulator._batches[TP("p.changelog", 1)]
    assert len(batch._msg_futures) == 3  # the listener reads the last record's offset from them
