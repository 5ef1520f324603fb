"""The console against hostile input and a raw dead letter, on the real PostgreSQL and broker:
every bad path id or filter is a 400 that says why (JSON under /api/, a page elsewhere), never a 500;
a dead letter of another topic's record is redriven to that topic with the redrive header."""

from __future__ import annotations

import subprocess
import sys

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from app.console.app import build_app
from tests.integration.test_dlq_projection import NOW, dlq_row, project

WRITE = "writer-token-hostile"


@pytest.fixture
async def client(settings):
    c = TestClient(TestServer(build_app(settings.model_copy(update={"console_write_token": SecretStr(WRITE)}))))
    await c.start_server()
    yield c
    await c.close()


async def read_topic(settings, topic: str) -> list:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or range(8))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        batch = await consumer.getmany(timeout_ms=5000)
        return [m for messages in batch.values() for m in messages]
    finally:
        await consumer.stop()


async def test_a_raw_dead_letter_of_another_topic_is_redriven_to_that_topic_with_the_header(settings, client):
    from app.core.poison import REDRIVE_HEADER
    from app.events import DeadLettered

    topic = settings.topic("hookstream.sync.plans")
    raw = b'{"type": "sync.plan_requested", "job_id": "git:x:9"}'
    ident = "c" * 24
    letter = DeadLettered(
        dead_letter_id=ident,
        key="git:x:9",
        stage="plan",
        error="path missing",
        failed_at=NOW,
        source_topic=topic,
        source_partition=1,
        source_offset=4,
        raw=raw,
    )
    await project(settings, [(0, 0, letter)])
    r = await client.post(f"/api/dlq/{ident}/redrive", headers={"Authorization": f"Bearer {WRITE}"})
    answer = await r.json()
    assert r.status == 202, answer
    assert answer["published"].startswith(f"{topic}[")
    [record] = await read_topic(settings, topic)
    assert (record.key, record.value, list(record.headers)) == (b"git:x:9", raw, [(REDRIVE_HEADER, ident.encode())])
    assert (await dlq_row(settings, ident))["status"] == "open", "published is not accepted"


BAD_GETS = [
    "/api/deliveries?minutes=inf",
    "/api/deliveries?minutes=1e12",
    "/api/deliveries?minutes=-1e12",
    "/api/deliveries?minutes=nan",
    "/deliveries?minutes=inf",
    "/api/jobs/git:x%001",
    "/jobs/git:x%001",
    "/api/deliveries/github/x/a%00b",
    "/deliveries/github/x/a%00b",
    "/api/trace/a%00b",
    "/api/deliveries?q=a%00b",
    "/deliveries?q=a%00b",
    "/api/deliveries?plugin=git%00hub",
    "/api/deliveries?instance=x%00",
    "/api/jobs?source=git:x%00",
    "/jobs?source=git:x%00",
    "/api/dlq?status=bogus",
    "/api/dlq?status=open%00",
    "/dlq?status=bogus",
]


@pytest.mark.parametrize("path", BAD_GETS)
async def test_a_hostile_filter_or_id_is_a_400_that_says_why(client, path):
    r = await client.get(path)
    text = await r.text()
    assert r.status == 400, (path, r.status, text)
    assert "Traceback" not in text
    if path.startswith("/api/"):
        assert r.content_type == "application/json"
        assert (await r.json())["error"] == "bad_request"
    else:
        assert r.content_type == "text/html" and "Bad request" in text


@pytest.mark.parametrize("path", ["/api/dlq/ab%00cd/redrive", "/dlq/ab%00cd/redrive"])
async def test_a_redrive_of_an_id_with_a_nul_is_a_400(client, path):
    if path.startswith("/api/"):
        r = await client.post(path, headers={"Authorization": f"Bearer {WRITE}"})
    else:
        r = await client.post(path, data={"write_token": WRITE})
    text = await r.text()
    assert r.status == 400, (path, r.status, text)
    assert "printable" in text


@pytest.mark.parametrize("level", ["root", "basic_format", "verbose"])
def test_a_bad_log_level_is_a_configuration_error_at_start(level):
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli.main", "console", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOOKSTREAM_LOG_LEVEL": level},
    )
    assert proc.returncode == 2, proc.stderr
    assert "HOOKSTREAM_LOG_LEVEL" in proc.stderr and "'debug', 'info', 'warning', 'error' or 'critical'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_log_level_in_capitals_is_taken():
    from app.logs import level_number
    from app.settings import Settings

    assert Settings(log_level="WARNING").log_level == "warning"  # type: ignore[arg-type]
    assert level_number("Debug") == 10
    with pytest.raises(ValueError, match="one of debug"):
        level_number("root")


def test_the_workers_loglevel_option_takes_only_a_level():
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli.main", "worker", "--loglevel", "root"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2 and "--loglevel: invalid choice: 'root'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
