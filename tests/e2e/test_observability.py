"""What a user can see: the delivery ledger, `hookstream trace`, live progress and the worker's metrics.

One worker for the module (a group join costs seconds); each test uses its own deliveries and sources.
Truth is the world: the ledger's copies are compared with the records in hookstream.deliveries.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from collections import defaultdict
from datetime import timedelta

import aiohttp
import orjson
import psycopg
import pytest
from psycopg.rows import dict_row

from app.embedded.ports import free_port
from app.embedded.supervisor import Child, hookstream_argv
from app.store.sync_records import LIVE_JOBS
from tests.integration.test_cli_sources_syncs import hookstream
from tests.support import gitrepo
from tests.support.flows import (
    completions,
    connected,
    documents,
    github_delivery,
    github_push,
    now,
    requested,
    send_control,
)
from tests.support.kafka import produce, read_all
from tests.support.services import isolated_settings, wait_until
from tests.support.stack import WorkerProcess, started_worker, write_instances

SECRET = "s3cret-webhook-key"
EVENTS_TOKEN = "events-token-9f3b"
WRITE_TOKEN = "console-write-token-77"


@pytest.fixture(scope="module")
async def stack(broker, postgres, tmp_path_factory):

    tmp = tmp_path_factory.mktemp("observability")
    instances = write_instances(tmp / "instances.toml", [{"plugin": "github", "id": "gh", "secret": SECRET}])
    s = isolated_settings(
        broker.bootstrap,
        postgres.url,
        instances_file=instances,
        batch_size=10,
        events_token=EVENTS_TOKEN,
        console_write_token=WRITE_TOKEN,
        log_format="json",
    )
    worker = await started_worker(s, tmp)
    await wait_until(worker.ready, timeout=90, what="the worker ready")
    yield s, worker
    worker.stop()


@pytest.fixture(scope="module")
async def web(stack, tmp_path_factory):
    """The ingress and the console beside the module's worker: (ingress URL, console URL, logs)."""
    settings, _ = stack
    tmp = tmp_path_factory.mktemp("web")
    ingress_port, console_port = free_port(), free_port()
    env = {
        **settings.to_env(),
        "HOOKSTREAM_INGRESS_PORT": str(ingress_port),
        "HOOKSTREAM_CONSOLE_PORT": str(console_port),
    }
    # The ingress handles the secrets: at debug, whatever it or its libraries log is there to be checked.
    children = [
        Child(
            "ingress",
            hookstream_argv("ingress"),
            {**env, "HOOKSTREAM_LOG_LEVEL": "debug"},
            tmp / "ingress.log",
            stop_timeout=10,
        ).start(),
        Child("console", hookstream_argv("console"), env, tmp / "console.log", stop_timeout=10).start(),
    ]
    ingress, console = f"http://127.0.0.1:{ingress_port}", f"http://127.0.0.1:{console_port}"

    async def answers(url: str) -> bool:
        assert all(c.alive for c in children), [(c.name, (tmp / f"{c.name}.log").read_text()) for c in children]
        try:
            async with aiohttp.ClientSession() as http, http.get(url) as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    try:
        await wait_until(lambda: answers(f"{ingress}/readyz"), timeout=60, what="the ingress ready")
        await wait_until(lambda: answers(f"{console}/api/overview"), timeout=60, what="the console answering")
        yield ingress, console, {c.name: tmp / f"{c.name}.log" for c in children}
    finally:
        for child in children:
            child.stop()


async def query(settings, text: str, params=()) -> list[dict]:
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, options=f"-c search_path={settings.database_schema}", autocommit=True
    ) as conn:
        cursor = conn.cursor(row_factory=dict_row)
        return await (await cursor.execute(text, params)).fetchall()


async def metrics(worker: WorkerProcess) -> dict[str, float]:
    """Every sample of the worker's /metrics: `name{labels}` -> value."""
    async with aiohttp.ClientSession() as http, http.get(worker.metrics_url) as r:
        text = await r.text()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.M)}


# --- the ledger --------------------------------------------------------------------------------


