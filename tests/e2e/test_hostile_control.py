"""A producer steers neither the fold's clock nor the size of a source's state (a real ingress and worker).

Found by attacking the worker through POST /events: a request dated 9000-01-01
held its source's idempotency key for ever and expired every other one; two
large events made a state record the broker refused, and the worker exited.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from pydantic import SecretStr

from app import codec
from app.embedded.ports import free_port
from app.events import SourceConnected, SourceUpdated, SyncRequested
from tests.support import gitrepo
from tests.support.flows import lifecycle, now, settled
from tests.support.kafka import read_all
from tests.support.services import isolated_settings, wait_until
from tests.support.stack import IngressProcess, WorkerProcess, started_worker, write_instances

TOKEN = "hostile-token"
STATE_BOUND = 8 * 1024


@pytest.fixture(scope="module")
async def stack(broker, postgres, tmp_path_factory):

    tmp = tmp_path_factory.mktemp("hostile")
    instances = write_instances(tmp / "instances.toml", [{"plugin": "github", "id": "gh", "secret": "x"}])
    s = isolated_settings(
        broker.bootstrap,
        postgres.url,
        instances_file=instances,
        ingress_port=free_port(),
        events_token=SecretStr(TOKEN),
        max_source_state_bytes=STATE_BOUND,
        idempotency_ttl_seconds=300.0,
    )
    worker = await started_worker(s, tmp)
    ingress = IngressProcess(s, tmp / "ingress.log").start()
    await ingress.ready()
    # Ready before any test reads its metrics: each test must pass alone, not only after another.
    await wait_until(worker.ready, timeout=60, what="the worker ready")
    yield s, worker, ingress
    ingress.stop()
    worker.stop()


async def post_event(ingress: IngressProcess, event) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{ingress.url}/events",
            data=codec.encode(event),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        ) as r:
            return r.status


async def test_a_request_dated_in_the_year_9000_is_rejected_and_holds_no_key(stack, tmp_path):
    settings, worker, ingress = stack
    gitrepo.build_repo(tmp_path / "repo", files={"a.md": b"# a\n"})
    source = "git:clock"
    await post_event(
        ingress,
        SourceConnected(
            source_id=source, occurred_at=now(), source_type="git", config={"path": str(tmp_path / "repo")}
        ),
    )
    far = SyncRequested(
        source_id=source,
        occurred_at=datetime(9000, 1, 1, tzinfo=UTC),
        request_id="far-future",
        mode="full",
        trigger="manual",
    )
    assert await post_event(ingress, far) == 202
    await settled(settings, source, ["far-future"], alive=worker.alive)
    (rejected,) = [e for e in await lifecycle(settings, source) if e.type == "sync.rejected"]
    assert rejected.request_ids == ["far-future"] and "check the sender's clock" in rejected.reason

    # The same kind of request a moment later is not "deduplicated" by a key held until the year 9000.
    first = SyncRequested(source_id=source, occurred_at=now(), request_id="now-1", mode="full", trigger="manual")
    assert await post_event(ingress, first) == 202
    (done,) = await settled(settings, source, ["now-1"], alive=worker.alive)
    assert done.request_ids == ["now-1"] and done.status == "succeeded"
    # And a date near the end of time neither overflows the fold nor stops the worker.
    end = SyncRequested(
        source_id=source,
        occurred_at=datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
        request_id="end-of-time",
        mode="incremental",
        trigger="manual",
    )
    assert await post_event(ingress, end) == 202
    await settled(settings, source, ["end-of-time"], alive=worker.alive)
    assert worker.alive()


async def test_events_that_would_grow_a_source_past_its_bound_are_refused_and_the_worker_lives(stack, tmp_path):
    settings, worker, ingress = stack
    gitrepo.build_repo(tmp_path / "repo", files={"a.md": b"# a\n"})
    source = "git:bounded"
    connect = SourceConnected(
        source_id=source, occurred_at=now(), source_type="git", name="n" * 200, config={"path": str(tmp_path / "repo")}
    )
    assert await post_event(ingress, connect) == 202
    for i in range(4):  # each within every field bound (a name of at most 200); together past the state's
        update = SourceUpdated(source_id=source, occurred_at=now(), config={f"k{i}": "v" * 3000})
        assert await post_event(ingress, update) == 202

    async def refused() -> bool:
        return 'hookstream_control_refused_total{type="source.updated"}' in await _metrics(worker)

    await wait_until(refused, timeout=60, what="the refusal counted")
    assert worker.alive()
    # The source still works: a request after the refused update is run.
    request = SyncRequested(
        source_id=source, occurred_at=now(), request_id="after-refusal", mode="full", trigger="manual"
    )
    assert await post_event(ingress, request) == 202
    (done,) = await settled(settings, source, ["after-refusal"], alive=worker.alive)
    assert done.status == "succeeded"
    changelog = await read_all(settings, "hookstream.sources.changelog", timeout=5, idle=0.5, decode=False)
    assert changelog and max(len(v) for _, v, _, _ in changelog) <= STATE_BOUND


async def _metrics(worker: WorkerProcess) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.get(worker.metrics_url) as r:
            return await r.text()


def test_the_skew_is_an_hour_by_default():
    from app.settings import Settings

    assert Settings().max_clock_skew_seconds == timedelta(hours=1).total_seconds()
