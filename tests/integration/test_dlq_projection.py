"""The dlq projection on the real PostgreSQL: exactly-once effects, and a rebuild gives the same rows."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg
from psycopg.rows import dict_row

from app.core.intake import dead_letter_id
from app.events import DeadLettered, Delivery, RedriveAccepted, utcnow
from app.store.db import migrate, open_pool
from app.stream.dlq import CONSUMER, DLQ, project_dead_letter
from tests.support.services import isolated_settings

NOW = utcnow().replace(microsecond=0)


# --- helpers shared with the other dlq tests -------------------------------------------------


def poison_delivery(
    delivery_id: str = "poison-1", instance: str = "a", body: bytes = b"not a producer event", at=None
) -> Delivery:
    return Delivery(
        delivery_id=delivery_id,
        plugin="generic-hmac",
        instance=instance,
        received_at=at or NOW,
        headers={"x-request-id": delivery_id},
        body=body,
    )


def dead_lettered(
    delivery: Delivery | None,
    at=None,
    stage: str = "route",
    error: str = "body is not a hookstream producer event: not JSON",
    key: str | None = None,
    raw: bytes | None = None,
    source_offset: int = 0,
) -> DeadLettered:
    """A dead letter of the delivery consumed at hookstream.deliveries[0]@source_offset (a redrive is
    consumed at an offset of its own)."""
    key = key or delivery.key
    return DeadLettered(
        dead_letter_id=dead_letter_id(key),
        key=key,
        stage=stage,
        error=error,
        failed_at=at or NOW,
        source_topic="hookstream.deliveries",
        source_partition=0,
        source_offset=source_offset,
        original=delivery,
        raw=raw,
    )


async def project(settings, records: list) -> list[bool]:
    """Apply (partition, offset, record) triples the way the agent does; True for each one applied."""
    pool = open_pool(settings, min_size=1, max_size=2)
    await pool.open(wait=True)
    try:
        return [await project_dead_letter(pool, settings.topic(DLQ), p, o, r) for p, o, r in records]
    finally:
        await pool.close()


async def dlq_rows(settings) -> list[dict]:
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, options=f"-c search_path={settings.database_schema}"
    ) as conn:
        cursor = conn.cursor(row_factory=dict_row)
        return await (await cursor.execute("SELECT * FROM dlq ORDER BY dead_letter_id")).fetchall()


async def dlq_row(settings, ident: str) -> dict | None:
    return next((r for r in await dlq_rows(settings) if r["dead_letter_id"] == ident), None)


async def fresh_schema(settings):
    """The same broker and server, an empty schema of its own (a projection rebuild target)."""
    s = isolated_settings(settings.kafka_bootstrap_servers, settings.database_url)
    await migrate(s)
    return s


def history():
    """A dead letter's life: failed, redriven and failed again, redriven and accepted; plus an undecodable record."""
    d = poison_delivery()
    ident = dead_letter_id(d.key)
    redrive = d.model_copy(update={"redrive_of": ident, "received_at": NOW + timedelta(minutes=5)})
    return ident, [
        (2, 10, dead_lettered(d)),
        (2, 11, dead_lettered(redrive, at=NOW + timedelta(minutes=5), error="still not an event", source_offset=1)),
        (2, 12, RedriveAccepted(dead_letter_id=ident, key=d.key, accepted_at=NOW + timedelta(minutes=9))),
        (5, 3, dead_lettered(None, stage="decode", error="not JSON", key="generic-hmac/a/raw", raw=b"\x00\x01garbage")),
    ]


# --- tests -----------------------------------------------------------------------------------


async def test_a_dead_letters_history_projects_to_one_row_retired_after_two_attempts(settings):
    ident, records = history()
    assert await project(settings, records) == [True, True, True, True]
    row = await dlq_row(settings, ident)
    assert (row["status"], row["attempts"], row["error"]) == ("retired", 2, "still not an event")
    assert row["retired_at"] == NOW + timedelta(minutes=9)
    assert (row["first_failed_at"], row["last_failed_at"]) == (NOW, NOW + timedelta(minutes=5))
    assert row["original"]["redrive_of"] == ident
    raw = await dlq_row(settings, dead_letter_id("generic-hmac/a/raw"))
    assert (raw["stage"], raw["plugin"], raw["original"], bytes(raw["raw"])) == (
        "decode",
        "generic-hmac",
        None,
        b"\x00\x01garbage",
    )


async def test_consuming_the_same_dlq_records_again_changes_nothing(settings):
    _, records = history()
    await project(settings, records)
    before = await dlq_rows(settings)
    # A second pass over the same offsets (a crash before the commit, a consumer replay) ...
    assert await project(settings, records) == [False] * len(records)
    # ... and each record applied twice in a row.
    assert await project(settings, [records[0], records[0]]) == [False, False]
    assert await dlq_rows(settings) == before


async def test_rebuilding_the_projection_into_an_empty_schema_gives_the_same_rows(settings):
    _, records = history()
    await project(settings, records)
    rebuilt = await fresh_schema(settings)
    await project(rebuilt, records)
    assert await dlq_rows(rebuilt) == await dlq_rows(settings)


async def test_two_consumers_applying_the_same_failure_at_once_count_it_once(settings):
    # During a rebalance two workers may hold one partition for a moment: the fence's row lock serializes them.
    ident, records = history()
    await project(settings, records[:1])
    results = await asyncio.gather(project(settings, records[1:2]), project(settings, records[1:2]))
    assert sorted(r[0] for r in results) == [False, True]
    assert (await dlq_row(settings, ident))["attempts"] == 2


async def test_an_acceptance_for_an_unknown_dead_letter_makes_no_row(settings):
    record = RedriveAccepted(dead_letter_id="nope", key="generic-hmac/a/x", accepted_at=NOW)
    assert await project(settings, [(0, 0, record)]) == [True]
    assert await dlq_rows(settings) == []


def test_the_consumer_name_is_the_agent_name():
    assert CONSUMER == "project_dead_letters"