def kind_of(i: int) -> str:
    return (
        "routed",
        "routed",
        "routed",
        "routed",
        "ignored_ping",
        "ignored_ping",
        "ignored_dispatch",
        "ignored_dispatch",
        "dead_lettered",
        "routed",
    )[i % 10]


def delivery(i: int):
    kind = kind_of(i)
    if kind == "routed":
        body, event = github_push(7000 + i % 5, "a" * 40, f"{i:040x}", modified=["README.md"]), "push"
    elif kind == "ignored_ping":
        body, event = b'{"zen": "Keep it logically awesome.", "hook_id": 1}', "ping"
    elif kind == "ignored_dispatch":
        body = orjson.dumps(
            {
                "action": f"deploy-{i}",
                "branch": "main",
                "repository": {"id": 7000, "full_name": "octo/repo", "name": "repo"},
            }
        )
        event = "repository_dispatch"
    else:
        body, event = b"this is not JSON", "push"
    return github_delivery("gh", f"led-{i:04d}", body, event=event)


async def test_every_copy_of_a_thousand_deliveries_a_fifth_redelivered_is_in_the_ledger_with_its_outcome(
    stack, monkeypatch, capsys
):
    settings, worker = stack
    before = await metrics(worker)
    originals = [delivery(i) for i in range(1000)]
    redelivered = [delivery(i) for i in range(0, 1000, 5)]  # the same ids and bodies, received again
    await produce(settings, "hookstream.deliveries", originals + redelivered)

    async def all_copies():
        assert worker.alive(), worker.log_tail()
        n = (await query(settings, "SELECT count(*) AS n FROM delivery_copies WHERE key LIKE 'github/gh/led-%%'"))[0][
            "n"
        ]
        return n >= 1200

    await wait_until(all_copies, timeout=120, interval=0.3, what="1,200 copies in the ledger")
    # The world: every record on hookstream.deliveries, where it is.
    on_kafka = defaultdict(list)
    for key, _, partition, offset in await read_all(
        settings, "hookstream.deliveries", min_count=1200, timeout=30, idle=0.5
    ):
        if key.startswith("github/gh/led-"):
            on_kafka[key].append((partition, offset))
    copies = await query(settings, "SELECT * FROM delivery_copies WHERE key LIKE 'github/gh/led-%%'")
    by_key = defaultdict(list)
    for c in copies:
        by_key[c["key"]].append(c)
    assert len(copies) == 1200 and len(by_key) == 1000
    for key, positions in on_kafka.items():
        assert sorted((c["partition"], c["offset"]) for c in by_key[key]) == sorted(positions), key
        i = int(key.rsplit("-", 1)[1])
        first, *later = sorted(by_key[key], key=lambda c: c["offset"])
        assert [c["outcome"] for c in later] == ["duplicate"] * (1 if i % 5 == 0 else 0), key
        kind = kind_of(i)
        expected = {
            "routed": ("routed", None),
            "ignored_ping": ("ignored", "ping"),
            "ignored_dispatch": ("ignored", "repository_dispatch"),  # the action is the sender's choice
            "dead_lettered": ("dead_lettered", "route"),
        }[kind]
        assert (first["outcome"], first["rule"]) == expected, key
        if kind == "routed":
            assert (first["request_ids"], first["source_ids"]) == ([f"led-{i:04d}"], [f"github:{7000 + i % 5}"])
        if kind == "dead_lettered":
            assert "not a JSON object" in first["reason"]
    rows = {r["key"]: r for r in await query(settings, "SELECT * FROM deliveries WHERE key LIKE 'github/gh/led-%%'")}
    assert len(rows) == 1000
    assert {k: r["copies"] for k, r in rows.items()} == {k: len(v) for k, v in on_kafka.items()}
    assert {r["outcome"] for k, r in rows.items() if k.endswith("-0000")} == {"routed"}
    assert rows["github/gh/led-0008"]["event"] == "push" and rows["github/gh/led-0004"]["event"] == "ping"

    # A sender-chosen repository_dispatch action does not mint a series: 200 actions, one label
    # (the routing names the rule without it; app/core/labels.py bounds whatever a rule is).
    after = await metrics(worker)
    dispatch = {
        k: v for k, v in after.items() if k.startswith("hookstream_deliveries_ignored_total") and "dispatch" in k
    }
    assert list(dispatch) == ['hookstream_deliveries_ignored_total{plugin="github",rule="repository_dispatch"}']
    assert dispatch[list(dispatch)[0]] - before.get(list(dispatch)[0], 0) == 200

    # The ledger is rebuildable like every projection: a replay of its topic gives the live rows.
    code, out, err = await hookstream(
        settings, monkeypatch, capsys, "projections", "rebuild", "--projection", "ledger", "--dry-run", "--verify"
    )
    assert code == 0, out + err
    assert "delivery_copies: live 1200 rows, rebuilt 1200 rows: identical" in out
    assert "deliveries: live 1000 rows, rebuilt 1000 rows: identical" in out


