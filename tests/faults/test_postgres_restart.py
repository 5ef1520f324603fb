"""PostgreSQL crashes (`pg_ctl stop -m immediate`) mid-sync and comes back seconds later.

The workers' writes (documents, projections, the write fences and kept plans) retry
while it is down (`app.store.db.in_transaction`, `apply_with_retry`): a stage blocks
rather than skip a write, so nothing is reported that was not written. The scenario
has a PostgreSQL of its own (the session's serves the other tests).
"""

from __future__ import annotations

import asyncio

from app.embedded.postgres import EmbeddedPostgres
from tests.faults.harness import FaultStack, crash_postgres, start_postgres_again, stop_postgres
from tests.faults.load import Traffic
from tests.faults.scenario import Scenario, connected, mirrors

DOWN_SECONDS = 5.0


async def test_postgresql_restarted_mid_sync_counts_only_what_was_written(broker, tmp_path, load_scale):
    pg = EmbeddedPostgres(tmp_path / "pg").start()
    stack = None
    try:
        stack = await FaultStack.create(broker, pg, tmp_path / "stack")
        await stack.start(workers=1)
        repos = await mirrors(stack, tmp_path, 10, files=100, pushes=140 * load_scale, seed=7, first_id=7000)
        big = (await mirrors(stack, tmp_path, 1, files=2500, pushes=0, seed=7, first_id=7900))[0]
        await connected(stack, repos + [big])
        traffic = Traffic(pushes=140 * load_scale, seconds=18.0 * load_scale, manual_every=10, redeliver=0.1)
        async with Scenario("PostgreSQL restart mid-sync", stack, repos + [big], traffic, seed=7) as sc:
            await sc.until(
                lambda: sc.fan_in_midway(20, big.source_id, at_least=0.1), "the big source's full sync under way"
            )
            await asyncio.to_thread(crash_postgres, pg)
            await asyncio.sleep(DOWN_SECONDS)  # the fault itself: PostgreSQL stays down this long
            await asyncio.to_thread(start_postgres_again, pg)
            await sc.finish()
    finally:
        if stack is not None:
            stack.stop()
        stop_postgres(pg)
