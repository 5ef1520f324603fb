"""Driving syncs in tests: connect sources, request syncs, wait for completions, read documents."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import psycopg

from app import codec
from app.events import SourceConnected, SourceDisconnected, SyncRequested
from app.settings import Settings
from tests.support.kafka import produce, read_all
from tests.support.services import wait_until


def now() -> datetime:
    return datetime.now(UTC)


async def send_control(settings: Settings, *events) -> None:
    """Each event with its `occurred_at` as the record's timestamp: the fold's clock, as a producer whose
    clock says so would set it (tests move a source's clock with it: a TTL passed, a deadline missed)."""
    await produce(
        settings,
        "hookstream.sync.control",
        [(e.source_id, codec.encode(e), int(e.occurred_at.timestamp() * 1000)) for e in events],
    )


def connected(source_id: str, repo, **config) -> SourceConnected:
    return SourceConnected(
        source_id=source_id, occurred_at=now(), source_type="git", config={"path": str(repo), **config}
    )


def disconnected(source_id: str) -> SourceDisconnected:
    return SourceDisconnected(source_id=source_id, occurred_at=now(), reason="test")


def requested(
    source_id: str,
    mode: str = "full",
    trigger: str = "manual",
    request_id: str | None = None,
    occurred_at: datetime | None = None,
    **kw,
) -> SyncRequested:
    return SyncRequested(
        source_id=source_id,
        occurred_at=occurred_at or now(),
        request_id=request_id or f"r-{uuid.uuid4().hex[:12]}",
        mode=mode,
        trigger=trigger,
        **kw,
    )


async def completions(
    settings: Settings, source_id: str | None = None, at_least: int = 1, timeout: float = 90, alive=None
):
    async def ready():
        got = await read_all(settings, "hookstream.sync.completed", timeout=3, idle=0.2)
        mine = [r for _, r, _, _ in got if source_id is None or r.source_id == source_id]
        if alive is not None and not alive():
            raise AssertionError("the worker died")
        return mine if len(mine) >= at_least else None

    return await wait_until(ready, timeout=timeout, interval=0.3, what=f"{at_least} sync.completed for {source_id}")


async def lifecycle(settings: Settings, source_id: str):
    got = await read_all(settings, "hookstream.sync.events", timeout=3, idle=0.3)
    return [r for _, r, _, _ in got if r.source_id == source_id]


async def documents(settings: Settings, source_id: str) -> dict[str, tuple[str, int, bool]]:
    """path -> (sha256, size, is_binary) of the source's rows."""
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, options=f"-c search_path={settings.database_schema}"
    ) as conn:
        rows = await (
            await conn.execute("SELECT path, sha256, size, is_binary FROM documents WHERE source_id = %s", (source_id,))
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


async def document_digests(settings: Settings, source_id: str) -> dict[str, str]:
    """path -> sha256 of a source's rows: compared with `gitrepo.digests_at` of its branch head."""
    return {path: row[0] for path, row in (await documents(settings, source_id)).items()}


async def settled(settings: Settings, source_id: str, request_ids: list[str], timeout: float = 90, alive=None):
    """Wait until every request is answered (run and completed, coalesced into a completed job,
    deduplicated, rejected or ignored) and the source has no job still running; returns the
    source's completions. The system is then quiet for this source."""
    from app.events import SyncStarted

    async def quiet():
        if alive is not None and not alive():
            raise AssertionError("the worker died")
        done = [
            r
            for _, r, _, _ in await read_all(settings, "hookstream.sync.completed", timeout=3, idle=0.2)
            if r.source_id == source_id
        ]
        events = await lifecycle(settings, source_id)
        answered = {rid for c in done for rid in c.request_ids}
        answered |= {
            rid
            for e in events
            if e.type in ("sync.deduplicated", "sync.rejected", "sync.ignored")
            for rid in e.request_ids
        }
        running = {e.job_id for e in events if isinstance(e, SyncStarted)} - {c.job_id for c in done}
        return ("quiet", done) if set(request_ids) <= answered and not running else None

    _, done = await wait_until(
        quiet, timeout=timeout, interval=0.3, what=f"{source_id} settled ({len(request_ids)} requests)"
    )
    return done


def expected_documents(tree: dict[str, bytes]) -> dict[str, tuple[str, int]]:
    return {path: (hashlib.sha256(content).hexdigest(), len(content)) for path, content in tree.items()}


def github_push(
    repo_id: int, before: str, after: str, added=(), modified=(), removed=(), forced: bool = False, branch: str = "main"
) -> bytes:
    """A push webhook body in GitHub's documented shape (the fields routing reads)."""
    import orjson

    commit = {
        "id": after,
        "distinct": True,
        "message": "change",
        "added": list(added),
        "modified": list(modified),
        "removed": list(removed),
    }
    return orjson.dumps(
        {
            "ref": f"refs/heads/{branch}",
            "before": before,
            "after": after,
            "created": False,
            "deleted": False,
            "forced": forced,
            "compare": "",
            "commits": [commit],
            "head_commit": commit,
            "size": 1,
            "distinct_size": 1,
            "repository": {"id": repo_id, "name": "repo", "full_name": "octo/repo", "default_branch": "main"},
            "pusher": {"name": "octocat"},
            "sender": {"login": "octocat"},
        }
    )


def github_delivery(instance: str, delivery_id: str, body: bytes, event: str = "push"):
    from app.events import Delivery

    d = Delivery(
        delivery_id=delivery_id,
        plugin="github",
        instance=instance,
        received_at=now(),
        headers={"x-github-event": event, "x-github-delivery": delivery_id},
        body=body,
    )
    return d.key, codec.encode(d)


async def source_row(settings: Settings, source_id: str):
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, options=f"-c search_path={settings.database_schema}"
    ) as conn:
        cur = await conn.execute(
            "SELECT status, config_status, config_path FROM sources WHERE source_id = %s", (source_id,)
        )
        return await cur.fetchone()