async def test_the_trace_of_an_ignored_delivery_names_its_rule(stack, monkeypatch, capsys):
    settings, worker = stack
    await produce(
        settings, "hookstream.deliveries", [github_delivery("gh", "trace-ping", b'{"zen": "z"}', event="ping")]
    )
    await wait_until(
        lambda: query(settings, "SELECT 1 FROM deliveries WHERE delivery_id = 'trace-ping'"),
        timeout=60,
        what="the ping in the ledger",
    )
    code, out, err = await hookstream(settings, monkeypatch, capsys, "trace", "trace-ping")
    assert code == 0, out + err
    assert "delivery github/gh/trace-ping: ignored (ping)" in out and "ignored by rule ping" in out
    code, out, err = await hookstream(settings, monkeypatch, capsys, "trace", "github/gh/trace-ping", "--json")
    data = json.loads(out)
    assert data["id"] == "github/gh/trace-ping" and data["job"] is None
    assert [(h["stage"], h["type"], h["found"]) for h in data["hops"]] == [
        ("delivery", "delivery", True),
        ("dedup", "delivery.outcome", True),
    ]
    assert data["hops"][0]["topic"] == settings.topic("hookstream.deliveries")
    assert data["deliveries"][0]["rule"] == "ping"


async def test_the_trace_of_an_unknown_id_exits_1_and_says_what_it_searched(stack, monkeypatch, capsys):
    settings, _ = stack
    code, out, err = await hookstream(settings, monkeypatch, capsys, "trace", "no-such-thing-anywhere")
    assert code == 1 and out == ""
    assert "nothing matches 'no-such-thing-anywhere'" in err and "delivery ledger" in err and "sync_jobs" in err


# --- coalescing, deduplication, progress, metrics -------------------------------------------------


