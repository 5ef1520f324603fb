"""Retries before failure, with real processes: a worker child, the real broker, a real PostgreSQL,
a real git repository read by real git (through a wrapper that kills its readers), a local server
answering in GitHub's documented shapes (that fails, rate-limits and stalls on demand).

- a git reader that keeps dying is retried with backoff, and the sync completes whole;
- a source API's 5xx, 429 and timeouts are retried within the bound and the sync completes; past the
  bound the plan fails, the job ends `failed` and the plan request is dead-lettered (stage `plan`);
  once the API is back, `hookstream dlq redrive` plans it again and the row retires;
- PostgreSQL gone mid-batch for longer than the bound: the batches that could not be written count
  their files failed in the job's completion and are dead-lettered (stage `batch`); once PostgreSQL is
  back, a redrive writes them and their rows retire. Checked against git itself and the fake API's data.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import time

import aiohttp
import psycopg

from app import codec, topology
from app.embedded.postgres import EmbeddedPostgres
from app.events import FileBatch, SourceConnected
from app.store.db import migrate
from tests.faults.harness import crash_postgres, start_postgres_again, stop_postgres
from tests.integration.test_dlq_cli import hookstream
from tests.support import gitrepo
from tests.support.fake_github import FakeClock, FakeGitHub
from tests.support.flows import completions, document_digests, now, requested, send_control
from tests.support.kafka import read_all
from tests.support.services import isolated_settings, wait_until
from tests.support.stack import WorkerProcess

FAST_RETRIES = dict(retry_base_seconds=0.2, retry_max_seconds=1.0)


async def dead_letters(settings, stage: str) -> list[dict]:
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, options=f"-c search_path={settings.database_schema}", autocommit=True
    ) as conn:
        cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
        return await (
            await cursor.execute("SELECT * FROM dlq WHERE stage = %s ORDER BY dead_letter_id", (stage,))
        ).fetchall()


async def metric(worker: WorkerProcess, name: str, **labels: str) -> float:
    async with aiohttp.ClientSession() as http:
        async with http.get(worker.metrics_url) as response:
            text = await response.text()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{name}\{{{want}\}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def digests(files: dict[str, bytes]) -> dict[str, str]:
    return {path: hashlib.sha256(content).hexdigest() for path, content in files.items()}


# -- a git reader that keeps dying ------------------------------------------------------------

DYING_GIT = """#!/bin/sh
# The first {deaths} `git cat-file --batch` readers die before answering anything (an OOM kill, a
# stray signal); every other git command, and every later reader, is the real git.
case " $* " in
  *" cat-file --batch "*)
    exec 9>>"{counter}.lock"
    flock 9
    n=$(cat "{counter}" 2>/dev/null || echo 0)
    if [ "$n" -lt {deaths} ]; then
      echo $((n + 1)) > "{counter}"
      exit 1
    fi
    flock -u 9
    ;;
