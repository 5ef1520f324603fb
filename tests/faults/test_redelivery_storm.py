"""A redelivery storm: 20 % of acknowledged deliveries delivered again, half of those after a worker restart.

GitHub's "redeliver" sends the same delivery id and body; a producer's retry sends
the same body (its id is the body's hash). The redeliveries held back are
released only once the restarted worker (a clean stop, then a new process on the
same RocksDB directory) is routing again: its dedup table must still know them.
"""

from __future__ import annotations

from tests.faults.harness import FaultStack
from tests.faults.load import Traffic
from tests.faults.scenario import Scenario, connected, mirrors


async def test_a_redelivery_storm_across_a_worker_restart_routes_every_delivery_once(
    broker, postgres, tmp_path, load_scale
):
    stack = await FaultStack.create(broker, postgres, tmp_path / "stack")
    try:
        await stack.start(workers=1)
        repos = await mirrors(stack, tmp_path, 10, files=100, pushes=140 * load_scale, seed=9, first_id=9000)
        await connected(stack, repos)
        traffic = Traffic(pushes=140 * load_scale, seconds=18.0 * load_scale, manual_every=10, redeliver=0.2, held=0.5)
        async with Scenario("redelivery storm (20 %, across a restart)", stack, repos, traffic, seed=9) as sc:
            await sc.until(lambda: sc.routed() >= 400, "deliveries routed before the restart")
            await stack.restart_worker(stack.workers[0], kill=False)
            resumed_from = sc.routed()
            await sc.until(lambda: sc.routed() >= resumed_from + 100, "the restarted worker routing", timeout=90)
            sc.provider.release_held()
            await sc.finish()
            redelivered = sc.provider.redelivered
            assert redelivered >= 0.15 * len(sc.provider.accepted), sc.provider.summary()
    finally:
        stack.stop()
