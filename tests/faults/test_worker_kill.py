"""kill -9 of a worker under steady load, at three points, each followed by a restart on the same RocksDB directory.

One stack for the module (a worker's group join costs seconds); each phase has
sources of its own and is checked on its own: nothing acknowledged is lost,
nothing is routed or synced twice, the documents are `git ls-tree` of each
source's last synced commit and every `sync.completed` tells what was written.
"""

from __future__ import annotations

import pytest

from tests.faults.harness import FaultStack
from tests.faults.load import Traffic
from tests.faults.scenario import Scenario, connected, mirrors

SOURCES = 10
PUSHES = 140
SECONDS = 18.0


@pytest.fixture(scope="module")
async def stack(broker, postgres, tmp_path_factory):
    stack = await FaultStack.create(broker, postgres, tmp_path_factory.mktemp("worker-kill"))
    await stack.start(workers=1)
    yield stack
    stack.stop()


def traffic(scale: int) -> Traffic:
    return Traffic(pushes=PUSHES * scale, seconds=SECONDS * scale, manual_every=10, redeliver=0.1)


async def test_a_worker_killed_mid_dedup_loses_nothing_and_routes_nothing_twice(
    stack: FaultStack, tmp_path, load_scale
):
    repos = await mirrors(stack, tmp_path, SOURCES, files=100, pushes=PUSHES * load_scale, seed=1, first_id=1000)
    await connected(stack, repos)
    async with Scenario("worker kill -9 mid-dedup", stack, repos, traffic(load_scale), seed=1) as sc:
        await sc.until(lambda: sc.routed() >= 250, "deliveries being deduplicated and routed")
        await stack.restart_worker(stack.workers[0])
        await sc.finish()


async def test_a_worker_killed_mid_orchestration_completes_every_job_once_with_its_real_counts(
    stack: FaultStack, tmp_path, load_scale
):
    repos = await mirrors(stack, tmp_path, SOURCES, files=160, pushes=PUSHES * load_scale, seed=2, first_id=2000)
    await connected(stack, repos)
    async with Scenario("worker kill -9 mid-orchestration", stack, repos, traffic(load_scale), seed=2) as sc:
        await sc.until(lambda: len(sc.completed()) >= 10 and sc.fan_in_midway(), "a job's fan-in half reported")
        await stack.restart_worker(stack.workers[0])
        await sc.finish()


async def test_a_worker_killed_mid_batch_writes_the_tree_once_and_counts_it_once(
    stack: FaultStack, tmp_path, load_scale
):
    repos = await mirrors(stack, tmp_path, SOURCES - 1, files=100, pushes=PUSHES * load_scale, seed=3, first_id=3000)
    big = await mirrors(stack, tmp_path, 1, files=2000, pushes=0, seed=3, first_id=3900)
    await connected(stack, repos + big)
    files = len(big[0].changes) and 2000
    async with Scenario("worker kill -9 mid-batch", stack, repos + big, traffic(load_scale), seed=3) as sc:

        async def partly_written() -> bool:
            return files * 0.15 <= await sc.rows(big[0].source_id) <= files * 0.7

        await sc.until(partly_written, "the big source's full sync partly written")
        await stack.restart_worker(stack.workers[0])
        await sc.finish()
