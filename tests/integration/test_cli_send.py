"""`hookstream send delivery | event` against a running ingress and the real broker."""

from __future__ import annotations

import asyncio
import io
import socket
import sys
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web
from pydantic import SecretStr

from app import codec
from app.cli.main import main
from app.events import Delivery
from app.ingress.app import create_app
from app.instances import parse_instances
from app.plugins.base import fallback_delivery_id
from tests.integration.test_ingress import (
    EVENTS_TOKEN,
    GITHUB_SECRET,
    SYNC_REQUESTED,
    Ingress,
    configured_instances,
    records_on,
)

INSTANCES_TOML = """
[[instance]]
plugin = "github"
id = "acme"
secret = { env = "TEST_GITHUB_SECRET" }

[[instance]]
plugin = "github"
id = "rotated"
secret = "a secret the ingress does not know"
"""


@pytest.fixture
async def ingress(settings, tmp_path, monkeypatch) -> AsyncIterator[Ingress]:
    settings = settings.model_copy(update={"events_token": SecretStr(EVENTS_TOKEN), "producer_linger_ms": 1})
    server_instances = {
        **configured_instances(),
        **parse_instances(
            {"instance": [{"plugin": "github", "id": "rotated", "secret": "the new secret"}]}, "test", env={}
        ),
    }
    runner = web.AppRunner(create_app(settings, server_instances), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]

    instances_file = tmp_path / "instances.toml"
    instances_file.write_text(INSTANCES_TOML)
    for name, value in {
        "HOOKSTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "HOOKSTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "HOOKSTREAM_EMBEDDED_BROKER": "tansu",
        "HOOKSTREAM_INSTANCES_FILE": str(instances_file),
        "HOOKSTREAM_INGRESS_HOST": host,
        "HOOKSTREAM_INGRESS_PORT": str(port),
        "HOOKSTREAM_EVENTS_TOKEN": EVENTS_TOKEN,
        "TEST_GITHUB_SECRET": GITHUB_SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    async with aiohttp.ClientSession() as session:
        yield Ingress(settings, server_instances, runner, session)
    await runner.cleanup()


async def hookstream(*argv: str, stdin: bytes | None = None, monkeypatch=None) -> int:
    """Run the CLI in a thread (it runs its own event loop) while the ingress serves in this one."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    return await asyncio.to_thread(main, list(argv))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_send_delivery_signs_with_the_configured_secret_and_prints_the_answer(ingress, tmp_path, capsys):
    body = b'{"ref": "refs/heads/main", "after": "abc"}\n'
    (tmp_path / "push.json").write_bytes(body)

    status = await hookstream(
        "send", "delivery", "--plugin", "github", "--instance", "acme", "--event", "push", str(tmp_path / "push.json")
    )

    assert status == 0
    expected_id = fallback_delivery_id("github", "acme", None, body)
    assert orjson.loads(capsys.readouterr().out) == {"deliveryId": expected_id}
    [(key, value)] = await records_on(ingress.settings, "hookstream.deliveries", 1)
    delivery = codec.decode(Delivery, value)
    assert key == f"github/acme/{expected_id}"
    assert delivery.body == body and delivery.headers["x-github-event"] == "push"


async def test_send_delivery_from_stdin_with_a_delivery_id_and_route(ingress, capsys, monkeypatch):
    status = await hookstream(
        "send",
        "delivery",
        "--plugin",
        "github",
        "--instance",
        "acme",
        "--delivery-id",
        "cli-1",
        "--route",
        "main",
        "-",
        stdin=b'{"zen": "stdin"}',
        monkeypatch=monkeypatch,
    )
    assert status == 0
    assert orjson.loads(capsys.readouterr().out) == {"deliveryId": "cli-1"}
    [(_, value)] = await records_on(ingress.settings, "hookstream.deliveries", 1)
    assert codec.decode(Delivery, value).route == "main"


async def test_send_delivery_rejected_by_the_ingress_exits_1_with_its_message(ingress, tmp_path, capsys):
    (tmp_path / "b.json").write_bytes(b"{}")
    status = await hookstream(
        "send", "delivery", "--plugin", "github", "--instance", "rotated", str(tmp_path / "b.json")
    )
    assert status == 1
    err = capsys.readouterr().err
    assert "401 verification_failed" in err and "X-Hub-Signature-256" in err


async def test_send_delivery_explains_what_is_wrong_locally(ingress, tmp_path, capsys):
    assert (
        await hookstream("send", "delivery", "--plugin", "github", "--instance", "acme", str(tmp_path / "missing.json"))
        == 1
    )
    assert "missing.json: no such file" in capsys.readouterr().err

    (tmp_path / "b.json").write_bytes(b"{}")
    assert (
        await hookstream("send", "delivery", "--plugin", "github", "--instance", "nobody", str(tmp_path / "b.json"))
        == 2
    )
    err = capsys.readouterr().err
    assert "no github instance 'nobody'" in err and "github/acme" in err

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    assert (
        await hookstream(
            "send", "delivery", "--plugin", "github", "--instance", "acme", "--url", url, str(tmp_path / "b.json")
        )
        == 1
    )
    assert f"cannot reach the ingress at {url}" in capsys.readouterr().err


async def test_send_event_posts_to_events_with_the_token(ingress, tmp_path, capsys, monkeypatch):
    status = await hookstream("send", "event", "-", stdin=orjson.dumps(SYNC_REQUESTED), monkeypatch=monkeypatch)
    assert status == 0
    assert orjson.loads(capsys.readouterr().out) == {"type": "sync.requested", "key": "git:demo"}
    [(key, _)] = await records_on(ingress.settings, "hookstream.sync.control", 1)
    assert key == "git:demo"


async def test_send_event_with_kafka_validates_and_produces_to_the_control_topic(ingress, tmp_path, capsys):
    (tmp_path / "e.json").write_bytes(orjson.dumps({**SYNC_REQUESTED, "source_id": "git:direct"}))
    status = await hookstream("send", "event", "--kafka", str(tmp_path / "e.json"))
    assert status == 0
    answer = orjson.loads(capsys.readouterr().out)
    assert (answer["type"], answer["key"], answer["topic"]) == (
        "sync.requested",
        "git:direct",
        ingress.settings.topic("hookstream.sync.control"),
    )
    [(key, value)] = await records_on(ingress.settings, "hookstream.sync.control", 1)
    assert key == "git:direct"
    assert codec.decode_topic("hookstream.sync.control", value).source_id == "git:direct"


async def test_send_event_reports_invalid_json_and_invalid_events(ingress, tmp_path, capsys):
    (tmp_path / "bad.json").write_bytes(b"{nope")
    assert await hookstream("send", "event", str(tmp_path / "bad.json")) == 1
    assert "bad.json: not valid JSON" in capsys.readouterr().err

    (tmp_path / "wrong.json").write_bytes(orjson.dumps({**SYNC_REQUESTED, "mode": "sideways"}))
    assert await hookstream("send", "event", str(tmp_path / "wrong.json")) == 1
    err = capsys.readouterr().err
    assert "422 invalid_event" in err and "mode" in err

    assert await hookstream("send", "event", "--kafka", str(tmp_path / "wrong.json")) == 1
    assert "not a producer event" in capsys.readouterr().err
