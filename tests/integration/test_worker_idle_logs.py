"""An idle worker stays quiet: Faust's livelock detector finds nothing to report.

The detector checks every assigned partition of a topic with acks every 2.5 s and
reports one whose stream has not processed records it fetched within
`stream_processing_timeout`. The tables' changelog partitions are assigned too,
but no stream consumes them once the tables are recovered: declared as ordinary
(acking) topics, they were reported 16 times every 2.5 s from the fifth minute
on. The threshold is lowered here so that the test covers several detector runs
past it within seconds.
"""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import pytest

from tests.support.flows import connected, github_delivery, send_control
from tests.support.kafka import produce
from tests.support.services import isolated_settings, wait_until
from tests.support.stack import WorkerProcess, started_worker, write_instances

THRESHOLD = 3.0  # seconds (Faust's default is 300)
DETECTOR_INTERVAL = 2.5  # broker_commit_interval (1 s) * 2.5, Faust's own cadence


@pytest.fixture(scope="module")
async def idle_worker(broker, postgres, tmp_path_factory):

    tmp = tmp_path_factory.mktemp("idle")
    instances = write_instances(tmp / "instances.toml", [{"plugin": "github", "id": "gh", "secret": "s3cret"}])
    s = isolated_settings(
        broker.bootstrap, postgres.url, instances_file=instances, stream_processing_timeout_seconds=THRESHOLD
    )
    worker = await started_worker(s, tmp)
    yield s, worker
    worker.stop()


async def _both_tables_written(worker: WorkerProcess) -> bool:
    """The delivery reached the dedup table and the source event the sources table."""
    try:
        async with aiohttp.ClientSession() as http, http.get(worker.metrics_url) as r:
            text = await r.text()
    except aiohttp.ClientError:
        return False
    delivery = re.search(r'^hookstream_deliveries_received_total\{plugin="github"\} 1\.0$', text, re.M)
    source = re.search(
        r'^hookstream_projection_records_total\{outcome="applied",projection="project_sources"\} 1\.0$', text, re.M
    )
    return bool(delivery and source)


async def test_a_worker_idle_past_the_livelock_threshold_logs_no_error(idle_worker, tmp_path):
    settings, worker = idle_worker
    await produce(settings, "hookstream.deliveries", [github_delivery("gh", "idle-1", b'{"zen": "z"}', event="ping")])
    await send_control(settings, connected("git:idle", tmp_path))
    await wait_until(lambda: _both_tables_written(worker), timeout=60, what="a delivery and a source event consumed")
    # Both changelogs now hold a record no stream consumes. Stay idle past the threshold for
    # two detector runs (the subject of the test is time passing with nothing to do; the
    # detector counts from the consumer's start, which was before the records).
    quiet_until = time.monotonic() + THRESHOLD + 2 * DETECTOR_INTERVAL
    while time.monotonic() < quiet_until:
        assert worker.alive(), worker.log_tail()
        await asyncio.sleep(0.5)
    errors = [line for line in worker.log_path.read_text(errors="replace").splitlines() if " ERROR " in line]
    assert not errors, "\n".join(errors[:20])
