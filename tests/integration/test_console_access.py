"""The console's access rules and its answers to bad input, against the real PostgreSQL and broker
(no worker: an empty read model is enough), and the ledger's retention prune."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from app.console.app import build_app
from app.events import DeliveryOutcome, utcnow
from app.store.db import open_pool


@pytest.fixture
async def client(settings):
    async def make(**tokens: str) -> TestClient:
        c = TestClient(TestServer(build_app(settings.model_copy(update={k: SecretStr(v) for k, v in tokens.items()}))))
        await c.start_server()
        made.append(c)
        return c

    made: list[TestClient] = []
    yield make
    for c in made:
        await c.close()


async def test_without_a_console_token_loopback_pages_and_api_answer(client):
    c = await client()
    for path in (
        "/",
        "/sources",
        "/jobs",
        "/deliveries",
        "/dlq",
        "/api/overview",
        "/api/jobs",
        "/api/deliveries",
        "/static/console.css",
        "/static/refresh.js",
    ):
        r = await c.get(path)
        assert r.status == 200, (path, await r.text())
    overview = await (await c.get("/api/overview")).json()
    assert overview["deliveries"] == {"routed": 0, "duplicate": 0, "ignored": 0, "dead_lettered": 0}
    assert overview["lag"]["group"].endswith("hookstream")


async def test_with_a_console_token_every_request_needs_it(client):
    c = await client(console_token="reader-token")
    assert (await c.get("/api/overview")).status == 401
    assert (await c.get("/jobs")).status == 401
    assert (await c.get("/api/overview", headers={"Authorization": "Bearer wrong"})).status == 401
    assert (await c.get("/api/overview", headers={"Authorization": "Bearer reader-token"})).status == 200
    # Once from a link: the token moves to a cookie and leaves the address.
    r = await c.get("/jobs?token=reader-token&status=running", allow_redirects=False)
    assert r.status == 303 and "token" not in r.headers["Location"] and "status=running" in r.headers["Location"]
    assert (await c.get("/jobs")).status == 200  # the client kept the cookie
    assert (await c.get("/static/console.css")).status == 200


async def test_redrive_needs_the_write_token_and_is_off_without_one(client):
    off = await client()
    r = await off.post("/api/dlq/abc/redrive", headers={"Authorization": "Bearer anything"})
    assert r.status == 403 and (await r.json())["error"] == "redrive_disabled"
    on = await client(console_write_token="writer-token")
    assert (await on.post("/api/dlq/abc/redrive")).status == 403
    assert (await on.post("/api/dlq/abc/redrive", headers={"Authorization": "Bearer reader"})).status == 403
    r = await on.post("/api/dlq/abc/redrive", headers={"Authorization": "Bearer writer-token"})
    assert r.status == 404 and (await r.json())["error"] == "not_found"


@pytest.mark.parametrize(
    "path",
    ["/api/jobs?status=bogus", "/api/deliveries?outcome=bogus", "/api/deliveries?minutes=x", "/api/jobs?limit=many"],
)
async def test_bad_filters_get_a_400_that_says_why(client, path):
    r = await (await client()).get(path)
    text = await r.text()
    assert r.status == 400 and ("one of" in text or "number" in text), text


async def test_unknown_ids_get_a_404_page_or_json(client):
    c = await client()
    assert (await c.get("/api/jobs/nope")).status == 404
    assert (await c.get("/api/deliveries/github/x/nope")).status == 404
    r = await c.get("/deliveries/github/x/<script>")
    assert r.status == 404 and "<script>" not in await r.text()


def test_the_console_refuses_to_bind_beyond_loopback_without_a_token():
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli.main", "console", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2 and "HOOKSTREAM_CONSOLE_TOKEN" in proc.stderr


async def test_the_ledger_prune_deletes_rows_older_than_the_retention(settings):
    from app.store.retention import prune_ledger
    from app.stream.ledger import project_outcomes

    now = utcnow()

    def copy(n: int, days_ago: float) -> DeliveryOutcome:
        return DeliveryOutcome(
            key=f"github/gh/p{n}",
            plugin="github",
            instance="gh",
            delivery_id=f"p{n}",
            received_at=now - timedelta(days=days_ago),
            partition=0,
            offset=n,
            outcome="routed",
        )

    pool = open_pool(settings, min_size=1, max_size=1)
    await pool.open(wait=True)
    try:
        topic = settings.topic("hookstream.deliveries.outcomes")
        # p1 old; p2 recent; p3 has an old copy and a recent one.
        await project_outcomes(
            pool,
            topic,
            0,
            [(0, copy(1, 40)), (1, copy(2, 1)), (2, copy(3, 40)), (3, copy(3, 1).model_copy(update={"offset": 9}))],
        )
        async with pool.connection() as conn:
            async with conn.transaction():
                assert await prune_ledger(conn, settings.database_schema, now - timedelta(days=30)) == {
                    "delivery_copies": 2,
                    "deliveries": 1,
                }
            keys = [r[0] for r in await (await conn.execute("SELECT key FROM deliveries ORDER BY key")).fetchall()]
            copies = (await (await conn.execute("SELECT count(*) FROM delivery_copies")).fetchone())[0]
    finally:
        await pool.close()
    assert keys == ["github/gh/p2", "github/gh/p3"] and copies == 2
