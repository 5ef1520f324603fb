"""The dedup stage under faults: SIGKILL mid-stream, a lost RocksDB directory, and purge."""

from __future__ import annotations

import random
import shutil
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import aiohttp

from tests.integration.test_dedup_stream import delivery, sync_request_body
from tests.support.kafka import produce, read_all
from tests.support.services import wait_until
from tests.support.stack import WorkerProcess, write_instances

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def routings(records) -> dict[str, set[tuple[int, int]]]:
    """request id -> the (partition, offset) of every delivery message it was routed from."""
    seen: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for _, record, _, _ in records:
        seen[record.request_id].add((record.delivery.partition, record.delivery.offset))
    return seen


def assert_routed_once_in_effect(records, expected_ids: set[str], log: str) -> None:
    seen = routings(records)
    missing = expected_ids - set(seen)
    assert not missing, f"{len(missing)} deliveries lost, e.g. {sorted(missing)[:5]}\n{log}"
    # Routed again only as a replay of the very same message (downstream is idempotent for
    # that); never from a redelivery at another offset.
    twice = {k: v for k, v in seen.items() if len(v) > 1}
    assert not twice, f"routed twice from different messages: {list(twice.items())[:5]}"


def instances(tmp_path, window: str = "24h"):
    return write_instances(
        tmp_path / "instances.toml",
        [
            {"plugin": "generic-hmac", "id": "a", "secret": "s1", "dedup_window": window},
        ],
    )


async def test_a_worker_killed_mid_stream_loses_nothing_and_routes_nothing_twice(settings, tmp_path):
    s = settings.model_copy(update={"instances_file": instances(tmp_path)})
    rng = random.Random(11)
    n = 3000
    stream = [
        delivery("generic-hmac", "a", f"d-{i}", sync_request_body(i), T0 + timedelta(seconds=i)) for i in range(n)
    ]
    stream += [stream[rng.randrange(n)] for _ in range(n // 5)]  # 20 % redeliveries
    rng.shuffle(stream)
    await produce(s, "hookstream.deliveries", stream)

    worker = WorkerProcess(s, tmp_path / "rocks", tmp_path / "worker-1.log").start()
    try:
        await wait_until(lambda: _routed_so_far(s, 300), timeout=90, what="the first routings")
        worker.kill()  # SIGKILL mid-stream
    finally:
        worker.stop()
    restarted = WorkerProcess(s, tmp_path / "rocks", tmp_path / "worker-2.log").start()
    try:
        records = await read_all(
            s, "hookstream.sync.control", min_count=n, timeout=150, idle=3.0, alive=restarted.alive
        )
        assert_routed_once_in_effect(records, {f"req-{i}" for i in range(n)}, restarted.log_tail())
    finally:
        restarted.stop()


async def _routed_so_far(s, at_least: int) -> bool:
    records = await read_all(s, "hookstream.sync.control", timeout=2, idle=0.2, decode=False)
    return len(records) >= at_least


async def test_a_worker_whose_rocksdb_was_deleted_rebuilds_from_the_changelog_and_still_drops_redeliveries(
    settings, tmp_path
):
    s = settings.model_copy(update={"instances_file": instances(tmp_path)})
    first = [
        delivery("generic-hmac", "a", f"d-{i}", sync_request_body(i), T0 + timedelta(seconds=i)) for i in range(200)
    ]
    await produce(s, "hookstream.deliveries", first)
    worker = WorkerProcess(s, tmp_path / "rocks", tmp_path / "worker-1.log").start()
    try:
        await read_all(s, "hookstream.sync.control", min_count=200, timeout=90, alive=worker.alive)
    finally:
        worker.stop()
    shutil.rmtree(tmp_path / "rocks")

    redeliveries = [
        delivery("generic-hmac", "a", f"d-{i}", sync_request_body(i), T0 + timedelta(minutes=30)) for i in range(200)
    ]
    new = [
        delivery("generic-hmac", "a", f"d-{i}", sync_request_body(i), T0 + timedelta(minutes=31))
        for i in range(200, 250)
    ]
    await produce(s, "hookstream.deliveries", redeliveries + new)
    rebuilt = WorkerProcess(s, tmp_path / "rocks", tmp_path / "worker-2.log").start()
    try:
        records = await read_all(s, "hookstream.sync.control", min_count=250, timeout=90, idle=3.0, alive=rebuilt.alive)
        assert_routed_once_in_effect(records, {f"req-{i}" for i in range(250)}, rebuilt.log_tail())
    finally:
        rebuilt.stop()


async def test_purge_keeps_the_table_flat_over_a_windows_worth_of_unique_deliveries(settings, tmp_path):
    """Windows are in stream time (the broker timestamps): each wave is written 100 s (of broker
    time) after the previous one, past the 60 s window, so the worker purges the previous wave by
    itself and the table holds one wave however many unique deliveries went through."""
    s = settings.model_copy(
        update={"instances_file": instances(tmp_path, window="60s"), "dedup_purge_interval_seconds": 0.5}
    )
    worker = WorkerProcess(s, tmp_path / "rocks", tmp_path / "worker.log").start()
    t0 = datetime.now(UTC)
    try:
        for wave in range(4):
            at = t0 + timedelta(seconds=100 * wave)
            at_ms = int(at.timestamp() * 1000)
            batch = [
                (*delivery("generic-hmac", "a", f"w{wave}-{i}", sync_request_body(wave * 1000 + i), at), at_ms)
                for i in range(300)
            ]
            await produce(s, "hookstream.deliveries", batch)
            await read_all(s, "hookstream.sync.control", min_count=300 * (wave + 1), timeout=90, alive=worker.alive)
            await wait_until(
                lambda wave=wave: _metric(worker, "hookstream_dedup_entries_purged_total", equal=300.0 * wave),
                timeout=30,
                what=f"wave {wave - 1} purged",
            )
            await wait_until(
                lambda: _metric(worker, "hookstream_dedup_entries", equal=300.0), timeout=30, what="one wave held"
            )
    finally:
        worker.stop()


async def _metric(worker: WorkerProcess, name: str, equal: float | None = None):
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(worker.metrics_url) as r:
                text = await r.text()
    except aiohttp.ClientError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            value = float(line.split()[1])
            # A 1-tuple, so that a value of 0 still counts as "answered" for wait_until.
            return (value,) if equal is None else value == equal
    return None
