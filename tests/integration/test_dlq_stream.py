"""Dead letters end to end on a real worker: dead-lettered with a reason, redriven after a fix,
retired only once the dedup/routing stage accepted the redrive."""

from __future__ import annotations

import orjson

from app import codec
from app.core.intake import dead_letter_id
from app.events import DeadLettered, Delivery, RedriveAccepted, SyncRequested, utcnow
from tests.integration.test_dlq_cli import hookstream
from tests.integration.test_dlq_projection import dlq_row, dlq_rows, fresh_schema, project
from tests.support.kafka import produce, read_all
from tests.support.services import wait_until
from tests.support.stack import WorkerProcess, write_instances

INSTANCE_A = {"plugin": "generic-hmac", "id": "a", "secret": "s1", "dedup_window": "24h"}
INSTANCE_B = {"plugin": "generic-hmac", "id": "b", "secret": "s2", "dedup_window": "24h"}
NOT_AN_EVENT = "body is not a hookstream producer event"


def start_worker(settings, tmp_path, instances: list[dict], name: str) -> WorkerProcess:
    """A worker process with these instances; every worker of a test shares its RocksDB directory."""
    s = settings.model_copy(update={"instances_file": write_instances(tmp_path / f"{name}.toml", instances)})
    return WorkerProcess(s, tmp_path / "rocks", tmp_path / f"{name}.log").start()


def sync_request_body(request_id: str) -> bytes:
    event = SyncRequested(
        source_id="src-1", occurred_at=utcnow(), request_id=request_id, mode="full", trigger="producer"
    )
    return orjson.dumps(event.model_dump(mode="json"))


def delivery(delivery_id: str, body: bytes, instance: str = "a") -> Delivery:
    return Delivery(delivery_id=delivery_id, plugin="generic-hmac", instance=instance, received_at=utcnow(), body=body)


async def wait_for_row(settings, worker: WorkerProcess, ident: str, ready, what: str) -> dict:
    async def check():
        assert worker.alive(), f"the worker died:\n{worker.log_tail()}"
        row = await dlq_row(settings, ident)
        return row if row is not None and ready(row) else None

    return await wait_until(check, timeout=90, interval=0.2, what=what)


async def assert_reprojecting_changes_nothing(settings, dlq_records: list) -> None:
    """Consuming the topic's records again skips them all; replaying them into an empty schema gives the same rows."""
    live = await dlq_rows(settings)
    triples = [(partition, offset, record) for _, record, partition, offset in dlq_records]
    assert await project(settings, triples) == [False] * len(triples)
    assert await dlq_rows(settings) == live
    rebuilt = await fresh_schema(settings)
    await project(rebuilt, triples)
    assert await dlq_rows(rebuilt) == live


async def test_a_poison_delivery_is_dead_lettered_with_its_stage_and_reason_and_the_stream_goes_on(settings, tmp_path):
    poison = delivery("poison-1", b"this is not a producer event")
    raw_key, raw_value = "generic-hmac/a/raw-1", b"\x00not a delivery record"
    worker = start_worker(settings, tmp_path, [INSTANCE_A], "worker")
    try:
        await produce(settings, "hookstream.deliveries", [(poison.key, codec.encode(poison)), (raw_key, raw_value)])
        row = await wait_for_row(settings, worker, dead_letter_id(poison.key), lambda r: True, "the poison's dlq row")
        assert (row["stage"], row["status"], row["attempts"], row["plugin"], row["instance"]) == (
            "route",
            "open",
            1,
            "generic-hmac",
            "a",
        )
        assert row["error"].startswith(NOT_AN_EVENT)
        assert Delivery.model_validate(row["original"]) == poison

        async def raw_row():
            return next((r for r in await dlq_rows(settings) if r["key"] == raw_key), None)

        undecodable = await wait_until(raw_row, timeout=30, what="the undecodable record's dlq row")
        assert (undecodable["stage"], undecodable["original"], bytes(undecodable["raw"])) == ("decode", None, raw_value)

        # The stream goes on: a good delivery produced after the poison was dead-lettered is routed.
        good = delivery("good-1", sync_request_body("req-good"))
        await produce(settings, "hookstream.deliveries", [(good.key, codec.encode(good))])
        routed = await read_all(settings, "hookstream.sync.control", min_count=1, timeout=60, alive=worker.alive)
        assert [record.request_id for _, record, _, _ in routed] == ["req-good"], worker.log_tail()
        assert worker.alive()
    finally:
        worker.stop()


