"""`hookstream replay` (offsets) and `hookstream lag` against the real broker, with groups made by hand."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from app.cli.replay import worker_group
from app.embedded import tansu_quirks
from tests.support.groups import commit, committed, fill, hookstream
from tests.support.services import wait_until

EVENTS = "hookstream.sync.events"
BATCHES = "hookstream.files.batches"


@pytest.fixture
async def group(settings):
    """The workers' group with committed offsets on sync.events: p0 10 of 30, p1 3 of 12, p2 0 of 0."""
    tansu_quirks.install(settings)
    await fill(settings, EVENTS, {0: 30, 1: 12})
    await commit(settings, worker_group(settings), {(EVENTS, 0): 10, (EVENTS, 1): 3, (EVENTS, 2): 0})
    return worker_group(settings)


def rows(out: str, topic: str) -> dict[int, list[str]]:
    """partition -> the cells of its table row."""
    found = {}
    for line in out.splitlines():
        cells = line.split()
        if len(cells) > 1 and cells[0] == topic and cells[1].isdigit():
            found[int(cells[1])] = cells
    return found


async def test_dry_run_prints_the_plan_and_changes_nothing(settings, group, monkeypatch, capsys):
    before = await committed(settings, group, EVENTS)
    code, out, _ = await hookstream(settings, monkeypatch, capsys, "replay", "--to-earliest")
    assert code == 0, out
    table = rows(out, settings.topic(EVENTS))
    assert table[0][2:7] == ["10", "0", "0", "30", "+10"]
    assert table[1][2:7] == ["3", "0", "0", "12", "+3"]
    assert "DRY RUN: nothing was changed" in out
    prose = " ".join(out.split())
    assert f"{settings.topic(EVENTS)} (13 record(s) read again) -> project_sync_jobs" in prose
    assert "dedup window" in prose and "hookstream replay deliveries" in prose
    assert await committed(settings, group, EVENTS) == before


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--to-earliest"], {0: 0, 1: 0, 2: 0}),
        (["--to-latest"], {0: 30, 1: 12, 2: 0}),
        (["--to-offset", "11"], {0: 11, 1: 11, 2: 0}),  # p2 is empty: clamped to its end
        (["--shift-by", "-5"], {0: 5, 1: 0, 2: 0}),  # p1: 3 - 5 clamped to the earliest
        (["--shift-by", "+25"], {0: 30, 1: 12, 2: 0}),  # clamped to the true ends
    ],
)
async def test_execute_moves_the_offsets_for_each_target(settings, group, monkeypatch, capsys, argv, expected):
    code, out, err = await hookstream(settings, monkeypatch, capsys, "replay", *argv, "--execute")
    assert code == 0, out + err
    assert "APPLIED: committed" in out
    now = await committed(settings, group, EVENTS)
    assert {p: now[p] for p in expected} == expected


async def test_to_datetime_moves_to_the_first_record_at_or_after_the_time(settings, group, monkeypatch, capsys):
    await asyncio.sleep(1.1)
    cut = datetime.now(UTC)
    await asyncio.sleep(0.1)
    await fill(settings, EVENTS, {0: 5, 2: 4})  # p0: 30..34, p2: 0..3 after the cut
    code, out, err = await hookstream(
        settings, monkeypatch, capsys, "replay", "--to-datetime", cut.isoformat(), "--execute"
    )
    assert code == 0, out + err
    # p1 has nothing after the cut: it stays at its end, not at 0
    assert await committed(settings, group, EVENTS, 3) == {0: 30, 1: 12, 2: 0}
    table = rows(out, settings.topic(EVENTS))
    assert table[0][2:7] == ["10", "30", "0", "35", "-20"]
    assert "time past the last record: left at end" in " ".join(table[1])


async def test_to_datetime_past_the_end_leaves_each_partition_at_its_end_not_at_0(settings, group, monkeypatch, capsys):
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    code, out, err = await hookstream(settings, monkeypatch, capsys, "replay", "--to-datetime", later, "--execute")
    assert code == 0, out + err
    assert await committed(settings, group, EVENTS, 3) == {0: 30, 1: 12, 2: 0}
    assert out.count("time past the last record: left at end") == 8
    assert f"{settings.topic(EVENTS)} (29 record(s) SKIPPED, never processed)" in " ".join(out.split())


async def test_the_end_offset_is_the_true_one_when_the_last_batch_holds_several_records(settings, monkeypatch, capsys):
    tansu_quirks.install(settings)
    await fill(settings, BATCHES, {0: 1})
    await fill(settings, BATCHES, {0: 9}, linger_ms=50)  # one batch of nine records: offsets 1..9
    await commit(settings, worker_group(settings), {(BATCHES, 0): 0})

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        tp = TopicPartition(settings.topic(BATCHES), 0)
        raw = await consumer._fetcher._retrieve_offsets({tp: -1}, 5000)  # ListOffsets LATEST, unpatched
        assert raw[tp][0] < 10, (
            "the broker's ListOffsets answer is right now: this test no longer exercises docs/local-broker.md, row 1"
        )
    finally:
        await consumer.stop()

    code, out, _ = await hookstream(settings, monkeypatch, capsys, "lag", "--topic", "files.batches", "--json")
    assert code == 0
    p0 = orjson.loads(out)["partitions"][0]
    assert (p0["committed"], p0["end"], p0["lag"]) == (0, 10, 10)
    code, out, err = await hookstream(
        settings,
        monkeypatch,
        capsys,
        "replay",
        "--to-latest",
        "--topic",
        "files.batches",
        "--partition",
        "0",
        "--execute",
    )
    assert code == 0, out + err
    assert (await committed(settings, worker_group(settings), BATCHES, 1))[0] == 10