async def test_a_coalesced_job_traces_every_request_and_a_deduplicated_one_leads_to_its_job(
    stack, tmp_path, monkeypatch, capsys
):
    settings, worker = stack
    big = tmp_path / "big"
    c0, c1, c2, c3 = gitrepo.build_repo(
        big, commits=[gitrepo.synthetic_files(300, seed=9), {"x.md": b"x\n"}, {"y.md": b"y\n"}, {"z.md": b"z\n"}]
    )
    source, t0 = "git:traced", now()
    first = requested(source, "full", occurred_at=t0)
    again = requested(source, "full", occurred_at=t0 + timedelta(milliseconds=5))  # the same key: deduplicated
    incrementals = [
        requested(
            source,
            "incremental",
            trigger="push",
            before=b,
            after=a,
            paths=[p],
            occurred_at=t0 + timedelta(milliseconds=10 * (n + 1)),
        )
        for n, (b, a, p) in enumerate(((c0, c1, "x.md"), (c1, c2, "y.md"), (c2, c3, "z.md")))
    ]
    await send_control(settings, connected(source, big), first, again, *incrementals)
    runs = await completions(settings, source, at_least=2, alive=worker.alive)
    merged = runs[1]
    assert merged.request_ids == [r.request_id for r in incrementals]
    await wait_until(
        lambda: query(settings, "SELECT 1 FROM sync_jobs WHERE job_id = %s AND status = 'succeeded'", (merged.job_id,)),
        timeout=30,
        what="the merged job's row",
    )

    code, out, err = await hookstream(settings, monkeypatch, capsys, "trace", merged.job_id, "--json")
    assert code == 0, out + err
    data = json.loads(out)
    hops = data["hops"]
    assert data["job"]["job_id"] == merged.job_id and data["job"]["request_ids"] == merged.request_ids
    assert all(h["found"] for h in hops), [h for h in hops if not h["found"]]
    kinds = [h["type"] for h in hops]
    requested_ids = [h["request_ids"][0] for h in hops if h["type"] == "sync.requested"]
    assert requested_ids == [r.request_id for r in incrementals]
    assert kinds.count("sync.queued") == 1 and kinds.count("sync.coalesced") == 2 and kinds.count("sync.started") == 1
    assert kinds.count("sync.planned") == 1 and kinds.count("batch.completed") == merged.batches
    assert kinds[-1] == "sync.completed" and hops[-1]["topic"] == settings.topic("hookstream.sync.completed")
    assert sorted({(h["topic"], h["partition"], h["offset"]) for h in hops}) == sorted(
        (h["topic"], h["partition"], h["offset"]) for h in hops
    )  # each record once

    # The deduplicated request leads to the job that held its key, through to that job's completion.
    code, out, err = await hookstream(settings, monkeypatch, capsys, "trace", again.request_id, "--json")
    data = json.loads(out)
    dedup = [h for h in data["hops"] if h["type"] == "sync.deduplicated"]
    assert [h["job_id"] for h in dedup] == [runs[0].job_id] and data["job"]["job_id"] == runs[0].job_id
    assert ("sync.completed", runs[0].job_id) in [(h["type"], h["job_id"]) for h in data["hops"]]


async def test_a_running_jobs_counts_move_and_the_metrics_count_a_sync_and_a_failed_one(
    stack, tmp_path, monkeypatch, capsys
):
    settings, worker = stack
    before = await metrics(worker)
    repo = tmp_path / "repo"
    gitrepo.build_repo(repo, files=gitrepo.synthetic_files(1500, seed=4))
    source = "git:progress"
    await send_control(settings, connected(source, repo), requested(source, "full", request_id="progress-1"))
    seen: list[tuple[str, int, int]] = []
    shown: list[str] = []

    async def finished():
        rows = await query(
            settings, f"SELECT job_id, status, processed, batches FROM {LIVE_JOBS} WHERE source_id = %s", (source,)
        )
        if not rows:
            return False
        row = rows[0]
        if not seen or seen[-1] != (row["status"], row["processed"], row["batches"]):
            seen.append((row["status"], row["processed"], row["batches"]))
            if row["status"] == "running" and row["batches"] and not shown:
                code, out, _ = await hookstream(settings, monkeypatch, capsys, "syncs", "show", row["job_id"])
                shown.append(out)
        return row["status"] == "succeeded"

    await wait_until(finished, timeout=120, interval=0.05, what="the progress sync to finish")
    assert shown and re.search(r"status +(running: \d+/150 batches done|succeeded)", shown[0]), shown
    running = [(p, b) for status, p, b in seen if status == "running" and b]
    assert len(running) >= 2 and running == sorted(running), seen  # moved while it ran, never back
    (done,) = await completions(settings, source, alive=worker.alive)
    assert seen[-1] == ("succeeded", done.processed, 150)
    assert done.processed + done.skipped == len(gitrepo.tree_of(repo, "HEAD")) == 1500

    # A failed sync: the source's path does not exist, so its plan fails.
    await send_control(settings, connected("git:gone", tmp_path / "gone"), requested("git:gone", "full"))
    (failed,) = await completions(settings, "git:gone", alive=worker.alive)
    assert failed.status == "failed"

    async def counted():
        m = await metrics(worker)
        return (
            m
            if m.get('hookstream_syncs_completed_total{status="failed"}', 0)
            > before.get('hookstream_syncs_completed_total{status="failed"}', 0)
            else None
        )

    after = await wait_until(counted, timeout=30, what="the failed sync counted")

    def delta(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    assert delta('hookstream_syncs_completed_total{status="succeeded"}') == 1
    assert delta('hookstream_syncs_completed_total{status="failed"}') == 1
    assert delta('hookstream_sync_duration_seconds_count{status="succeeded"}') == 1
    assert delta('hookstream_sync_duration_seconds_count{status="failed"}') == 1
    assert delta('hookstream_sync_files_total{outcome="processed"}') == done.processed
    assert delta('hookstream_sync_files_total{outcome="skipped"}') == done.skipped
    assert delta('hookstream_sync_files_total{outcome="failed"}') == 0
    assert delta("hookstream_batch_duration_seconds_count") == 150
    assert delta('hookstream_sync_requests_answered_total{answer="started"}') == 2
    # Gauges refresh every few seconds: nothing runs or waits once both jobs are done.
    idle = await wait_until(lambda: _idle_gauges(worker), timeout=30, what="the sync gauges back at 0")
    assert idle['hookstream_sync_running_batches{state="planned"}'] == 0
    assert 'hookstream_consumer_lag{stage="deduplicate_deliveries"}' in after
    assert "hookstream_dead_letters_open" in after


async def _idle_gauges(worker):
    m = await metrics(worker)
    return m if m.get("hookstream_syncs_running") == 0 and m.get("hookstream_syncs_queued") == 0 else None


# --- the console, in a real browser --------------------------------------------------------------


async def signed_push(settings, ingress: str, delivery_id: str, body: bytes, event: str = "push") -> dict[str, str]:
    from app.plugins import get_plugin

    instance = settings.instances()[("github", "gh")]
    headers = get_plugin("github").sign(body, instance, time.time(), delivery_id=delivery_id, event=event)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{ingress}/hooks/github/gh", data=body, headers=headers) as r,
    ):
        assert r.status == 202, await r.text()
    return headers