async def test_a_redrive_after_the_fix_retires_the_row_only_once_the_stage_accepted_it(
    settings, tmp_path, monkeypatch, capsys
):
    # Poison by configuration: instance b is not configured yet.
    lost = delivery("for-b-1", sync_request_body("req-b"), instance="b")
    ident = dead_letter_id(lost.key)
    worker = start_worker(settings, tmp_path, [INSTANCE_A], "before-fix")
    try:
        await produce(settings, "hookstream.deliveries", [(lost.key, codec.encode(lost))])
        row = await wait_for_row(settings, worker, ident, lambda r: True, "the unknown instance's dlq row")
        assert (row["stage"], row["status"]) == ("route", "open")
        assert "unknown instance generic-hmac/b" in row["error"]
    finally:
        worker.stop()

    code, out, err = await hookstream(settings, monkeypatch, capsys, "dlq", "redrive", ident)
    assert code == 0, err
    assert f"redriven  {ident}" in out
    published = await read_all(settings, "hookstream.deliveries", min_count=2, timeout=20)
    assert [record.redrive_of for _, record, _, _ in published] == [None, ident]
    # Published, nobody accepted it yet (no worker runs): the row stays open.
    assert (await dlq_row(settings, ident))["status"] == "open"

    worker = start_worker(settings, tmp_path, [INSTANCE_A, INSTANCE_B], "after-fix")
    try:
        row = await wait_for_row(settings, worker, ident, lambda r: r["status"] == "retired", "the row to be retired")
        dlq_records = await read_all(settings, "hookstream.dlq", min_count=2, timeout=30)
        accepted = [record for _, record, _, _ in dlq_records if isinstance(record, RedriveAccepted)]
        assert [a.dead_letter_id for a in accepted] == [ident]
        assert row["retired_at"] == accepted[0].accepted_at and row["attempts"] == 1
        routed = await read_all(settings, "hookstream.sync.control", min_count=1, timeout=30)
        assert {record.request_id for _, record, _, _ in routed} == {"req-b"}
        assert all(record.delivery.key == lost.key for _, record, _, _ in routed)
        await assert_reprojecting_changes_nothing(settings, dlq_records)
    finally:
        worker.stop()


async def test_a_redrive_of_a_still_poison_delivery_keeps_the_row_open_with_one_more_attempt(
    settings, tmp_path, monkeypatch, capsys
):
    poison = delivery("poison-2", b'{"type": "sync.requested", "source_id": 7}')
    ident = dead_letter_id(poison.key)
    worker = start_worker(settings, tmp_path, [INSTANCE_A], "worker")
    try:
        await produce(settings, "hookstream.deliveries", [(poison.key, codec.encode(poison))])
        first = await wait_for_row(settings, worker, ident, lambda r: True, "the poison's dlq row")
        assert first["attempts"] == 1

        code, _, err = await hookstream(settings, monkeypatch, capsys, "dlq", "redrive", ident)
        assert code == 0, err
        row = await wait_for_row(settings, worker, ident, lambda r: r["attempts"] == 2, "a second attempt")
        assert (row["status"], row["stage"], row["retired_at"]) == ("open", "route", None)
        assert row["error"].startswith(NOT_AN_EVENT)
        assert row["first_failed_at"] == first["first_failed_at"] < row["last_failed_at"]

        dlq_records = await read_all(settings, "hookstream.dlq", min_count=2, timeout=30)
        records = [record for _, record, _, _ in dlq_records]
        assert [type(r) for r in records] == [DeadLettered, DeadLettered]
        assert [r.original.redrive_of for r in records] == [None, ident]
        await assert_reprojecting_changes_nothing(settings, dlq_records)
    finally:
        worker.stop()
