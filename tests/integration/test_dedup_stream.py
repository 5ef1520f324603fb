"""deduplicate_deliveries on the real broker, with a real worker process."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from app import codec
from app.events import Delivery, SyncRequested
from tests.support.kafka import produce, read_all
from tests.support.stack import WorkerProcess, write_instances

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def sync_request_body(i: int) -> bytes:
    event = SyncRequested(
        source_id=f"src-{i % 20}",
        occurred_at=T0,
        request_id=f"req-{i}",
        mode="incremental",
        trigger="producer",
        paths=[f"docs/{i}.md"],
    )
    return orjson.dumps(event.model_dump(mode="json"))


def delivery(plugin: str, instance: str, delivery_id: str, body: bytes, at: datetime) -> tuple[str, bytes]:
    d = Delivery(delivery_id=delivery_id, plugin=plugin, instance=instance, received_at=at, body=body)
    return d.key, codec.encode(d)


@pytest.fixture
def instances_file(tmp_path):
    return write_instances(
        tmp_path / "instances.toml",
        [
            {"plugin": "generic-hmac", "id": "a", "secret": "s1", "dedup_window": "24h"},
            {"plugin": "standard-webhooks", "id": "a", "secret": "whsec_c2VjcmV0", "dedup_window": "24h"},
        ],
    )


@pytest.fixture
def worker(settings, instances_file, tmp_path):
    s = settings.model_copy(update={"instances_file": instances_file})
    w = WorkerProcess(s, tmp_path / "rocks", tmp_path / "worker.log").start()
    yield w
    w.stop()


async def test_a_thousand_deliveries_with_redeliveries_route_once_each(settings, worker):
    rng = random.Random(7)
    unique = [
        delivery("generic-hmac", "a", f"d-{i}", sync_request_body(i), T0 + timedelta(seconds=i)) for i in range(700)
    ]
    redeliveries = []
    for _ in range(300):
        i = rng.randrange(700)
        # Redelivered minutes later in event time: inside the 24 h window.
        redeliveries.append(
            delivery("generic-hmac", "a", f"d-{i}", sync_request_body(i), T0 + timedelta(minutes=rng.randrange(1, 90)))
        )
    stream = unique + redeliveries
    rng.shuffle(stream)
    # A redelivery that lands before its original in the log is itself the first sighting: fine,
    # what matters is one routing per delivery id.
    await produce(settings, "hookstream.deliveries", stream)

    routed = await read_all(
        settings, "hookstream.sync.control", min_count=700, timeout=120, idle=2.0, alive=worker.alive
    )
    counts = Counter(record.request_id for _, record, _, _ in routed)
    assert len(counts) == 700, worker.log_tail()
    assert set(counts.values()) == {1}, [k for k, v in counts.items() if v > 1][:10]
    assert all(key == record.source_id for key, record, _, _ in routed)


async def test_two_plugins_with_one_instance_name_and_delivery_id_do_not_dedup_each_other(settings, worker):
    body = sync_request_body(1)
    await produce(
        settings,
        "hookstream.deliveries",
        [
            delivery("generic-hmac", "a", "same-id", body, T0),
            delivery("standard-webhooks", "a", "same-id", body, T0),
        ],
    )
    routed = await read_all(settings, "hookstream.sync.control", min_count=2, timeout=90, alive=worker.alive)
    assert sorted(record.delivery.key for _, record, _, _ in routed) == [
        "generic-hmac/a/same-id",
        "standard-webhooks/a/same-id",
    ]
