"""faust_tuning.events (point 8) iterates a stream as Faust's own `stream.events()` does.

Every test runs the same buffered events through Faust's iterator and through
`faust_tuning.events` on a real Faust app, stream and topic channel (no broker: the
events are put into the channel's buffer as the conductor puts them), and compares
what the agent saw and what the consumer's ack bookkeeping (what a commit reads)
holds afterwards. Then what differs on purpose: how often the loop runs other tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
from itertools import pairwise

import pytest
from faust.types import TP, Message

from app.settings import Settings
from app.stream import faust_tuning
from app.stream.app import create_worker
from tests.support.services import wait_until

TOPIC = "p.events"


def _app(data_dir):
    """The worker's Faust app (its tuning installed), TOPIC acked, the flow running."""
    app = create_worker(Settings(worker_data_dir=data_dir, topic_prefix="p."), instances={}).app
    app.topics._acking_topics.add(TOPIC)
    app.flow_control.resume()
    return app


@pytest.fixture()
def app(tmp_path):
    return _app(tmp_path)


def _stream(app):
    topic = app.topic(TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    return app.stream(topic)


def _put(app, stream, offsets, partition=0, generation=None):
    """Buffer one event per offset, as the conductor does (refcount 1 per subscribed channel)."""
    for offset in offsets:
        message = Message(
            TOPIC,
            partition,
            offset,
            0.0,
            0,
            [],
            b"k%d" % offset,
            b"v%d" % offset,
            None,
            generation_id=app.consumer_generation_id if generation is None else generation,
        )
        message.incref(1)
        stream.channel.queue.put_nowait(app.create_event(message.key, message.value, message.headers, message))


def _acks(app):
    consumer = app.consumer
    return {
        "acked": {tp: list(offsets) for tp, offsets in consumer._acked.items() if offsets},
        "unacked": sorted((m.tp, m.offset) for m in consumer._unacked_messages),
        "n_acked": consumer._n_acked,
    }


async def _consume(iterate, stream, count, body=None):
    """Iterate until `count` events were seen (or the body raised), then stop the stream as the
    agent's stop does (it closes the stream's iterators: the event in hand is acked then)."""
    seen = []
    agen = iterate(stream)
    try:
        async for event in agen:
            current = stream.current_event
            seen.append((event.message.offset, event.value, current is event))
            if body is not None:
                await body(event)
            if len(seen) == count:
                break
    finally:
        await stream.stop()
        await agen.aclose()
    return seen


def _fausts(stream):
    return stream.events()


def _tuned(stream):
    return faust_tuning.events(stream)


async def _run_both(tmp_path_factory, scenario):
    results = []
    for iterate in (_fausts, _tuned):
        results.append(await scenario(_app(tmp_path_factory.mktemp("w")), iterate))
    return results


async def test_the_same_events_are_seen_and_acked_as_by_fausts_iterator(tmp_path_factory):
    async def scenario(app, iterate):
        stream = _stream(app)
        _put(app, stream, range(0, 150))
        _put(app, stream, range(0, 40), partition=3)
        seen = await _consume(iterate, stream, 190)
        return seen, _acks(app)

    fausts, tuned = await _run_both(tmp_path_factory, scenario)
    assert tuned == fausts
    seen, acks = tuned
    assert [offset for offset, _, _ in seen] == list(range(150)) + list(range(40))
    assert all(current for _, _, current in seen)  # stream.current_event is the event in the body
    assert acks["acked"] == {TP(TOPIC, 0): list(range(150)), TP(TOPIC, 3): list(range(40))}
    assert acks["unacked"] == [] and acks["n_acked"] == 190


async def test_a_value_that_is_not_an_event_is_passed_over(tmp_path_factory):
    async def scenario(app, iterate):
        stream = _stream(app)
        _put(app, stream, range(0, 2))
        stream.channel.queue.put_nowait(b"not an event")
        _put(app, stream, range(2, 4))
        seen = await _consume(iterate, stream, 4)
        return seen, _acks(app), stream.events_total

    fausts, tuned = await _run_both(tmp_path_factory, scenario)
    assert tuned == fausts
    assert [offset for offset, _, _ in tuned[0]] == [0, 1, 2, 3] and tuned[2] == 5


async def test_events_fetched_before_a_rebalance_are_skipped_and_not_acked(tmp_path_factory):
    async def scenario(app, iterate):
        stream = _stream(app)
        _put(app, stream, range(0, 5))
        _put(app, stream, range(5, 10), generation=app.consumer_generation_id - 1)  # a previous generation
        _put(app, stream, range(10, 15))
        seen = await _consume(iterate, stream, 10)
        return seen, _acks(app)

    fausts, tuned = await _run_both(tmp_path_factory, scenario)
    assert tuned == fausts
    seen, acks = tuned
    assert [offset for offset, _, _ in seen] == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]
    assert acks["acked"] == {TP(TOPIC, 0): [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]}


async def test_while_the_flow_is_suspended_buffered_events_are_skipped(tmp_path_factory):
    async def scenario(app, iterate):
        stream = _stream(app)
        _put(app, stream, range(0, 3))

        async def body(event):
            if event.message.offset == 1:
                app.flow_control.suspend()  # a rebalance starts while the agent works

        agen = iterate(stream)
        seen = []

        async def run():
            async for event in agen:
                seen.append(event.message.offset)
                await body(event)

        task = asyncio.ensure_future(run())
        # Offset 2 is taken (and skipped) in the same step that empties the buffer.
        await wait_until(
            lambda: len(seen) == 2 and stream.channel.queue.empty(),
            timeout=10,
            interval=0.01,
            what="the buffer to be drained",
        )
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await agen.aclose()
        return seen, _acks(app)

    fausts, tuned = await _run_both(tmp_path_factory, scenario)
    assert tuned == fausts
    seen, acks = tuned
    assert seen == [0, 1]  # offset 2 was buffered before the suspension: never processed
    assert acks["acked"] == {TP(TOPIC, 0): [0, 1]}


