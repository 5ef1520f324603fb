"""Sync stages re-consuming records after a crash keep the documents right (found by tests/faults).

- A batch of an older job, re-consumed after a later job wrote its source, writes
  nothing: after a worker kill -9, uncommitted batches of two jobs of one source
  were re-processed in the other order (they sit on different partitions) and the
  older one brought back a path the later job had deleted.
- A job planned again lists nothing again: it publishes its kept plan. A full
  sync that names no commit was planned twice across a kill -9, at two different
  branch heads, and the two plans' batches (same keys, other files) were mixed.
"""

from __future__ import annotations

import asyncio

from app.core.documents import to_document
from app.core.jobs import job_sequence, plan_again
from app.events import FileBatch, FileChange
from app.store import plans
from app.store.db import connect
from app.sync.writing import write_batch
from tests.support.flows import documents, expected_documents
from tests.support.services import wait_until


def batch(job_id: str, upserts=(), deletes=(), source_id: str = "git:fenced") -> FileBatch:
    files = [FileChange(path=p, change="upsert") for p in upserts] + [
        FileChange(path=p, change="delete") for p in deletes
    ]
    return FileBatch(
        job_id=job_id, source_id=source_id, source_type="git", batch_index=0, batch_count=1, commit="c", files=files
    )


async def in_transaction(settings, work):
    conn = await connect(settings)
    try:
        async with conn.transaction():
            return await work(conn)
    finally:
        await conn.close()


async def write(settings, b: FileBatch, content: bytes = b"x\n"):
    docs = [to_document(f.path, content, 1024) for f in b.files if f.change == "upsert"]
    deletes = [f.path for f in b.files if f.change == "delete"]
    return await in_transaction(settings, lambda conn: write_batch(conn, b, docs, deletes))


def test_job_sequence_is_the_offset_in_the_job_id():
    assert job_sequence("github:123:456") == 456
    assert job_sequence("git:a:0") == 0
    assert job_sequence("s:local-3") is None


def test_plan_again_reuses_the_same_jobs_plan_and_skips_older_jobs():
    assert plan_again("s:7", None) == "list"
    assert plan_again("s:7", "s:7") == "reuse"
    assert plan_again("s:9", "s:7") == "list"
    assert plan_again("s:5", "s:7") == "stale"
    assert plan_again("s:local-1", "s:7") == "list"


async def test_an_older_jobs_batch_after_a_newer_job_wrote_changes_nothing(settings):
    assert await write(settings, batch("git:fenced:10", upserts=["a.md", "b.md"]), b"v1\n") == 0
    assert await write(settings, batch("git:fenced:20", upserts=["b.md"], deletes=["a.md"]), b"v2\n") == 1
    before = await documents(settings, "git:fenced")

    assert await write(settings, batch("git:fenced:10", upserts=["a.md", "b.md"]), b"v1\n") is None  # the replay
    assert await documents(settings, "git:fenced") == before
    assert set(before) == {"b.md"}


async def test_the_same_job_writes_again_and_other_sources_are_not_fenced(settings):
    assert await write(settings, batch("git:fenced:20", upserts=["a.md"])) == 0
    assert (
        await write(settings, batch("git:fenced:20", upserts=["a.md"], deletes=["z.md"])) == 1
    )  # re-processed: converges
    assert await write(settings, batch("git:other:5", upserts=["c.md"], source_id="git:other")) == 0
    assert set(await documents(settings, "git:other")) == {"c.md"}


async def test_batches_of_one_job_write_at_once_and_a_newer_job_waits_for_those_in_flight(settings):
    """The fence row is shared among the batches of the job that holds it (they write in
    parallel: `process_file_batches` runs several at once) and exclusive for a newer job."""
    assert await write(settings, batch("git:fenced:20", upserts=["a.md"]), b"v20\n") == 0  # job 20 holds the fence
    conns = [await connect(settings) for _ in range(3)]
    try:
        first, second, newer = conns

        async def open_write(conn, b: FileBatch, content: bytes):
            docs = [to_document(f.path, content, 1024) for f in b.files if f.change == "upsert"]
            return await write_batch(conn, b, docs, [f.path for f in b.files if f.change == "delete"])  # no commit

        assert await open_write(first, batch("git:fenced:20", upserts=["b.md"]), b"v20\n") == 0
        # A second batch of job 20 does not wait for the first to commit.
        assert await asyncio.wait_for(open_write(second, batch("git:fenced:20", upserts=["c.md"]), b"v20\n"), 10) == 0
        # Job 30's first batch waits for both...
        claim = asyncio.create_task(open_write(newer, batch("git:fenced:30", upserts=["a.md"]), b"v30\n"))
        await wait_until(
            lambda: lock_waits(settings, newer.info.backend_pid), timeout=10, what="job 30's batch waiting on the fence"
        )
        assert not claim.done()
        await first.commit()
        await second.commit()
        assert await asyncio.wait_for(claim, 10) == 0
        await newer.commit()
    finally:
        for conn in conns:
            await conn.close()
    # ...and job 20's batches after it write nothing.
    assert await write(settings, batch("git:fenced:20", upserts=["a.md", "d.md"]), b"v20\n") is None
    docs = await documents(settings, "git:fenced")
    assert set(docs) == {"a.md", "b.md", "c.md"}
    assert docs["a.md"] == expected_documents({"a.md": b"v30\n"})["a.md"] + (False,)


async def lock_waits(settings, pid: int) -> bool:
    row = await in_transaction(
        settings, lambda conn: _fetchone(conn, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,))
    )
    return row is not None and row[0] == "Lock"


async def _fetchone(conn, query: str, params: tuple):
    return await (await conn.execute(query, params)).fetchone()


async def test_the_first_plan_of_a_job_is_kept_and_a_later_jobs_replaces_it(settings):
    first = [
        FileChange(path="a.md", change="upsert", blob="1" * 40, size=3),
        FileChange(path="gone.md", change="delete"),
    ]
    other = [FileChange(path="b.md", change="upsert")]

    def keep(job, seq, commit, files):
        return in_transaction(settings, lambda c: plans.keep(c, "git:p", job, seq, commit, files))

    assert await in_transaction(settings, lambda c: plans.kept(c, "git:p")) is None
    kept = await keep("git:p:4", 4, "c1", first)
    assert (kept.job_id, kept.commit, kept.files) == ("git:p:4", "c1", first)
    # The same job planned again (at another branch head): the first plan stays.
    assert await keep("git:p:4", 4, "c2", other) == kept
    # An older job cannot replace it; a later one does.
    assert await keep("git:p:2", 2, "c0", other) == kept
    later = await keep("git:p:9", 9, "c3", other)
    assert (later.job_id, later.commit, later.files) == ("git:p:9", "c3", other)
    assert await in_transaction(settings, lambda c: plans.kept(c, "git:p")) == later
