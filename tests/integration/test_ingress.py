"""The ingress against the real embedded broker: what it answers, and what lands in Kafka."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from pydantic import SecretStr

from app import codec
from app.events import Delivery
from app.ingress.app import PUBLISHER, create_app
from app.ingress.protocol import IngressRunner
from app.instances import InstanceConfig, parse_instances
from app.plugins import get_plugin
from app.plugins.base import fallback_delivery_id
from app.settings import Settings
from app.topology import MissingTopics
from tests.support.services import isolated_settings, wait_until

GITHUB_SECRET = "It's a Secret to Everybody"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-test-key").decode()
EVENTS_TOKEN = "producer-token-1"
BODY_LIMIT = 4096

SYNC_REQUESTED = {
    "type": "sync.requested",
    "source_id": "git:demo",
    "occurred_at": "2024-01-01T00:00:00Z",
    "request_id": "r-1",
    "mode": "full",
    "trigger": "manual",
}


def configured_instances() -> dict[tuple[str, str], InstanceConfig]:
    return parse_instances(
        {
            "instance": [
                {"plugin": "github", "id": "acme", "secret": GITHUB_SECRET},
                {"plugin": "standard-webhooks", "id": "billing", "secret": WEBHOOK_SECRET},
                {
                    "plugin": "generic-hmac",
                    "id": "producer",
                    "secret": "generic-secret",
                    "options": {"prefix": "sha256="},
                },
            ]
        },
        "test instances",
        env={},
    )


class Ingress:
    """A running ingress app on a loopback port, with a client session and the instances it serves."""

    def __init__(self, settings: Settings, instances, runner: IngressRunner, session: aiohttp.ClientSession) -> None:
        self.settings = settings
        self.instances = instances
        self.runner = runner
        self.session = session
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    def signed(self, plugin: str, instance: str, body: bytes, **sign_args) -> dict[str, str]:
        sign_args.setdefault("now", time.time())
        return get_plugin(plugin).sign(body, self.instances[(plugin, instance)], **sign_args)

    async def post(
        self, path: str, body: bytes | object = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict, dict]:
        async with self.session.post(self.url + path, data=body, headers=headers or {}) as response:
            return response.status, await response.json(content_type=None), dict(response.headers)


@pytest.fixture
async def ingress(settings) -> AsyncIterator[Ingress]:
    settings = settings.model_copy(
        update={"body_limit_bytes": BODY_LIMIT, "events_token": SecretStr(EVENTS_TOKEN), "producer_linger_ms": 1}
    )
    instances = configured_instances()
    runner = IngressRunner(create_app(settings, instances))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    async with aiohttp.ClientSession() as session:
        yield Ingress(settings, instances, runner, session)
    await runner.cleanup()


async def records_on(
    settings: Settings, logical_topic: str, expected: int, timeout: float = 20.0
) -> list[tuple[str, bytes]]:
    """Read the topic from the beginning until `expected` records arrived: (key, value) pairs."""
    consumer = AIOKafkaConsumer(
        settings.topic(logical_topic),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    seen: list[tuple[str, bytes]] = []
    try:

        async def all_arrived() -> bool:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                seen.extend((codec.decode_key(r.key), r.value) for r in records)
            return len(seen) >= expected

        await wait_until(all_arrived, timeout=timeout, what=f"{expected} record(s) on {logical_topic}")
    finally:
        await consumer.stop()
    return seen


async def test_a_verified_delivery_lands_in_kafka_byte_exact_under_its_key(ingress):
    body = b'{"zen": "Keep it logically awesome.",\n  "hook_id": 1, "odd": "\\u00e9 \xc3\xa9"}  '
    delivery_id = str(uuid.uuid4())
    headers = ingress.signed("github", "acme", body, delivery_id=delivery_id, event="ping")

    status, answer, _ = await ingress.post("/hooks/github/acme", body, headers)

    assert (status, answer) == (202, {"deliveryId": delivery_id})
    [(key, value)] = await records_on(ingress.settings, "hookstream.deliveries", 1)
    assert key == f"github/acme/{delivery_id}"
    delivery = codec.decode(Delivery, value)
    assert delivery.body == body
    assert (delivery.plugin, delivery.instance, delivery.delivery_id, delivery.route) == (
        "github",
        "acme",
        delivery_id,
        None,
    )
    assert delivery.headers["x-github-event"] == "ping"
    assert "x-hub-signature-256" not in delivery.headers


async def test_a_redelivery_keeps_its_delivery_id_and_key(ingress):
    body = b'{"action": "opened"}'
    headers = ingress.signed("github", "acme", body, delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958", event="issues")

    first = await ingress.post("/hooks/github/acme", body, headers)
    again = await ingress.post("/hooks/github/acme", body, headers)

    assert first[:2] == again[:2] == (202, {"deliveryId": "72d3162e-cc78-11e3-81ab-4c9367dc0958"})
    records = await records_on(ingress.settings, "hookstream.deliveries", 2)
    assert {key for key, _ in records} == {"github/acme/72d3162e-cc78-11e3-81ab-4c9367dc0958"}


async def test_a_body_without_a_provider_id_gets_the_sha256_fallback_and_a_retry_the_same_id(ingress):
    body = orjson.dumps(SYNC_REQUESTED)
    headers = ingress.signed("generic-hmac", "producer", body)
    expected = fallback_delivery_id("generic-hmac", "producer", "manual", body)

    first = await ingress.post("/hooks/generic-hmac/producer/manual", body, headers)
    retry = await ingress.post("/hooks/generic-hmac/producer/manual", body, headers)

    assert first[:2] == retry[:2] == (202, {"deliveryId": expected})
    records = await records_on(ingress.settings, "hookstream.deliveries", 2)
    assert {key for key, _ in records} == {f"generic-hmac/producer/{expected}"}
    assert codec.decode(Delivery, records[0][1]).route == "manual"


async def test_standard_webhooks_delivery_is_accepted_with_its_webhook_id(ingress):
    body = b'{"type": "invoice.paid"}'
    headers = ingress.signed("standard-webhooks", "billing", body, delivery_id="msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
    status, answer, _ = await ingress.post("/hooks/standard-webhooks/billing", body, headers)
    assert (status, answer) == (202, {"deliveryId": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"})


def _assert_error(result: tuple[int, dict, dict], status: int, code: str) -> dict:
    got_status, body, headers = result
    assert (got_status, body.get("error")) == (status, code), body
    assert headers["Content-Type"].startswith("application/json")
    assert isinstance(body["message"], str) and body["message"]
    return body


async def test_a_bad_signature_is_401_and_never_published(ingress):
    body = b'{"a": 1}'
    headers = ingress.signed("github", "acme", b'{"a": 2}', delivery_id="d-1")
    answer = _assert_error(await ingress.post("/hooks/github/acme", body, headers), 401, "verification_failed")
    assert "X-Hub-Signature-256" in answer["message"]
    assert GITHUB_SECRET not in answer["message"]


async def test_a_missing_signature_is_401(ingress):
    answer = _assert_error(
        await ingress.post("/hooks/github/acme", b"{}", {"X-GitHub-Delivery": "d-2"}), 401, "verification_failed"
    )
    assert "missing" in answer["message"]


async def test_a_stale_timestamp_is_401(ingress):
    body = b'{"type": "invoice.paid"}'
    headers = ingress.signed("standard-webhooks", "billing", body, now=time.time() - 3600, delivery_id="msg_stale")
    _assert_error(await ingress.post("/hooks/standard-webhooks/billing", body, headers), 401, "verification_failed")


async def test_an_unknown_plugin_or_instance_is_404(ingress):
    _assert_error(await ingress.post("/hooks/gitlab/acme", b"{}"), 404, "unknown_plugin")
    _assert_error(await ingress.post("/hooks/github/nobody", b"{}"), 404, "unknown_instance")
    _assert_error(await ingress.post("/nowhere", b"{}"), 404, "not_found")


async def test_a_body_over_the_limit_is_413_by_content_length(ingress):
    body = b"x" * (BODY_LIMIT + 1)
    headers = ingress.signed("github", "acme", body, delivery_id="d-big")
    answer = _assert_error(await ingress.post("/hooks/github/acme", body, headers), 413, "body_too_large")
    assert str(BODY_LIMIT) in answer["message"]


async def test_a_streamed_body_over_the_limit_is_413_without_content_length(ingress):
    async def chunks():
        for _ in range(8):
            yield b"y" * 1024

    async with ingress.session.post(
        ingress.url + "/hooks/github/acme", data=chunks(), headers={"X-Hub-Signature-256": "sha256=00"}
    ) as response:
        assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
        result = response.status, await response.json(), dict(response.headers)
    _assert_error(result, 413, "body_too_large")


async def test_a_body_at_the_default_limit_of_1_mib_lands_in_kafka(settings):
    assert settings.body_limit_bytes == 1024 * 1024
    instances = configured_instances()
    runner = IngressRunner(create_app(settings, instances))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with aiohttp.ClientSession() as session:
            ingress = Ingress(settings, instances, runner, session)
            body = b'"' + bytes(range(35, 91)) * (settings.body_limit_bytes // 56) + b'"'
            body += b" " * (settings.body_limit_bytes - len(body))
            status, answer, _ = await ingress.post(
                "/hooks/github/acme", body, ingress.signed("github", "acme", body, delivery_id="big")
            )
    finally:
        await runner.cleanup()
    assert (status, answer) == (202, {"deliveryId": "big"})
    [(_, value)] = await records_on(settings, "hookstream.deliveries", 1)
    assert codec.decode(Delivery, value).body == body


async def test_a_record_the_broker_cannot_take_is_413_not_a_503_to_retry_forever(ingress):
    ingress.runner.app[PUBLISHER].producer._max_request_size = 1000  # as if the broker's limit were tiny
    body = b'{"pad": "' + b"p" * 1500 + b'"}'
    answer = _assert_error(
        await ingress.post("/hooks/github/acme", body, ingress.signed("github", "acme", body, delivery_id="too-big")),
        413,
        "record_too_large",
    )
    assert "max.message.bytes" in answer["message"]


async def test_an_authentic_but_unreadable_delivery_is_400(ingress):
    body = b'{"a": 1}'
    headers = ingress.signed("github", "acme", body, delivery_id="not a usable id")
    _assert_error(await ingress.post("/hooks/github/acme", body, headers), 400, "unreadable_delivery")


async def test_another_method_is_405_with_allow(ingress):
    async with ingress.session.get(ingress.url + "/hooks/github/acme") as response:
        result = response.status, await response.json(), dict(response.headers)
    _assert_error(result, 405, "method_not_allowed")
    assert "POST" in result[2]["Allow"]


async def test_an_event_is_published_to_the_control_topic_keyed_by_source(ingress):
    auth = {"Authorization": f"Bearer {EVENTS_TOKEN}", "Content-Type": "application/json"}
    status, answer, _ = await ingress.post("/events", orjson.dumps(SYNC_REQUESTED), auth)
    assert (status, answer) == (202, {"type": "sync.requested", "key": "git:demo"})
    [(key, value)] = await records_on(ingress.settings, "hookstream.sync.control", 1)
    assert key == "git:demo"
    assert codec.decode_topic("hookstream.sync.control", value) == codec.decode_producer_event(SYNC_REQUESTED)


async def test_events_reject_a_bad_token_a_wrong_type_and_a_bad_body(ingress):
    body = orjson.dumps(SYNC_REQUESTED)
    json_type = {"Content-Type": "application/json"}
    auth = {"Authorization": f"Bearer {EVENTS_TOKEN}"}
    _assert_error(
        await ingress.post("/events", body, {"Authorization": "Bearer wrong", **json_type}), 401, "invalid_token"
    )
    _assert_error(await ingress.post("/events", body, json_type), 401, "missing_token")
    _assert_error(
        await ingress.post("/events", body, {**auth, "Content-Type": "text/plain"}), 415, "unsupported_media_type"
    )
    _assert_error(await ingress.post("/events", b"{not json", {**auth, **json_type}), 400, "invalid_json")
    invalid = {**SYNC_REQUESTED, "mode": "sideways"}
    del invalid["source_id"]
    answer = _assert_error(
        await ingress.post("/events", orjson.dumps(invalid), {**auth, **json_type}), 422, "invalid_event"
    )
    assert {tuple(e["loc"][-1:]) for e in answer["errors"]} >= {("source_id",), ("mode",)}


async def test_health_readiness_and_metrics(ingress):
    async with ingress.session.get(ingress.url + "/healthz") as response:
        assert response.status == 200
    async with ingress.session.get(ingress.url + "/readyz") as response:
        assert (response.status, await response.json()) == (200, {"status": "ready"})

    body = b'{"n": 1}'
    await ingress.post("/hooks/github/acme", body, ingress.signed("github", "acme", body, delivery_id="m-1"))
    await ingress.post("/hooks/github/acme", body, {"X-GitHub-Delivery": "m-2"})
    await ingress.post("/hooks/nothing/acme", body)

    async with ingress.session.get(ingress.url + "/metrics") as response:
        assert response.status == 200
        text = await response.text()
    assert 'hookstream_ingress_requests_total{plugin="github",status="202"} 1.0' in text
    assert 'hookstream_ingress_requests_total{plugin="github",status="401"} 1.0' in text
    assert 'hookstream_ingress_requests_total{plugin="unknown",status="404"} 1.0' in text
    assert 'hookstream_ingress_received_bytes_total{plugin="github"} 16.0' in text
    assert 'hookstream_ingress_publish_seconds_count{topic="hookstream.deliveries"} 1.0' in text


async def test_the_ingress_refuses_to_start_without_its_topics(broker, postgres):
    bare = isolated_settings(broker.bootstrap, postgres.url)  # no topics applied under this prefix
    runner = IngressRunner(create_app(bare, configured_instances()))
    with pytest.raises(MissingTopics, match="hookstream topics apply"):
        await runner.setup()
    await runner.cleanup()


async def test_logs_name_the_delivery_but_never_a_secret_or_signature(ingress, caplog):
    body = b'{"logged": false}'
    good = ingress.signed("github", "acme", body, delivery_id="log-1")
    bad = ingress.signed("github", "acme", b"other", delivery_id="log-2")
    token = {"Authorization": "Bearer not-the-token", "Content-Type": "application/json"}
    with caplog.at_level("DEBUG", logger="hookstream"):
        assert (await ingress.post("/hooks/github/acme", body, good))[0] == 202
        assert (await ingress.post("/hooks/github/acme", body, bad))[0] == 401
        assert (await ingress.post("/events", b"{}", token))[0] == 401
    text = caplog.text
    assert "delivery=log-1" in text and "status=401" in text
    for secret in (
        GITHUB_SECRET,
        EVENTS_TOKEN,
        "not-the-token",
        good["X-Hub-Signature-256"],
        bad["X-Hub-Signature-256"],
    ):
        assert secret not in text
    assert good["X-Hub-Signature-256"].removeprefix("sha256=") not in text


def _start_ingress_processes(settings: Settings, tmp_path, count: int) -> tuple[subprocess.Popen, int]:
    instances_file = tmp_path / "instances.toml"
    instances_file.write_text(f'[[instance]]\nplugin = "github"\nid = "acme"\nsecret = "{GITHUB_SECRET}"\n')
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "HOOKSTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "HOOKSTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "HOOKSTREAM_INSTANCES_FILE": str(instances_file),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli.main",
            "ingress",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--processes",
            str(count),
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    return process, port


def _worker_pids(parent: int) -> set[int]:
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rpartition(")")[2].split()[1]) == parent:
                pids.add(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return pids


async def _ready(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url + "/readyz") as response:
            return response.status == 200
    except aiohttp.ClientConnectionError:
        return False


async def test_several_processes_share_one_port_and_stop_together(settings, tmp_path):
    process, port = _start_ingress_processes(settings, tmp_path, 2)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await wait_until(lambda: _ready(session, url), timeout=30, what="the ingress processes ready")
            workers = _worker_pids(process.pid)
            assert len(workers) == 2
            instance = configured_instances()[("github", "acme")]
            for i in range(10):
                body = b'{"n": %d}' % i
                headers = get_plugin("github").sign(body, instance, time.time(), delivery_id=f"multi-{i}")
                # A connection each, so the kernel may hand them to either process.
                async with (
                    aiohttp.ClientSession() as fresh,
                    fresh.post(url + "/hooks/github/acme", data=body, headers=headers) as response,
                ):
                    assert response.status == 202
        records = await records_on(settings, "hookstream.deliveries", 10)
        assert {key for key, _ in records} == {f"github/acme/multi-{i}" for i in range(10)}

        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == 0
        assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "an ingress process outlived its parent"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        process.stderr.close()


async def test_a_dead_ingress_process_stops_the_others_with_an_error(settings, tmp_path):
    process, port = _start_ingress_processes(settings, tmp_path, 2)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_until(
                lambda: _ready(session, f"http://127.0.0.1:{port}"), timeout=30, what="the ingress processes ready"
            )
        victim, survivor = sorted(_worker_pids(process.pid))
        os.kill(victim, signal.SIGKILL)
        assert await asyncio.to_thread(process.wait, 30) == 1
        await wait_until(lambda: not Path(f"/proc/{survivor}").exists(), timeout=10, what="the other process gone")
        assert "exited with -9" in process.stderr.read()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        process.stderr.close()
