"""The broker killed (SIGKILL) under load and down for several seconds, then started again on the same port.

tansu keeps its log on `s3://` storage in a local S3 (`moto[server]`), so topics,
records and committed offsets survive the restart (docs/local-broker.md). While it is down
the ingress answers 503 with Retry-After and the provider retries with backoff;
the worker reconnects by itself. Nothing acknowledged may be lost.
"""

from __future__ import annotations

import asyncio

from tests.faults.harness import FaultStack, S3Server, durable_broker
from tests.faults.load import Traffic
from tests.faults.scenario import Scenario, connected, mirrors

DOWN_SECONDS = 5.0
# tansu on s3:// writes every batch as objects to the local S3 (a Python server): a few
# hundred records a second at best, so this scenario sends a smaller load.
SOURCES = 4
PUSHES = 40


async def test_a_broker_restarted_under_load_loses_nothing_that_was_acknowledged(postgres, tmp_path, load_scale):
    s3 = S3Server(tmp_path / "s3.log").start()
    broker = durable_broker(s3, tmp_path / "tansu.log").start()
    stack = None
    try:
        stack = await FaultStack.create(broker, postgres, tmp_path / "stack")
        await stack.start(workers=1)
        repos = await mirrors(stack, tmp_path, SOURCES, files=60, pushes=PUSHES * load_scale, seed=6, first_id=6000)
        await connected(stack, repos)
        traffic = Traffic(pushes=PUSHES * load_scale, seconds=12.0 * load_scale, manual_every=10, redeliver=0.1)
        async with Scenario("broker restart (tansu on S3)", stack, repos, traffic, seed=6, read_idle=3.0) as sc:
            # A third of the load acknowledged (the ingress acks once the broker has a delivery):
            # the outage then falls inside the traffic. Waiting for deliveries routed by the
            # worker instead raced the end of the load when routing was slow (a busy machine).
            await sc.until(lambda: len(sc.provider.accepted) >= 60, "deliveries acknowledged through the broker")
            broker.kill()  # SIGKILL: a crash, no goodbye
            await asyncio.sleep(DOWN_SECONDS)  # the fault itself: the broker stays down this long
            broker.start()
            await sc.finish()
            refused = sc.provider.statuses[503] + sc.provider.statuses[0]
            assert refused > 0, f"the provider never saw the outage: {sc.provider.summary()}"
    finally:
        if stack is not None:
            stack.stop()
        broker.stop()
        s3.stop()
