"""The dedup stage across rebalances, with app/stream/faust_tuning/ active.

A second worker joining mid-stream makes the first one stop its flow, revoke and
commit; the newcomer recovers its share of the table from the changelog; then the
first one leaves. Faust's per-message hand-off is replaced by faust_tuning.deliver
and table writes go through faust_tuning.TableWriter: nothing may be lost, and no
delivery may be routed from two different messages (a replay of the same message
after a revoke is allowed: downstream is idempotent for that).

The workers run the dedup stage alone, so that what is measured is this stage's
hand-over, not the other agents' (which consume its output on the same workers).
"""

from __future__ import annotations

import random
import sys
from datetime import timedelta

import aiohttp

from app.embedded.ports import free_port
from app.embedded.supervisor import Child
from tests.integration.test_dedup_faults import T0, assert_routed_once_in_effect, instances
from tests.integration.test_dedup_stream import delivery, sync_request_body
from tests.support.kafka import produce, read_all
from tests.support.services import wait_until
from tests.support.stack import WorkerProcess


class DedupWorker(WorkerProcess):
    """`hookstream worker` with app.stream.dedup as its only agent module."""

    def start(self) -> DedupWorker:
        if not self.web_port:
            self.web_port = free_port()
        env = self.settings.to_env()
        env.update(
            {
                "HOOKSTREAM_WORKER_DATA_DIR": str(self.data_dir),
                "HOOKSTREAM_WORKER_WEB_PORT": str(self.web_port),
                "HOOKSTREAM_LOG_LEVEL": "info",
            }
        )
        code = (
            "import app.stream.app as stream_app; stream_app.STREAM_MODULES = ('app.stream.dedup',); "
            "from app.cli.main import main; raise SystemExit(main(['worker']))"
        )
        self.child = Child("worker", [sys.executable, "-c", code], env, self.log_path, stop_timeout=10).start()
        return self


async def received(worker: WorkerProcess) -> float | None:
    """The worker's hookstream_deliveries_received_total, all plugins."""
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(worker.metrics_url) as r:
                text = await r.text()
    except aiohttp.ClientError:
        return None
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("hookstream_deliveries_received_total{")
    )


async def test_workers_joining_and_leaving_mid_stream_lose_nothing_and_route_nothing_twice(settings, tmp_path):
    # Event times are in the past: keep the wall-clock purge out of this test.
    s = settings.model_copy(update={"instances_file": instances(tmp_path), "dedup_purge_interval_seconds": 3600.0})
    rng = random.Random(5)
    n = 40_000
    stream = [
        delivery("generic-hmac", "a", f"d-{i}", sync_request_body(i), T0 + timedelta(seconds=i)) for i in range(n)
    ]
    stream += [stream[rng.randrange(n)] for _ in range(n // 5)]  # 20 % redeliveries
    rng.shuffle(stream)
    await produce(s, "hookstream.deliveries", stream)

    first = DedupWorker(s, tmp_path / "rocks-1", tmp_path / "worker-1.log").start()
    second = DedupWorker(s, tmp_path / "rocks-2", tmp_path / "worker-2.log")
    try:
        await wait_until(lambda: _at_least(first, 1000), timeout=120, what="the first worker under way")
        second.start()  # joins: the first worker's flow is suspended, partitions move
        await wait_until(lambda: _at_least(second, 1), timeout=120, what="the second worker consuming")
        handed_over_at = await received(first)
        assert handed_over_at is not None and handed_over_at < len(stream), "the rebalance came after the stream"
        first.stop()  # leaves: the second worker takes every partition
        records = await read_all(s, "hookstream.sync.control", min_count=n, timeout=240, idle=3.0, alive=second.alive)
        assert_routed_once_in_effect(records, {f"req-{i}" for i in range(n)}, second.log_tail())
    finally:
        first.stop()
        second.stop()


async def _at_least(worker: WorkerProcess, count: int) -> bool:
    value = await received(worker)
    return value is not None and value >= count
