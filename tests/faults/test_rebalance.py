"""A second worker joins mid-sync, then the first is killed: partitions move between live workers under load.

This scenario found the record loss that app/stream/faust_tuning/ points 5 and 6 fix:
records fetched while a worker finished restoring its tables were thrown out of the
stream buffers, and a later record made Faust commit past them as an offset "gap".
"""

from __future__ import annotations

from tests.faults.harness import FaultStack
from tests.faults.load import Traffic
from tests.faults.scenario import Scenario, connected, mirrors

SOURCES = 10
PUSHES = 140
SECONDS = 18.0


async def two_stacks_worth(broker, postgres, tmp_path, seed: int, first_id: int, scale: int):
    stack = await FaultStack.create(broker, postgres, tmp_path / "stack")
    repos = await mirrors(stack, tmp_path, SOURCES, files=100, pushes=PUSHES * scale, seed=seed, first_id=first_id)
    big = (await mirrors(stack, tmp_path, 1, files=2500, pushes=0, seed=seed, first_id=first_id + 900))[0]
    traffic = Traffic(pushes=PUSHES * scale, seconds=SECONDS * scale, manual_every=10, redeliver=0.1)
    return stack, repos, big, traffic


async def test_a_worker_joining_mid_sync_then_the_first_killed_loses_and_doubles_nothing(
    broker, postgres, tmp_path, load_scale
):
    stack, repos, big, traffic = await two_stacks_worth(broker, postgres, tmp_path, 4, 4000, load_scale)
    try:
        await stack.start(workers=1)
        await connected(stack, repos + [big])
        first = stack.workers[0]
        async with Scenario(
            "rebalance: join mid-sync, kill the first", stack, repos + [big], traffic, seed=4, settle_timeout=30
        ) as sc:
            await sc.until(lambda: sc.fan_in_midway(20, big.source_id), "the big source's first full sync under way")
            first_job = sc.fan_in_midway(20, big.source_id)
            second = stack.start_worker()

            async def both_in_the_group() -> bool:
                return await stack.group() == ("Stable", 2)

            await sc.until(both_in_the_group, "the group stable with both workers", timeout=60)
            await sc.provider.send(sc.provider.manual(big.source_id), traffic)
            await sc.until(
                lambda: sc.fan_in_midway(20, big.source_id, at_least=0.1) not in (None, first_job),
                "the big source's second full sync under way",
            )
            stack.kill_worker(first)
            await sc.finish()
            assert second.alive()
    finally:
        stack.stop()