async def test_an_event_whose_body_raised_is_acked_as_faust_does(tmp_path_factory):
    async def scenario(app, iterate):
        stream = _stream(app)
        _put(app, stream, range(0, 4))

        async def body(event):
            if event.message.offset == 2:
                raise RuntimeError("agent bug")

        with pytest.raises(RuntimeError):
            await _consume(iterate, stream, 4, body)
        return _acks(app)

    fausts, tuned = await _run_both(tmp_path_factory, scenario)
    assert tuned == fausts
    assert tuned["acked"] == {TP(TOPIC, 0): [0, 1, 2]}
    assert tuned["unacked"] == []  # offset 3 was never taken from the buffer


async def test_an_error_thrown_into_the_channel_is_raised_at_the_next_event(tmp_path_factory):
    async def scenario(app, iterate):
        stream = _stream(app)
        _put(app, stream, range(0, 3))
        seen = []

        async def body(event):
            if event.message.offset == 0:
                await stream.channel.throw(KeyError("thrown"))  # e.g. a decode error, raised to the agent

        with pytest.raises(KeyError):
            seen = await _consume(iterate, stream, 3, body)
        return seen, _acks(app)

    fausts, tuned = await _run_both(tmp_path_factory, scenario)
    assert tuned == fausts
    assert tuned[1]["acked"] == {TP(TOPIC, 0): [0]}


async def test_a_stopped_channel_ends_the_iteration_without_an_error(tmp_path_factory):
    async def scenario(app, iterate):
        stream = _stream(app)
        _put(app, stream, range(0, 3))

        async def body(event):
            if event.message.offset == 1:
                await stream.channel.throw(StopAsyncIteration())  # what Stream._channel_stop_iteration does

        return await _consume(iterate, stream, 3, body), _acks(app)

    fausts, tuned = await _run_both(tmp_path_factory, scenario)
    assert tuned == fausts
    assert [offset for offset, _, _ in tuned[0]] == [0, 1]
    assert tuned[1]["acked"] == {TP(TOPIC, 0): [0, 1]}


async def test_other_tasks_run_at_least_every_max_run_events(app):
    stream = _stream(app)
    _put(app, stream, range(0, 250))
    ticks: list[int] = []
    seen: list[int] = []

    async def other_task():
        while True:
            ticks.append(len(seen))
            await asyncio.sleep(0)

    ticker = asyncio.ensure_future(other_task())
    await asyncio.sleep(0)
    try:
        await _consume(lambda s: faust_tuning.events(s, max_run=100), stream, 250, body=_appender(seen))
    finally:
        ticker.cancel()
    runs = [b - a for a, b in pairwise(ticks) if b != a]
    assert max(runs) == 100  # never more than max_run events between two turns of the other task
    assert sum(runs) >= 200  # ... and not one turn per event: runs of 100, 100, then the rest


def _appender(seen):
    async def body(event):
        seen.append(event.message.offset)

    return body


async def test_stopping_the_stream_ends_the_run_and_leaves_the_rest_unacked(app):
    stream = _stream(app)
    _put(app, stream, range(0, 10))
    seen = []
    async for event in faust_tuning.events(stream):
        seen.append(event.message.offset)
        if event.message.offset == 3:
            await stream.stop()
    assert seen == [0, 1, 2, 3]
    assert _acks(app)["acked"] == {TP(TOPIC, 0): [0, 1, 2, 3]}
    assert stream.channel.queue.qsize() == 6  # still buffered, never acked: redelivered after a restart


def test_a_stream_with_processors_keeps_fausts_iterator(app):
    stream = _stream(app)
    stream.add_processor(lambda value: value)
    it = faust_tuning.events(stream)
    assert it.__qualname__ == stream.events().__qualname__ == "Stream.events"


@pytest.mark.parametrize("key, value", [(b"k", b"v"), (None, b"v"), (b"k", None), (b"", b"")])
async def test_a_raw_bytes_topic_decodes_a_message_into_the_event_fausts_decode_makes(app, key, value):
    topic = app.topic(TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    assert isinstance(topic, faust_tuning.BytesTopic) and isinstance(
        topic.clone(is_iterator=True), faust_tuning.BytesTopic
    )
    fausts = topic.schema.compile(app)
    message = Message(TOPIC, 2, 7, 1.5, 0, [("h", b"1")], key, value, None)
    mine, theirs = await topic.decode(message, propagate=True), await fausts(message, propagate=True)
    assert "Schema" not in topic.decode.__qualname__
    assert (mine.key, mine.value, mine.headers, mine.message) == (
        theirs.key,
        theirs.value,
        theirs.headers,
        theirs.message,
    )
    assert type(mine) is type(theirs)


def test_other_topics_keep_fausts_decode(app):
    for kwargs in ({"value_serializer": "json"}, {"key_type": str}, {"value_type": None}):
        topic = app.topic(
            TOPIC,
            **{"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw", **kwargs},
        )
        assert topic.decode.__qualname__.startswith("Schema.compile"), kwargs