async def test_the_console_shows_a_pushed_job_running_then_completed_and_the_deliverys_trace(stack, web, tmp_path):
    from playwright.async_api import async_playwright, expect

    settings, worker = stack
    ingress, console, _ = web
    chromium = shutil.which("chromium")
    assert chromium, "the browser test needs Debian's chromium: apt-get install -y --no-install-recommends chromium"
    repo = tmp_path / "repo"
    base, head = gitrepo.build_repo(repo, commits=[gitrepo.synthetic_files(800, seed=21), {"README.md": b"# pushed\n"}])
    source = "github:4343"  # a git mirror carrying the GitHub repository's id
    await send_control(settings, connected(source, repo))
    # A forced push: the job lists every file (800 of them, 80 batches).
    await signed_push(
        settings, ingress, "browser-push-1", github_push(4343, base, head, modified=["README.md"], forced=True)
    )

    async def running_job():
        rows = await query(settings, "SELECT job_id, status FROM sync_jobs WHERE source_id = %s", (source,))
        return rows[0]["job_id"] if rows and rows[0]["status"] == "running" else None

    job_id = await wait_until(running_job, timeout=60, interval=0.05, what="the pushed job running")
    # Hold the worker still while the browser looks: the job is running, whatever the machine's speed.
    os.kill(worker.child.process.pid, signal.SIGSTOP)
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=chromium,
                args=[
                    "--no-sandbox",
                    "--headless",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                ],
            )
            try:
                page = await browser.new_page()
                await page.goto(f"{console}/sources")
                row = page.locator("tr", has_text=source)
                await expect(row.locator(".status.running")).to_have_text("running")
                await row.get_by_role("link", name=job_id).click()
                await expect(page.locator("h1")).to_have_text(f"Job {job_id}")
                await expect(page.locator("td .status").first).to_have_text("running")
                os.kill(worker.child.process.pid, signal.SIGCONT)
                # The page refreshes itself until the job is final.
                await expect(page.locator("td .status").first).to_have_text("succeeded", timeout=90_000)
                (done,) = await completions(settings, source, alive=worker.alive)
                assert (
                    done.processed + done.skipped
                    == len(gitrepo.tree_of(repo, head))
                    == len(await documents(settings, source))
                )
                await expect(page.locator(".counts .processed")).to_have_text(str(done.processed))
                await expect(page.locator("progress")).to_have_attribute("value", str(done.batches))
                # The delivery's trace, from the job's request.
                await page.get_by_role("link", name="browser-push-1").click()
                await expect(page.locator("h1")).to_have_text("Trace browser-push-1")
                chain = page.locator("table").last
                for kind in (
                    "delivery",
                    "delivery.outcome",
                    "sync.requested",
                    "sync.started",
                    "sync.planned",
                    "batch.completed",
                    "sync.completed",
                ):
                    await expect(chain.locator("td", has_text=kind).first).to_be_visible()
                await expect(
                    page.get_by_text("routed (first sighting): sync.requested for github:4343")
                ).to_be_visible()
            finally:
                await browser.close()
    finally:
        os.kill(worker.child.process.pid, signal.SIGCONT)


