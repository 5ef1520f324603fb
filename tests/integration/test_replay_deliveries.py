"""`hookstream replay deliveries` on the real broker; one test with a real worker routing the replay."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from app import codec
from app.cli.replay import worker_group
from app.embedded import tansu_quirks
from app.events import Delivery, SyncRequested
from tests.support.groups import hookstream
from tests.support.kafka import produce, read_all
from tests.support.services import wait_until
from tests.support.stack import WorkerProcess, write_instances

NOW = datetime.now(UTC)


def sync_request_body(i: int) -> bytes:
    event = SyncRequested(
        source_id=f"src-{i % 5}", occurred_at=NOW, request_id=f"req-{i}", mode="full", trigger="producer"
    )
    return orjson.dumps(event.model_dump(mode="json"))


def delivery(
    instance: str,
    delivery_id: str,
    at: datetime,
    plugin: str = "generic-hmac",
    body: bytes | None = None,
    headers: dict | None = None,
) -> tuple[str, bytes]:
    d = Delivery(
        delivery_id=delivery_id,
        plugin=plugin,
        instance=instance,
        received_at=at,
        headers=headers or {},
        body=sync_request_body(int(delivery_id.split("-")[-1])) if body is None else body,
    )
    return d.key, codec.encode(d)


def epoch_of(out: str) -> str:
    match = re.search(r"^replay epoch: (\S+)", out, re.M)
    assert match, out
    return match.group(1)


@pytest.fixture
def replay_settings(settings, tmp_path):
    tansu_quirks.install(settings)
    instances = write_instances(
        tmp_path / "instances.toml",
        [
            {"plugin": "generic-hmac", "id": "a", "secret": "s1", "dedup_window": "24h"},
            {"plugin": "github", "id": "g", "secret": "s2"},
        ],
    )
    return settings.model_copy(update={"instances_file": instances})


async def test_replay_deliveries_resubmits_the_range_once_per_key_with_one_epoch(replay_settings, monkeypatch, capsys):
    s = replay_settings
    # Records are written now (the broker looks times up by its own clock); the range selects by received_at.
    now = datetime.now(UTC)
    originals = [
        delivery("a", "d-1", now - timedelta(minutes=2)),
        delivery("a", "d-2", now - timedelta(minutes=1)),
        delivery("a", "d-1", now - timedelta(seconds=30)),  # a redelivery: the key goes once
        delivery("a", "d-0", now - timedelta(minutes=10)),  # before the range
        delivery("a", "d-3", now + timedelta(minutes=2)),  # after the range
        delivery("zzz", "d-9", now - timedelta(seconds=90)),  # instance not configured
        delivery(
            "g",
            "g-1",
            now - timedelta(seconds=100),
            plugin="github",
            body=b"{}",
            headers={"x-github-event": "star", "x-github-delivery": "g-1"},
        ),  # another plugin
        ("broken/key", b"not a delivery"),
    ]
    await produce(s, "hookstream.deliveries", originals)
    window = [
        "--from-datetime",
        (now - timedelta(minutes=3)).isoformat(),
        "--to-datetime",
        (now + timedelta(minutes=1)).isoformat(),
    ]

    code, out, err = await hookstream(
        s, monkeypatch, capsys, "replay", "deliveries", *window, "--plugin", "generic-hmac"
    )
    assert code == 0, out + err
    assert "DRY RUN: nothing was published" in out
    assert "would be re-submitted 2" in out
    assert re.search(r"skip +generic-hmac/zzz/d-9 .* instance generic-hmac/zzz is not configured", out)
    for line in (
        "records read            8",
        "undecodable           1",
        "received outside      2",
        "other plugin/instance 1",
        "repeated key          1",
        "routing now           2: routes to 1 SyncRequested",
        "Signatures are not re-checked",
    ):
        assert line in out, line
    assert len(await read_all(s, "hookstream.deliveries", min_count=8, timeout=10, idle=0.5, decode=False)) == 8

    code, out, err = await hookstream(
        s,
        monkeypatch,
        capsys,
        "replay",
        "deliveries",
        *window,
        "--plugin",
        "generic-hmac",
        "--execute",
        "--progress-every",
        "3",
    )
    assert code == 0, out + err
    epoch = epoch_of(out)
    assert re.fullmatch(r"replay-\d{8}T\d{6}Z-[0-9a-f]{8}", epoch)
    assert f"DONE: 2 delivery(ies) re-submitted in epoch {epoch}" in out
    assert "... 3 records read" in err and "... 6 records read" in err
    assert "no worker is running" in out

    records = await read_all(s, "hookstream.deliveries", min_count=10, timeout=20, idle=0.5, decode=False)
    replayed = [codec.decode(Delivery, value) for key, value, _, _ in records if b'replay_epoch":"replay' in value]
    assert sorted(d.key for d in replayed) == ["generic-hmac/a/d-1", "generic-hmac/a/d-2"]
    by_key = {key: codec.decode(Delivery, value) for key, value in originals[:2]}
    for d in replayed:
        assert d.replay_epoch == epoch and d.redrive_of is None
        assert d.body == by_key[d.key].body and d.received_at > now


async def test_replay_deliveries_reads_from_the_year_one_to_the_year_9999(replay_settings, monkeypatch, capsys):
    # The read range is widened by READ_SLACK: at the ends of what a datetime holds it is kept
    # within them (and within Kafka's times, none before 1970), not an OverflowError.
    await produce(replay_settings, "hookstream.deliveries", [delivery("a", "d-1", datetime.now(UTC))])
    window = ["--from-datetime", "0001-01-01T00:00", "--to-datetime", "9999-12-31T23:59"]
    code, out, err = await hookstream(replay_settings, monkeypatch, capsys, "replay", "deliveries", *window)
    assert code == 0, out + err
    assert "records read            1" in out and "would be re-submitted 1" in out


async def test_replay_deliveries_explains_what_it_needs(replay_settings, monkeypatch, capsys):
    code, _, err = await hookstream(
        replay_settings, monkeypatch, capsys, "replay", "deliveries", "--from-datetime", "yesterday"
    )
    assert code == 2 and "not an ISO 8601 time" in err
    code, _, err = await hookstream(
        replay_settings, monkeypatch, capsys, "replay", "deliveries", "--from-datetime", "1h", "--to-datetime", "2h"
    )
    assert code == 2 and "must be before" in err
    no_instances = replay_settings.model_copy(update={"instances_file": None})
    monkeypatch.delenv("HOOKSTREAM_INSTANCES_FILE", raising=False)
    code, _, err = await hookstream(no_instances, monkeypatch, capsys, "replay", "deliveries", "--from-datetime", "1h")
    assert code == 2 and "HOOKSTREAM_INSTANCES_FILE" in err


async def test_the_dedup_stage_routes_each_replayed_delivery_once_more_exactly_once(
    replay_settings, tmp_path, monkeypatch, capsys
):
    s = replay_settings
    worker = WorkerProcess(s, tmp_path / "rocks", tmp_path / "worker.log").start()
    try:
        firsts = [delivery("a", f"d-{i}", NOW - timedelta(minutes=10)) for i in range(20)]
        redeliveries = [delivery("a", f"d-{i}", NOW - timedelta(minutes=9)) for i in range(0, 20, 4)]
        await produce(s, "hookstream.deliveries", firsts + redeliveries)
        routed = await read_all(s, "hookstream.sync.control", min_count=20, timeout=120, idle=2.0, alive=worker.alive)
        assert Counter(r.request_id for _, r, _, _ in routed) == {f"req-{i}": 1 for i in range(20)}, worker.log_tail()

        code, out, err = await hookstream(
            s, monkeypatch, capsys, "replay", "deliveries", "--from-datetime", "1h", "--execute"
        )
        assert code == 0, out + err
        epoch = epoch_of(out)
        assert f"DONE: 20 delivery(ies) re-submitted in epoch {epoch}" in out and "repeated key          5" in out
        assert "no worker is running" not in out

        routed = await read_all(s, "hookstream.sync.control", min_count=40, timeout=120, idle=2.0, alive=worker.alive)
        assert Counter(r.request_id for _, r, _, _ in routed) == {f"req-{i}": 2 for i in range(20)}, worker.log_tail()

        # The same epoch again (resuming an interrupted run): dedup has let every key through in it already.
        code, out, err = await hookstream(
            s, monkeypatch, capsys, "replay", "deliveries", "--from-datetime", "1h", "--execute", "--epoch", epoch
        )
        assert code == 0, out + err
        assert f"DONE: 20 delivery(ies) re-submitted in epoch {epoch}" in out
        routed = await read_all(s, "hookstream.sync.control", min_count=40, timeout=30, idle=4.0, alive=worker.alive)
        assert len(routed) == 40, worker.log_tail()

        # The worker's own group, as `hookstream lag` sees it: a member, and the deliveries all consumed.
        async def caught_up():
            code, out, _ = await hookstream(s, monkeypatch, capsys, "lag", "--json")
            data = orjson.loads(out)
            deliveries = data["topics"][s.topic("hookstream.deliveries")]
            return data if code == 0 and deliveries == {"partitions": 8, "end": 65, "lag": 0} else None

        data = await wait_until(caught_up, timeout=30, interval=0.5, what="the worker's group to catch up")
        assert data["members"] == 1 and data["group"] == worker_group(s)
    finally:
        worker.stop()

    # A stopped worker leaves its group (on tansu too): its offsets can be moved right away.
    code, out, err = await hookstream(
        s, monkeypatch, capsys, "replay", "--to-earliest", "--topic", "deliveries", "--execute"
    )
    assert code == 0, out + err
    assert f"group {worker_group(s)}: Empty, 0 member(s)" in out