esac
exec {git} "$@"
"""


async def test_a_git_reader_that_keeps_dying_is_retried_and_the_sync_completes_whole(
    broker, postgres, tmp_path, monkeypatch
):
    repo = tmp_path / "repo"
    gitrepo.build_repo(repo, files=gitrepo.synthetic_files(30, seed=5))
    bin_dir, counter = tmp_path / "bin", tmp_path / "readers-died"
    bin_dir.mkdir()
    deaths = 6  # two fetches' worth: each fetch restarts its reader twice by itself, then the stage retries
    (bin_dir / "git").write_text(DYING_GIT.format(deaths=deaths, counter=counter, git=shutil.which("git")))
    (bin_dir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")  # the worker's git

    s = isolated_settings(
        broker.bootstrap, postgres.url, batch_size=50, batch_concurrency=1, retry_attempts=3, **FAST_RETRIES
    )
    await topology.apply(s)
    await migrate(s)
    worker = WorkerProcess(s, tmp_path / "rocks", tmp_path / "worker.log").start()
    try:
        await send_control(
            s,
            SourceConnected(source_id="git:dying", occurred_at=now(), source_type="git", config={"path": str(repo)}),
            requested("git:dying"),
        )
        [done] = await completions(s, "git:dying", alive=worker.alive)
        assert int(counter.read_text()) == deaths, "the readers died as many times as injected"
        head = gitrepo.git(repo, "rev-parse", "HEAD").decode().strip()
        assert (done.status, done.failed, done.processed + done.skipped) == ("succeeded", 0, 30), done
        assert await document_digests(s, "git:dying") == gitrepo.digests_at(repo, head)
        assert await metric(worker, "hookstream_transient_retries_total", stage="batch") >= 2
        assert await dead_letters(s, "batch") == []
    finally:
        worker.stop()


# -- a source API that fails, rate-limits and stalls ------------------------------------------


async def test_a_source_api_failing_past_the_bound_fails_the_plan_which_a_redrive_plans_again(
    broker, postgres, tmp_path, monkeypatch, capsys
):
    github = FakeGitHub(FakeClock(time.time()), app_id="1", public_key=None)
    await github.start()
    github.tokens["ghp_static"] = time.time() + 10**9
    files = {f"docs/{i:02d}.md": f"page {i}\n".encode() for i in range(12)}
    github.commit(files)
    s = isolated_settings(
        broker.bootstrap,
        postgres.url,
        batch_size=5,
        retry_attempts=4,
        github_api_url=github.url,
        github_token="ghp_static",
        source_http_timeout_seconds=1.0,
        **FAST_RETRIES,
    )
    await topology.apply(s)
    await migrate(s)
    worker = WorkerProcess(s, tmp_path / "rocks", tmp_path / "worker.log").start()
    connect = SourceConnected(
        source_id="github:widgets",
        occurred_at=now(),
        source_type="github",
        config={"repository": "acme/widgets", "default_branch": "main"},
    )
    try:
        # Within the bound (4 retries per request): a 503, a 429 with Retry-After, a 502, an answer too slow.
        github.fail_next(503)
        github.rate_limit_next(1, secondary_retry_after=1)
        github.fail_next(502)
        github.delays.append(2.0)
        await send_control(s, connect, requested("github:widgets", request_id="within-bound"))
        [first] = await completions(s, "github:widgets", alive=worker.alive)
        assert (first.status, first.failed, first.processed) == ("succeeded", 0, 12), first
        assert await document_digests(s, "github:widgets") == digests(files)
        assert not github.queued_failures and not github.delays

        # Past it: the head of the branch cannot be had; the job fails and its plan is dead-lettered.
        changed = {**files, "docs/new.md": b"new\n"}
        github.commit(changed, parent=github.branches["main"])
        github.fail_next(*[503] * 5)
        await send_control(s, requested("github:widgets", request_id="past-bound", force=True))
        second = (await completions(s, "github:widgets", at_least=2, alive=worker.alive))[-1]
        assert second.status == "failed" and "after 5 attempts" in second.error, second
        [row] = await wait_until(lambda: dead_letters(s, "plan"), timeout=30, what="the plan's dead letter")
        assert row["status"] == "open" and "still answering HTTP 503" in row["error"] and row["raw"]
        assert "docs/new.md" not in await document_digests(s, "github:widgets")

        # GitHub is back: the redrive plans the failed job again, its batches write, the row retires.
        code, out, err = await hookstream(s, monkeypatch, capsys, "dlq", "redrive", row["dead_letter_id"])
        assert code == 0, err

        async def retired():
            rows = await dead_letters(s, "plan")
            return rows if rows and rows[0]["status"] == "retired" else None

        await wait_until(retired, timeout=60, what="the plan's row to retire")
        await wait_until(
            lambda: _equal(s, "github:widgets", digests(changed)), timeout=30, what="the documents to be GitHub's tree"
        )
        assert worker.alive()
    finally:
        worker.stop()
        await github.stop()


async def _equal(settings, source_id: str, want: dict[str, str]) -> bool:
    return await document_digests(settings, source_id) == want


# -- PostgreSQL gone mid-batch ----------------------------------------------------------------


async def test_postgresql_gone_past_the_bound_dead_letters_its_batches_and_a_redrive_writes_them(
    broker, tmp_path, monkeypatch, capsys
):
    pg = EmbeddedPostgres(tmp_path / "pg").start()
    worker = None
    try:
        repo = tmp_path / "repo"
        gitrepo.build_repo(repo, files=gitrepo.synthetic_files(400, seed=9))
        head = gitrepo.git(repo, "rev-parse", "HEAD").decode().strip()
        want = gitrepo.digests_at(repo, head)
        # Each try of a batch's write waits up to 5 s for a connection: 2 tries, about 10 s, then it counts.
        # A write caught in its commit by the crash is retried until PostgreSQL answers (it may have
        # happened): with several batches at once, the others fail within the outage whatever the timing.
        s = isolated_settings(
            broker.bootstrap, pg.url, batch_size=5, batch_concurrency=4, retry_attempts=1, **FAST_RETRIES
        )
        await topology.apply(s)
        await migrate(s)
        worker = WorkerProcess(s, tmp_path / "rocks", tmp_path / "worker.log").start()
        await send_control(
            s,
            SourceConnected(source_id="git:pg", occurred_at=now(), source_type="git", config={"path": str(repo)}),
            requested("git:pg"),
        )

        async def midway():
            assert worker.alive(), worker.log_tail()
            return 0 < len(await document_digests(s, "git:pg")) < len(want) // 2

        await wait_until(midway, timeout=60, interval=0.05, what="the sync under way")
        await asyncio.to_thread(crash_postgres, pg)
        # The fault lasts until the worker has given up on a batch (its dead letter is on the topic:
        # PostgreSQL is down, so its row is not): longer than a batch's bounded retries.
        gave_up = await read_all(s, "hookstream.dlq", min_count=1, timeout=90, idle=0.1, alive=worker.alive)
        assert any(getattr(r, "stage", None) == "batch" for _, r, _, _ in gave_up), gave_up
        await asyncio.to_thread(start_postgres_again, pg)

        [done] = await completions(s, "git:pg", timeout=120, alive=worker.alive)
        rows = await wait_until(lambda: dead_letters(s, "batch"), timeout=60, what="the batches' dead letters")
        lost = [codec.decode(FileBatch, bytes(r["raw"])) for r in rows]
        lost_paths = {f.path for b in lost for f in b.files}
        assert lost and all("PostgreSQL unavailable" in r["error"] for r in rows), rows
        assert done.status == "succeeded" and done.failed == len(lost_paths), (done, len(lost_paths))
        have = await document_digests(s, "git:pg")
        assert have == {p: d for p, d in want.items() if p not in lost_paths}, "only what was written is there"

        code, out, err = await hookstream(s, monkeypatch, capsys, "dlq", "redrive", "--all", "--stage", "batch")
        assert code == 0, err

        async def all_retired():
            rows = await dead_letters(s, "batch")
            return all(r["status"] == "retired" for r in rows)

        await wait_until(all_retired, timeout=60, what="every batch's row to retire")
        assert await document_digests(s, "git:pg") == want
        assert worker.alive()
    finally:
        if worker is not None:
            worker.stop()
        await asyncio.to_thread(stop_postgres, pg)
