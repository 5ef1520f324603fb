"""`hookstream dlq list | show | redrive` against the real PostgreSQL and broker (no worker needed)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import orjson
import pytest

from app.cli.main import main
from app.core.intake import dead_letter_id
from app.events import RedriveAccepted
from tests.integration.test_dlq_projection import NOW, dead_lettered, dlq_row, poison_delivery, project
from tests.support.kafka import read_all


async def hookstream(settings, monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    """Run `hookstream ARGV` with these settings in the environment; (exit code, stdout, stderr)."""
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
async def rows(settings):
    """Three dead letters: an open poison delivery, an undecodable record, and one already retired."""
    poison = poison_delivery("poison-1")
    old = poison_delivery("old-1", at=NOW - timedelta(days=3))
    await project(
        settings,
        [
            (0, 0, dead_lettered(poison)),
            (
                1,
                0,
                dead_lettered(
                    None, stage="decode", error="not JSON", key="mystery", raw=b"{oops", at=NOW - timedelta(minutes=1)
                ),
            ),
            (2, 0, dead_lettered(old, at=NOW - timedelta(days=3))),
            (
                2,
                1,
                RedriveAccepted(
                    dead_letter_id=dead_letter_id(old.key), key=old.key, accepted_at=NOW - timedelta(days=2)
                ),
            ),
        ],
    )
    return {"poison": dead_letter_id(poison.key), "raw": dead_letter_id("mystery"), "retired": dead_letter_id(old.key)}


async def test_list_shows_open_dead_letters_as_a_table(settings, rows, monkeypatch, capsys):
    code, out, _ = await hookstream(settings, monkeypatch, capsys, "dlq", "list")
    assert code == 0
    assert out.splitlines()[0].split()[:4] == ["ID", "STATUS", "ATTEMPTS", "STAGE"]
    assert rows["poison"] in out and rows["raw"] in out and rows["retired"] not in out


@pytest.mark.parametrize(
    "filters, expected",
    [
        (["--status", "all"], {"poison", "raw", "retired"}),
        (["--status", "retired"], {"retired"}),
        (["--stage", "decode"], {"raw"}),
        (["--plugin", "unknown"], {"raw"}),
        (["--plugin", "generic-hmac", "--status", "all"], {"poison", "retired"}),
        (["--status", "all", "--since", "1d"], {"poison", "raw"}),
        (["--status", "all", "--since", (NOW - timedelta(days=4)).isoformat()], {"poison", "raw", "retired"}),
        (["--status", "all", "--limit", "1"], {"poison"}),  # the latest failure first
    ],
)
async def test_list_filters(settings, rows, monkeypatch, capsys, filters, expected):
    code, out, _ = await hookstream(settings, monkeypatch, capsys, "dlq", "list", "--json", *filters)
    assert code == 0
    listed = {entry["dead_letter_id"] for entry in orjson.loads(out)}
    assert listed == {rows[name] for name in expected}


async def test_show_prints_the_error_attempts_headers_and_body(settings, rows, monkeypatch, capsys):
    code, out, _ = await hookstream(settings, monkeypatch, capsys, "dlq", "show", rows["poison"][:8])
    assert code == 0
    for expected in (
        rows["poison"],
        "status         open",
        "attempts       1",
        "body is not a hookstream producer event",
        "x-request-id: poison-1",
        "not a producer event",
    ):
        assert expected in out


async def test_show_of_an_unknown_id_fails_with_a_message(settings, rows, monkeypatch, capsys):
    code, _, err = await hookstream(settings, monkeypatch, capsys, "dlq", "show", "deadbeef0000")
    assert code == 1 and "no dead letter 'deadbeef0000'" in err


async def test_redrive_dry_run_lists_what_it_would_publish_and_publishes_nothing(settings, rows, monkeypatch, capsys):
    code, out, err = await hookstream(settings, monkeypatch, capsys, "dlq", "redrive", "--all", "--dry-run")
    assert code == 0
    assert f"would redrive  {rows['poison']}" in out and rows["retired"] not in out
    assert "cannot be redriven" in err  # the undecodable one, said clearly
    assert await read_all(settings, "hookstream.deliveries", timeout=3, idle=0.5) == []


async def test_redrive_publishes_the_original_marked_as_a_redrive_and_leaves_the_row_open(
    settings, rows, monkeypatch, capsys
):
    code, out, _ = await hookstream(settings, monkeypatch, capsys, "dlq", "redrive", rows["poison"])
    assert code == 0 and f"redriven  {rows['poison']}" in out
    [(key, delivery, _, _)] = await read_all(settings, "hookstream.deliveries", min_count=1, timeout=20)
    original = poison_delivery("poison-1")
    assert key == original.key and delivery.redrive_of == rows["poison"]
    assert (delivery.body, delivery.headers) == (original.body, original.headers)
    # Published is not accepted: only the stage's RedriveAccepted retires the row.
    assert (await dlq_row(settings, rows["poison"]))["status"] == "open"


@pytest.mark.parametrize("which, reason", [("raw", "cannot be redriven"), ("retired", "is retired")])
async def test_redrive_of_a_row_that_cannot_be_redriven_says_why_and_fails(
    settings, rows, monkeypatch, capsys, which, reason
):
    code, _, err = await hookstream(settings, monkeypatch, capsys, "dlq", "redrive", rows[which])
    assert code == 1 and reason in err


async def test_redrive_of_an_unknown_id_publishes_nothing(settings, rows, monkeypatch, capsys):
    code, _, err = await hookstream(settings, monkeypatch, capsys, "dlq", "redrive", rows["poison"], "deadbeef0000")
    assert code == 1 and "no dead letter 'deadbeef0000'" in err
    assert await read_all(settings, "hookstream.deliveries", timeout=3, idle=0.5) == []


@pytest.mark.parametrize(
    "argv", [["dlq", "redrive"], ["dlq", "redrive", "abc", "--all"], ["dlq", "redrive", "abc", "--plugin", "x"]]
)
async def test_redrive_needs_ids_or_all(settings, monkeypatch, capsys, argv):
    code, _, err = await hookstream(settings, monkeypatch, capsys, *argv)
    assert code == 2 and "hookstream: error:" in err


async def test_redrive_of_another_topics_record_republishes_it_byte_exact_with_the_header(
    settings, monkeypatch, capsys
):
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    from app.core.poison import REDRIVE_HEADER
    from app.events import DeadLettered

    topic = settings.topic("hookstream.sync.plans")
    raw = b'{"type": "sync.plan_requested", "job_id": "git:x:7"}'
    letter = DeadLettered(
        dead_letter_id="b" * 24,
        key="git:x:7",
        stage="plan",
        error="path missing",
        failed_at=NOW,
        source_topic=topic,
        source_partition=1,
        source_offset=4,
        raw=raw,
    )
    await project(settings, [(0, 0, letter)])
    code, out, err = await hookstream(settings, monkeypatch, capsys, "dlq", "redrive", "b" * 24)
    assert code == 0, err
    assert f"redriven  {'b' * 24}  git:x:7  -> {topic}[" in out

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or range(8))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        batch = await consumer.getmany(timeout_ms=5000)
        [record] = [m for messages in batch.values() for m in messages]
    finally:
        await consumer.stop()
    assert (record.key, record.value, list(record.headers)) == (b"git:x:7", raw, [(REDRIVE_HEADER, b"b" * 24)])
    assert (await dlq_row(settings, "b" * 24))["status"] == "open", "published is not accepted"