# --- logs ----------------------------------------------------------------------------------------


async def test_logs_are_json_lines_a_line_per_job_change_with_its_ids_and_never_a_secret_or_signature(stack, web):
    """Runs after the module's syncs: their job lines are in the worker's log."""
    settings, worker = stack
    ingress, console, logs = web
    body = b'{"zen": "Speak like a human.", "hook_id": 7}'
    good = await signed_push(settings, ingress, "log-ping-1", body, event="ping")
    signature = good["X-Hub-Signature-256"]
    async with aiohttp.ClientSession() as http:
        forged = {**good, "X-Hub-Signature-256": "sha256=" + "ab" * 32}
        async with http.post(f"{ingress}/hooks/github/gh", data=body, headers=forged) as r:
            assert r.status == 401
        event = {
            "type": "sync.requested",
            "source_id": "git:nowhere",
            "occurred_at": now().isoformat(),
            "request_id": "log-event-1",
            "mode": "full",
            "trigger": "manual",
        }
        for token, status in (("not-the-token", 401), (EVENTS_TOKEN, 202)):
            async with http.post(f"{ingress}/events", json=event, headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == status, await r.text()
        for token, status in (("wrong", 403), (WRITE_TOKEN, 404)):
            async with http.post(
                f"{console}/api/dlq/no-such-letter/redrive", headers={"Authorization": f"Bearer {token}"}
            ) as r:
                assert r.status == status, await r.text()
    await wait_until(
        lambda: query(settings, "SELECT 1 FROM sync_requests WHERE request_id = 'log-event-1'"),
        timeout=60,
        what="the event's request answered",
    )
    await wait_until(
        lambda: query(settings, "SELECT 1 FROM deliveries WHERE delivery_id = 'log-ping-1'"),
        timeout=60,
        what="the ping in the ledger",
    )

    texts = {"worker": worker.log_path.read_text(), **{name: path.read_text() for name, path in logs.items()}}
    for name, text in texts.items():
        for secret in (SECRET, EVENTS_TOKEN, WRITE_TOKEN, signature, signature.removeprefix("sha256=")):
            assert secret not in text, (name, secret)
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is one JSON object
        assert lines and all({"ts", "level", "logger", "message"} <= set(line) for line in lines), name
    jobs = [json.loads(line) for line in texts["worker"].splitlines() if '"hookstream.jobs"' in line]
    started = [j for j in jobs if j["event"] == "sync.started" and j["source_id"] == "github:4343"]
    assert started and started[0]["delivery_keys"] == ["github/gh/browser-push-1"]
    assert started[0]["request_ids"] == ["browser-push-1"] and started[0]["job_id"]
    coalesced = [j for j in jobs if j["event"] == "sync.coalesced" and j["source_id"] == "git:traced"]
    assert len(coalesced) == 2 and all(j["job_id"] and len(j["request_ids"]) == 1 for j in coalesced)
    completed = [j for j in jobs if j["event"] == "sync.completed" and j["source_id"] == "git:gone"]
    assert [j["status"] for j in completed] == ["failed"]
    # Nothing per delivery or per rejected request: 1,200 deliveries (400 pushes for sources nobody
    # connected) went through this worker, and it logged a few dozen lines.
    assert len(texts["worker"].splitlines()) < 100, texts["worker"][-3000:]
