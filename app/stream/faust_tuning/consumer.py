"""Faust's consumer side, as hookstream runs it: points 1, 5, 6 and 7 of `app.stream.faust_tuning`."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import textwrap
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, cast

from faust.transport import consumer as faust_consumer
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode import Service, ServiceT
from mode.utils.queues import FlowControlEvent

from app.stream.faust_tuning import guard

log = logging.getLogger(__name__)

_CONSUMER = "faust.transport.consumer:Consumer"
_original_drain_messages = guard.keep_original(f"{_CONSUMER}._drain_messages")
_original_add_gap = guard.keep_original(f"{_CONSUMER}._add_gap")
_original_create_worker_consumer = guard.keep_original(
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._create_worker_consumer"
)

# sha256 of the source of faust.transport.consumer.Consumer._drain_messages (faust-streaming 0.15.3),
# the loop `_drain_messages` below is a copy of (point 1: a speed patch, left out when it differs).
DRAIN_MESSAGES_SHA256 = next(
    t.sha256 for p in guard.PATCHES if p.point == 1 for t in p.targets if t.where.endswith("_drain_messages")
)


def install_fetch_wait(fetch_max_wait_ms: int) -> bool:
    """Point 7: the worker's consumer is created with this fetch wait instead of Faust's 1500 ms."""
    if not guard.speed_patch_applies(7):
        return False

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = _original_create_worker_consumer(self, transport)
        consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read by AIOKafkaConsumer.start() for its Fetcher
        return consumer

    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
    return True


async def skip_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
    """Point 6, in place of `Consumer._add_gap`: an offset jump is logged, not marked done.

    Faust's drain loop calls `_add_gap` for a topic with acks when the next record is
    more than one offset past the last one read; `_new_offset` then commits across the
    gap. On hookstream's topics (delete policy, no transactions) that jump only means a
    seek reset the read position or records were dropped in the process: the acks alone
    decide the commit, so a commit never passes a record that was not processed.
    """
    on_offset_jump(tp, offset_from - 1, offset_to)


def install_no_gap_fill() -> None:
    """Point 6 (correctness): installed whatever the drain loop is (Faust's or point 1's fork)."""
    faust_consumer.Consumer._add_gap = skip_gap  # type: ignore[method-assign]


def uninstall_no_gap_fill() -> None:
    faust_consumer.Consumer._add_gap = _original_add_gap  # type: ignore[method-assign]


def faust_drain_source_digest() -> str:
    source = textwrap.dedent(inspect.getsource(_original_drain_messages))
    return hashlib.sha256(source.encode()).hexdigest()


def install_fast_deliver() -> bool:
    """Point 1 (speed): the forked drain loop, only over the exact loop it was copied from."""
    consumer_cls = faust_consumer.Consumer
    if consumer_cls._drain_messages is _drain_messages:
        return True
    if not guard.speed_patch_applies(1):
        return False
    consumer_cls._drain_messages = _drain_messages  # type: ignore[method-assign]
    return True


def uninstall_fast_deliver() -> None:
    faust_consumer.Consumer._drain_messages = _original_drain_messages  # type: ignore[method-assign]


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

    def __await__(self):
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


async def deliver(consumer: Any, callback: Callable[[Any], Coroutine[Any, Any, None]], message: Any) -> None:
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


async def _drain_messages(self, fetcher: ServiceT) -> None:  # pragma: no cover
    # faust-streaming 0.15.3 `Consumer._drain_messages`, line for line, but for the
    # line marked "hookstream" (tests/unit/test_faust_tuning.py diffs the two). Point 6 is
    # not in here: it replaces `_add_gap`, which both this loop and Faust's call.
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
                                await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None:
                            if self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                        # hookstream: was wait_first(callback(message), suspend_flow.wait())
                        await deliver(self, callback, message)
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
        "were dropped): offsets in between are committed only once processed",
        tp.topic,
        tp.partition,
        offset,
        read,
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
