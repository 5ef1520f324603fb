"""The ingress killed with SIGKILL under load, twice, and started again on its port at once.

Requests in flight are cut off: some were published but never answered, so the
provider retries them and the same delivery id lands in Kafka twice. The dedup
stage must route each once.
"""

from __future__ import annotations

from tests.faults.harness import FaultStack
from tests.faults.load import Traffic
from tests.faults.scenario import Scenario, connected, mirrors


async def test_an_ingress_killed_under_load_has_every_retried_delivery_routed_once(
    broker, postgres, tmp_path, load_scale
):
    stack = await FaultStack.create(broker, postgres, tmp_path / "stack")
    try:
        await stack.start(workers=1)
        repos = await mirrors(stack, tmp_path, 10, files=100, pushes=140 * load_scale, seed=8, first_id=8000)
        await connected(stack, repos)
        traffic = Traffic(pushes=140 * load_scale, seconds=18.0 * load_scale, manual_every=10, redeliver=0.1)
        async with Scenario("ingress kill -9 (twice)", stack, repos, traffic, seed=8) as sc:
            for routed in (250, 600):
                await sc.until(lambda routed=routed: sc.routed() >= routed, f"{routed} deliveries routed")
                stack.ingress.kill()
                stack.ingress.start()  # a supervisor restarts it; the provider retries meanwhile
            await sc.finish()
            assert sc.provider.statuses[0] > 0, f"no request was cut off: {sc.provider.summary()}"
    finally:
        stack.stop()