async def test_execute_refuses_while_the_group_has_an_active_member(settings, group, monkeypatch, capsys):
    member = AIOKafkaConsumer(
        settings.topic(EVENTS),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    await member.start()
    try:
        await wait_until(lambda: member.assignment(), timeout=30, what="the member's assignment")
        before = await committed(settings, group, EVENTS)

        code, out, err = await hookstream(settings, monkeypatch, capsys, "replay", "--to-earliest", "--execute")
        assert code == 3
        assert "refusing to move offsets" in err and member._coordinator.member_id in err
        assert "docker compose stop worker" in err and "--force" in err
        assert await committed(settings, group, EVENTS) == before

        code, out, _ = await hookstream(settings, monkeypatch, capsys, "replay", "--to-earliest")
        assert code == 0 and "--execute will refuse until they are stopped" in out
    finally:
        await member.stop()
    # A clean stop leaves the group (also at tansu's generation 0): now it applies.
    code, out, err = await hookstream(settings, monkeypatch, capsys, "replay", "--to-earliest", "--execute")
    assert code == 0, err
    assert (await committed(settings, group, EVENTS, 2)) == {0: 0, 1: 0}


async def test_force_removes_members_that_are_dead_but_still_listed_and_applies(settings, group, monkeypatch, capsys):
    member = AIOKafkaConsumer(
        settings.topic(EVENTS),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    await member.start()
    await wait_until(lambda: member.assignment(), timeout=30, what="the member's assignment")
    dead_id = member._coordinator.member_id

    async def vanish():  # like kill -9: no LeaveGroup
        member._coordinator.reset_generation()

    monkeypatch.setattr(member._coordinator, "_maybe_leave_group", vanish)
    await member.stop()

    code, _, err = await hookstream(settings, monkeypatch, capsys, "replay", "--to-latest", "--execute")
    assert code == 3 and dead_id in err

    started = time.monotonic()
    code, out, err = await hookstream(settings, monkeypatch, capsys, "replay", "--to-latest", "--execute", "--force")
    assert code == 0, out + err
    assert f"--force: removing 1 listed member(s) from group {group}" in out and dead_id in out
    assert "APPLIED" in out and time.monotonic() - started < 15
    assert await committed(settings, group, EVENTS, 2) == {0: 30, 1: 12}


async def test_scope_defaults_to_the_committed_topics_and_narrows_by_topic_and_partition(
    settings, group, monkeypatch, capsys
):
    await fill(settings, BATCHES, {0: 4})
    code, out, _ = await hookstream(settings, monkeypatch, capsys, "replay", "--to-earliest")
    assert code == 0
    assert rows(out, settings.topic(EVENTS)) and not rows(out, settings.topic(BATCHES))

    code, out, _ = await hookstream(
        settings,
        monkeypatch,
        capsys,
        "replay",
        "--to-earliest",
        "--topic",
        "sync.events",
        "--topic",
        BATCHES,
        "--partition",
        "0",
        "--partition",
        "1",
    )
    assert code == 0
    assert sorted(rows(out, settings.topic(EVENTS))) == [0, 1]
    assert rows(out, settings.topic(BATCHES))[0][2:7] == ["-", "0", "0", "4", "0"]

    code, _, err = await hookstream(settings, monkeypatch, capsys, "replay", "--to-earliest", "--topic", "nope")
    assert code == 2 and "no topic 'nope'" in err
    code, _, err = await hookstream(settings, monkeypatch, capsys, "replay", "--to-earliest", "--partition", "8")
    assert code == 1 and "has no partition 8" in err
    code, _, err = await hookstream(settings, monkeypatch, capsys, "replay", "--topic", "sync.events")
    assert code == 2 and "choose a target" in err
    code, _, err = await hookstream(settings, monkeypatch, capsys, "replay", "--to-earliest", "--group", "nobody")
    assert code == 2 and "group nobody has no committed offsets" in err


async def test_lag_reports_committed_offset_true_end_and_lag(settings, group, monkeypatch, capsys):
    await fill(settings, EVENTS, {1: 3})
    code, out, _ = await hookstream(settings, monkeypatch, capsys, "lag", "--json")
    assert code == 0
    data = orjson.loads(out)
    assert (data["group"], data["state"], data["members"]) == (group, "Empty", 0)
    events = {
        p["partition"]: (p["committed"], p["end"], p["lag"])
        for p in data["partitions"]
        if p["topic"] == settings.topic(EVENTS)
    }
    assert {p: events[p] for p in (0, 1, 2, 3)} == {0: (10, 30, 20), 1: (3, 15, 12), 2: (0, 0, 0), 3: (None, 0, 0)}
    assert data["topics"][settings.topic(EVENTS)] == {"partitions": 8, "end": 45, "lag": 32}
    # Every topic the workers consume is listed, committed or not.
    assert settings.topic("hookstream.deliveries") in data["topics"]
    assert data["lag"] == 32

    code, out, _ = await hookstream(settings, monkeypatch, capsys, "lag", "--topic", "sync.events")
    assert code == 0
    assert out.splitlines()[0] == f"group {group}: Empty, 0 member(s)"
    assert [line.split() for line in out.splitlines() if "total" in line] == [
        [group, "total", settings.topic(EVENTS), "45", "32"],
    ]
