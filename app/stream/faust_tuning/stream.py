"""Faust's stream iterator, as hookstream's agents run it: point 8 of `app.stream.faust_tuning`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from faust import Schema, Topic
from faust import streams as faust_streams
from faust.types import ChannelT, EventT

# Events an agent takes from its buffer before it lets the loop run other tasks (Faust's
# drain loop hands the consumer's messages over in the same steps of 100).
MAX_RUN = 100


def events(stream: Any, max_run: int = MAX_RUN) -> AsyncIterator[EventT]:
    """`stream.events()` without a loop round-trip per event.

    Faust's iterator (`Stream._c_aiter` around `StreamIterator.next`) awaits
    `asyncio.sleep(0)` and then `channel.__anext__()` for every event, even when the
    stream's buffer already holds the next one (its quick path is behind an opt-in
    setting): a full loop iteration, with an epoll call, per event, under two
    async generators (`__aiter__` and `events()`). Here the buffer is drained as Faust
    drains it, one event at a time, and every event goes through the same steps
    (generation and flow-control check, tracking, sensors, current event, and the
    ack in Faust's own `StreamIterator.after`), but the loop runs other tasks only once
    the buffer is empty or `max_run` events were taken in a row.
    """
    iterator = faust_streams._CStreamIterator
    channel = stream.channel
    if (
        iterator is None
        or not getattr(stream.app, "_hookstream_events", False)
        or not isinstance(channel, ChannelT)
        or stream._processors
        or stream.join_strategy
    ):
        return stream.events()  # Faust's own path: nothing here was written for it (or the guard left it out)
    it = _events(stream, iterator(stream), max_run)
    stream._active_agens.add(it)  # Stream.on_stop closes it, as it closes Faust's own iterator
    return it


async def _events(stream: Any, it: Any, max_run: int) -> AsyncIterator[EventT]:
    # Stream._c_aiter's frame: started here, stopped here, the channel's iteration ended.
    stream._finalized = True
    started_by_aiter = await stream.maybe_start()
    app = stream.app
    channel = stream.channel
    queue = channel.queue
    errors = queue._errors
    empty = queue.empty
    quick_get = queue.get_nowait
    slow_get = channel.__anext__
    flow_control = app.flow_control
    acking_topics = app.topics._acking_topics
    add_unacked = it.add_unacked
    on_message_in = it.on_message_in
    on_stream_event_in = it.on_stream_event_in
    after = it.after
    set_current_event = stream._set_current_event
    sleep = asyncio.sleep
    try:
        while not stream.should_stop:
            await sleep(0)  # once per run of events, not once per event
            if errors:
                raise errors.popleft()
            value = await slow_get() if empty() else quick_get()
            run = 0
            while True:
                # StreamIterator._prepare_event, then Stream.events()'s filter.
                do_ack = stream.enable_acks
                event = value
                if not isinstance(event, EventT):
                    set_current_event(None)  # not an event: Stream.events() yields nothing for it
                    stream.events_total += 1
                elif not flow_control.is_active() or event.message.generation_id != app.consumer_generation_id:
                    pass  # fetched before a rebalance: skipped, and (as Faust's compiled iterator does) not acked
                else:
                    message = event.message
                    if message.topic in acking_topics and not message.tracked:
                        message.tracked = True
                        add_unacked(message)
                        on_message_in(message.tp, message.offset, message)
                    sensor_state = on_stream_event_in(message.tp, message.offset, stream, event)
                    set_current_event(event)
                    try:
                        stream.events_total += 1
                        yield event
                    finally:
                        stream.current_event = None
                        after(event, do_ack, sensor_state)
                run += 1
                if run >= max_run or stream.should_stop or empty():
                    break  # `empty()` is also true when an error waits in the buffer
                value = quick_get()
    except StopAsyncIteration:
        return  # how a stopping stream ends its channel's iteration (`_channel_stop_iteration`)
    finally:
        stream._channel_stop_iteration(channel)
        if started_by_aiter:
            await stream.stop()
            stream.service_reset()


class BytesTopic(Topic):
    """Point 9: a topic of raw bytes turns a message into its event without the serializer layers.

    For a topic whose keys and values are `bytes` with the `raw` serializer (every topic
    hookstream's agents read: app/codec.py decodes), Faust's compiled decode goes through
    the schema, the serializer registry and the `raw` codec, twice, to hand back the
    message's own key and value. This creates the same event from them directly. Any
    other topic (a table's changelog with other serializers, a model-typed topic) keeps
    Faust's decode.
    """

    def _compile_decode(self) -> None:
        if not is_raw_bytes(self.schema):
            super()._compile_decode()
            return
        create_event = self.app.create_event

        async def decode(message: Any, *, propagate: bool = False) -> EventT:
            return create_event(message.key, message.value, message.headers, message)

        self.decode = decode  # type: ignore[method-assign]


def is_raw_bytes(schema: Any) -> bool:
    return (
        type(schema) is Schema
        and schema.key_type is bytes
        and schema.value_type is bytes
        and schema.key_serializer == "raw"
        and schema.value_serializer == "raw"
    )
