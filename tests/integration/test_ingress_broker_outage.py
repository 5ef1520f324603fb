"""The ingress while its broker is down: 503 with Retry-After, never a 2xx; accepted again once it is back.

This test stops and restarts a broker of its own (the session broker is shared).
The broker keeps its data in memory, so a restart empties it: records
acknowledged before the outage are checked before it, topics are re-applied
after it, and everything acknowledged after it is checked at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from app import topology
from app.embedded.broker import EmbeddedBroker
from app.ingress.app import create_app
from app.ingress.protocol import IngressRunner
from tests.integration.test_ingress import Ingress, configured_instances, records_on
from tests.support.services import isolated_settings, wait_until

PUBLISH_TIMEOUT = 1.0
RETRY_AFTER = 2


@pytest.fixture
def own_broker(tmp_path) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    yield broker
    broker.stop()


@pytest.fixture
async def ingress(own_broker) -> AsyncIterator[Ingress]:
    settings = isolated_settings(
        own_broker.bootstrap,
        "postgresql://unused.invalid/none",  # the ingress has no database
        publish_timeout_seconds=PUBLISH_TIMEOUT,
        retry_after_seconds=RETRY_AFTER,
        producer_linger_ms=1,
    )
    _, errors = await topology.apply(settings)
    assert not errors, errors
    instances = configured_instances()
    runner = IngressRunner(create_app(settings, instances))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    async with aiohttp.ClientSession() as session:
        yield Ingress(settings, instances, runner, session)
    await runner.cleanup()


async def _deliver(ingress: Ingress, delivery_id: str) -> tuple[int, dict, dict]:
    body = b'{"delivery": "%s"}' % delivery_id.encode()
    return await ingress.post(
        "/hooks/github/acme", body, ingress.signed("github", "acme", body, delivery_id=delivery_id, event="push")
    )


async def _assert_in_kafka(ingress: Ingress, acknowledged: set[str]) -> None:
    records = await records_on(ingress.settings, "hookstream.deliveries", len(acknowledged))
    in_kafka = {key.rsplit("/", 1)[1] for key, _ in records}
    assert acknowledged <= in_kafka, f"acknowledged but not in Kafka: {sorted(acknowledged - in_kafka)}"


async def test_broker_outage_gets_503_then_a_retry_is_accepted_and_nothing_unstored_was_acknowledged(
    own_broker, ingress
):
    acknowledged: set[str] = set()

    status, answer, _ = await _deliver(ingress, "before-outage")
    assert status == 202
    acknowledged.add(answer["deliveryId"])
    await _assert_in_kafka(ingress, acknowledged)

    own_broker.kill()  # a crash, not a goodbye: no connection closes cleanly
    during = [f"during-outage-{i}" for i in range(5)]
    started = time.monotonic()
    results = await asyncio.gather(*(_deliver(ingress, d) for d in during))
    elapsed = time.monotonic() - started
    for status, answer, headers in results:
        assert status == 503, (status, answer)
        assert answer["error"] == "broker_unavailable" and answer["message"]
        assert headers["Retry-After"] == str(RETRY_AFTER)
    assert elapsed < PUBLISH_TIMEOUT + 3, f"503s took {elapsed:.1f}s; the publish timeout is {PUBLISH_TIMEOUT}s"
    async with ingress.session.get(ingress.url + "/readyz") as response:
        assert response.status == 503
        assert (await response.json())["error"] == "not_ready"

    # The same port again; memory storage lost the topics, so they are applied again first.
    restarted = EmbeddedBroker(port=own_broker.port, log_path=own_broker.log_path).start()
    own_broker.process, restarted.process = restarted.process, None  # the fixture stops it
    plan, errors = await topology.apply(ingress.settings)
    assert not errors and not plan.differences, (errors, plan.differences)
    acknowledged.clear()  # what was acknowledged before is gone with the broker's memory, checked above

    for delivery_id in during:

        async def accepted(delivery_id: str = delivery_id) -> bool:
            status, answer, headers = await _deliver(ingress, delivery_id)
            assert status in (202, 503), (status, answer)
            if status == 202:
                acknowledged.add(answer["deliveryId"])
            else:
                assert headers["Retry-After"] == str(RETRY_AFTER)
            return status == 202

        await wait_until(accepted, timeout=30, interval=0.2, what=f"{delivery_id} accepted after the broker came back")

    assert acknowledged == set(during)
    await _assert_in_kafka(ingress, acknowledged)
    async with ingress.session.get(ingress.url + "/readyz") as response:
        assert response.status == 200


async def test_a_stopped_broker_gets_only_202_or_503_that_says_a_retry_is_safe(own_broker, ingress):
    """SIGSTOP: the broker holds its connections and answers nothing (a hung machine, a long GC pause)."""
    deliveries = [f"while-stopped-{i}" for i in range(20)]
    os.kill(own_broker.process.pid, signal.SIGSTOP)
    try:
        results = await asyncio.gather(*(_deliver(ingress, d) for d in deliveries))
    finally:
        os.kill(own_broker.process.pid, signal.SIGCONT)
    acknowledged = set()
    for delivery_id, (status, answer, headers) in zip(deliveries, results, strict=True):
        assert status in (202, 503), (status, answer)
        if status == 202:
            acknowledged.add(delivery_id)
            continue
        assert answer["error"] == "broker_unavailable" and headers["Retry-After"] == str(RETRY_AFTER)
        # A timeout cannot know whether the write happened: the answer must not claim it did not.
        assert "may or may not have been stored" in answer["message"] and "deduplicated" in answer["message"], answer
        assert "nothing was accepted" not in answer["message"]
    assert len(acknowledged) < len(deliveries), "the broker was stopped: some answers must have timed out"

    # Resumed: a retry of each is accepted (503 meanwhile, never anything else), and every 202 is in Kafka.
    for delivery_id in deliveries:

        async def accepted(delivery_id: str = delivery_id) -> bool:
            status, answer, _ = await _deliver(ingress, delivery_id)
            assert status in (202, 503), (status, answer)
            return status == 202

        await wait_until(accepted, timeout=30, interval=0.2, what=f"{delivery_id} accepted after SIGCONT")
        acknowledged.add(delivery_id)
    await _assert_in_kafka(ingress, acknowledged)
