"""The dedup stage's clock on the real broker, with a real worker: the broker timestamp, never `received_at`.

A delivery record dated in the year 9999 (forged, or corrupt) must not move the clock that
expires and purges a partition's remembered keys: were it the clock, the purge would forget
every key of the partition at once, and a later redelivery of an already-routed delivery
would be routed again.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.partitioner import DefaultPartitioner

from app import codec
from app.core import intake
from app.events import DeadLettered, Delivery
from tests.integration.test_dedup_faults import _metric
from tests.integration.test_dedup_stream import sync_request_body
from tests.support.kafka import produce, read_all
from tests.support.services import wait_until
from tests.support.stack import WorkerProcess, write_instances

END_OF_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
PARTITIONS = 8  # topics/hookstream.deliveries.toml


def partition_of(key: str) -> int:
    """The partition a test producer sends `key` to (aiokafka's murmur2 partitioner)."""
    return DefaultPartitioner()(key.encode(), list(range(PARTITIONS)), list(range(PARTITIONS)))


def delivery(delivery_id: str, body_id: int, received_at: datetime) -> Delivery:
    return Delivery(
        delivery_id=delivery_id,
        plugin="generic-hmac",
        instance="a",
        received_at=received_at,
        body=sync_request_body(body_id),
    )


def on_partition_of(key: str, prefix: str) -> str:
    """A delivery id whose key lands on the same partition as `key`."""
    target = partition_of(key)
    return next(f"{prefix}-{n}" for n in range(1000) if partition_of(f"generic-hmac/a/{prefix}-{n}") == target)


@pytest.fixture
def worker(settings, tmp_path):
    instances = write_instances(
        tmp_path / "instances.toml",
        [{"plugin": "generic-hmac", "id": "a", "secret": "s1", "dedup_window": "24h"}],
    )
    s = settings.model_copy(update={"instances_file": instances, "dedup_purge_interval_seconds": 0.3})
    w = WorkerProcess(s, tmp_path / "rocks", tmp_path / "worker.log").start()
    yield s, w
    w.stop()


async def _purge_scanned(worker: WorkerProcess, entries: int) -> bool:
    """A purge scan ran after `entries` entries were stored: held plus purged adds up to them."""
    held = await _metric(worker, "hookstream_dedup_entries")
    purged = await _metric(worker, "hookstream_dedup_entries_purged_total")
    return held is not None and purged is not None and held[0] + purged[0] == entries


async def test_a_record_dated_in_the_year_9999_does_not_let_an_earlier_delivery_route_twice(worker):
    s, w = worker
    now = datetime.now(UTC)
    first = delivery("d-1", 1, now)
    forged = delivery(on_partition_of(first.key, "forged"), 2, END_OF_TIME)
    assert partition_of(forged.key) == partition_of(first.key)

    await produce(s, "hookstream.deliveries", [(first.key, codec.encode(first))])
    await read_all(s, "hookstream.sync.control", min_count=1, timeout=90, alive=w.alive)
    await produce(s, "hookstream.deliveries", [(forged.key, codec.encode(forged))])
    await read_all(s, "hookstream.sync.control", min_count=2, timeout=60, alive=w.alive)
    # Both entries stored, and a purge scan has run over them since (a clock at the year 9999 purges d-1's).
    await wait_until(lambda: _purge_scanned(w, 2), timeout=30, what="a purge scan over both entries")

    redelivery = delivery("d-1", 1, now + timedelta(minutes=1))  # the provider retried: another offset
    await produce(s, "hookstream.deliveries", [(redelivery.key, codec.encode(redelivery))])
    outcomes = await read_all(s, "hookstream.deliveries.outcomes", min_count=3, timeout=60, alive=w.alive)
    assert [(r.key, r.outcome) for _, r, _, _ in outcomes if r.key == first.key] == [
        (first.key, "routed"),
        (first.key, "duplicate"),
    ], w.log_tail()
    routed = await read_all(s, "hookstream.sync.control", min_count=2, timeout=30, idle=1.0, alive=w.alive)
    assert Counter(r.request_id for _, r, _, _ in routed) == {"req-1": 1, "req-2": 1}
    assert await _metric(w, "hookstream_dedup_entries_purged_total") == (0.0,)


async def test_a_broker_timestamp_no_clock_can_hold_is_dead_lettered_and_moves_no_clock(worker):
    s, w = worker
    now = datetime.now(UTC)
    first = delivery("d-1", 1, now)
    late = delivery(on_partition_of(first.key, "late"), 2, now)
    year_9500_ms = int((datetime(9500, 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000)

    await produce(s, "hookstream.deliveries", [(first.key, codec.encode(first))])
    await read_all(s, "hookstream.sync.control", min_count=1, timeout=90, alive=w.alive)
    # A producer may set any 64-bit timestamp: this one is past what a clock may count from.
    await produce(s, "hookstream.deliveries", [(late.key, codec.encode(late), year_9500_ms)])
    dead = await read_all(s, "hookstream.dlq", min_count=1, timeout=60, alive=w.alive)
    letters = [r for _, r, _, _ in dead if isinstance(r, DeadLettered)]
    assert len(letters) == 1, w.log_tail()
    (letter,) = letters
    assert (letter.stage, letter.key, letter.original) == ("validate", late.key, late)
    assert letter.dead_letter_id == intake.dead_letter_id(late.key)  # one per delivery key, as the stage's others
    assert "1970-8999" in letter.error
    await wait_until(lambda: _purge_scanned(w, 1), timeout=30, what="a purge scan after the refused record")

    redelivery = delivery("d-1", 1, now + timedelta(minutes=1))
    await produce(s, "hookstream.deliveries", [(redelivery.key, codec.encode(redelivery))])
    outcomes = await read_all(s, "hookstream.deliveries.outcomes", min_count=3, timeout=60, alive=w.alive)
    assert sorted((r.key, r.outcome, r.rule) for _, r, _, _ in outcomes) == sorted(
        [
            (first.key, "routed", None),
            (late.key, "dead_lettered", "validate"),
            (first.key, "duplicate", None),
        ]
    ), w.log_tail()
    routed = await read_all(s, "hookstream.sync.control", min_count=1, timeout=30, idle=1.0, alive=w.alive)
    assert [r.request_id for _, r, _, _ in routed] == ["req-1"]
