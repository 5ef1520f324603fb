"""What the topics and PostgreSQL say happened, against what the provider was told and what git says.

`settle` waits (bounded) until every acknowledged request is answered, every
started job has completed and the read model holds every completion. `check`
then reads the topics afresh and PostgreSQL and computes one row of figures:

- acknowledged: 2xx answers the provider got (redeliveries included);
- lost: acknowledged requests whose delivery is not in Kafka, or that were never
  routed, or never answered (run, coalesced into a run, or deduplicated by a live
  idempotency key);
- routed twice: request ids routed from two different delivery messages (a replay
  of the same message at the same offset is allowed: DeliveryRef says which);
- syncs twice: request ids served by two different jobs;
- docs differing: per source, paths whose PostgreSQL row differs from
  `git ls-tree` of the repository's branch head at the end (path set and content
  digest: the convergence invariant, read from git alone), or from what the jobs'
  own listings say the rows should be (missing, extra, other content, other job);
- counts differing: jobs whose `sync.completed` counts differ from an oracle that
  replays the jobs in order against git itself (a job whose plan's base is an
  ancestor of its commit lists `git diff-tree base..commit`, nothing when they are
  equal; any other lists `ls-tree` of its commit plus the paths the previous jobs
  left that the commit no longer has), or from its `sync_jobs` row, or whose rows
  in `documents` are not the ones the oracle attributes to it, or that completed
  twice with different records, or did not succeed, or moved the documents back
  to an older commit than the one before it.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from app.events import (
    PlanRequested,
    SyncCompleted,
    SyncDeduplicated,
    SyncIgnored,
    SyncRejected,
    SyncRequested,
    SyncStarted,
)
from app.settings import Settings
from tests.faults.harness import FaultStack, TopicTail, read_topics
from tests.faults.load import MirrorRepo, Provider
from tests.support import gitrepo
from tests.support.services import wait_until

CONTROL = "hookstream.sync.control"
EVENTS = "hookstream.sync.events"
COMPLETED = "hookstream.sync.completed"
PLANS = "hookstream.sync.plans"
DELIVERIES = "hookstream.deliveries"
DLQ = "hookstream.dlq"
TAILED = (CONTROL, EVENTS, COMPLETED)

# Every scenario's row, printed as a table at the end of the session (conftest.py).
FIGURES: list[Figures] = []

COLUMNS = (
    "scenario",
    "acknowledged",
    "lost",
    "routed twice",
    "syncs twice",
    "docs differing",
    "counts differing",
    "seconds",
)


@dataclass
class Figures:
    scenario: str
    acknowledged: int = 0
    lost: int = 0
    routed_twice: int = 0
    syncs_twice: int = 0
    docs_differing: int = 0
    counts_differing: int = 0
    seconds: float = 0.0
    details: list[str] = field(default_factory=list)

    def cells(self) -> tuple:
        return (
            self.scenario,
            self.acknowledged,
            self.lost,
            self.routed_twice,
            self.syncs_twice,
            self.docs_differing,
            self.counts_differing,
            f"{self.seconds:.1f}",
        )

    @property
    def clean(self) -> bool:
        return not (self.lost or self.routed_twice or self.syncs_twice or self.docs_differing or self.counts_differing)


def table(rows: list[Figures]) -> list[str]:
    cells = [COLUMNS] + [tuple(str(c) for c in r.cells()) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


# -- waiting for the system to finish what it was given ---------------------------------------


def _answered(tail: TopicTail, sources: set[str]) -> tuple[set[str], set[str], set[str], set[str]]:
    """(routed request ids, answered request ids, started job ids, completed job ids) of `sources`."""
    routed = {r.request_id for r in tail.records[CONTROL] if isinstance(r, SyncRequested) and r.source_id in sources}
    answered: set[str] = set()
    started: set[str] = set()
    for e in tail.records[EVENTS]:
        if e.source_id not in sources:
            continue
        if isinstance(e, (SyncDeduplicated, SyncRejected, SyncIgnored)):
            answered.update(e.request_ids)
        elif isinstance(e, SyncStarted):
            started.add(e.job_id)
    completed = set()
    for c in tail.records[COMPLETED]:
        if c.source_id in sources:
            answered.update(c.request_ids)
            completed.add(c.job_id)
    return routed, answered, started, completed


async def settle(
    stack: FaultStack, tail: TopicTail, provider: Provider, repos: list[MirrorRepo], timeout: float = 90.0
) -> str:
    """Wait until the system has done everything it acknowledged; returns what was still open on timeout."""
    sources = {r.source_id for r in repos}
    requests = set(provider.accepted)
    state = {"open": ""}

    async def done() -> bool:
        if not stack.workers or not any(w.alive() for w in stack.workers):
            raise AssertionError(f"no worker is alive\n{stack.log_tails()}")
        routed, answered, started, completed = _answered(tail, sources)
        unrouted, unanswered, running = requests - routed, requests - answered, started - completed
        if unrouted or unanswered or running:
            state["open"] = f"{len(unrouted)} unrouted, {len(unanswered)} unanswered, {len(running)} running jobs"
            return False
        projected = await _projected_jobs(stack.settings, completed)
        if projected < len(completed):
            state["open"] = f"sync_jobs has {projected} of {len(completed)} completed jobs"
            return False
        return True

    try:
        await wait_until(done, timeout=timeout, interval=0.25, what="every acknowledged request answered")
    except AssertionError as exc:
        return f"not settled: {state['open']} ({exc})"
    return ""


async def _projected_jobs(settings: Settings, job_ids: set[str]) -> int:
    if not job_ids:
        return 0
    async with await _connect(settings) as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) FROM sync_jobs WHERE job_id = ANY(%s) AND status IN ('succeeded','failed','cancelled','timed_out')",
                (list(job_ids),),
            )
        ).fetchone()
    return row[0]


async def _connect(settings: Settings) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(
        settings.database_url, options=f"-c search_path={settings.database_schema}"
    )


# -- git, read independently of app.sources ----------------------------------------------------


class GitOracle:
    """Trees, diffs and blob digests of one repository, cached."""

    def __init__(self, path: Path, max_text_bytes: int) -> None:
        self.path = path
        self.max_text_bytes = max_text_bytes
        self._blobs: dict[str, tuple[str, int, bool]] = {}

    def tree(self, commit: str) -> dict[str, str]:
        return {p: oid for p, (_, oid, _) in gitrepo.tree_of(self.path, commit).items()}

    def diff(self, before: str, after: str) -> tuple[dict[str, str], list[str]]:
        """(path -> new blob id, deleted paths) of `git diff-tree -r --no-renames before after`."""
        out = gitrepo.git(self.path, "diff-tree", "-r", "-z", "--no-renames", before, after)
        fields = out.split(b"\0")[:-1]  # every field ends with a NUL
        upserts: dict[str, str] = {}
        deletes: list[str] = []
        for meta, raw_path in zip(fields[0::2], fields[1::2], strict=True):
            _, new_mode, _, new_oid, _ = meta[1:].split(b" ", 4)
            path = raw_path.decode("utf-8", "backslashreplace")
            if new_mode == b"000000":
                deletes.append(path)
            else:
                upserts[path] = new_oid.decode()
        return upserts, deletes

    def is_commit(self, ref: str | None) -> bool:
        if not ref:
            return False
        try:
            gitrepo.git(self.path, "cat-file", "-e", f"{ref}^{{commit}}")
            return True
        except RuntimeError:
            return False

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        try:
            gitrepo.git(self.path, "merge-base", "--is-ancestor", ancestor, descendant)
            return True
        except RuntimeError:
            return False

    def head(self, branch: str = "main") -> str:
        return gitrepo.git(self.path, "rev-parse", f"refs/heads/{branch}").decode().strip()

    def blobs(self, oids) -> dict[str, tuple[str, int, bool]]:
        """oid -> (sha256, size, skipped as binary or oversize) of each blob."""
        missing = sorted({o for o in oids if o not in self._blobs})
        if missing:
            out = gitrepo.git(self.path, "cat-file", "--batch", input="".join(o + "\n" for o in missing).encode())
            pos = 0
            for oid in missing:
                header_end = out.index(b"\n", pos)
                _, kind, size = out[pos:header_end].split()
                size = int(size)
                content = out[header_end + 1 : header_end + 1 + size]
                pos = header_end + 1 + size + 1
                self._blobs[oid] = (hashlib.sha256(content).hexdigest(), size, _skipped(content, self.max_text_bytes))
        return {o: self._blobs[o] for o in oids}


def _skipped(content: bytes, max_text_bytes: int) -> bool:
    """Binary (NUL in the first 8 KiB, or not UTF-8) or oversize: stored as metadata only, counted skipped."""
    if len(content) > max_text_bytes or b"\0" in content[:8192]:
        return True
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


# -- the check --------------------------------------------------------------------------------

COUNT_FIELDS = ("files_listed", "processed", "failed", "deleted", "skipped", "documents_written", "bytes", "batches")


async def check(
    scenario: str,
    stack: FaultStack,
    provider: Provider,
    repos: list[MirrorRepo],
    started: float,
    settled: str = "",
    read_idle: float = 0.6,
) -> Figures:
    settings = stack.settings
    sources = {r.source_id: r for r in repos}
    fig = Figures(scenario, acknowledged=provider.acknowledged)
    if settled:
        fig.details.append(settled)
    topics = await read_topics(
        settings, (DELIVERIES, CONTROL, PLANS, EVENTS, COMPLETED, DLQ), idle=read_idle, timeout=120
    )

    # Lost: acknowledged, then not in Kafka, not routed, or never answered.
    in_kafka = {d.key for d, _, _ in topics[DELIVERIES]}
    routings: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for r, _, _ in topics[CONTROL]:
        if isinstance(r, SyncRequested) and r.source_id in sources:
            routings[r.request_id].add((r.delivery.partition, r.delivery.offset) if r.delivery else (-1, -1))
    answered: set[str] = set()
    for e, _, _ in topics[EVENTS]:
        if isinstance(e, (SyncDeduplicated, SyncRejected, SyncIgnored)) and e.source_id in sources:
            answered.update(e.request_ids)
            if isinstance(e, SyncRejected):
                fig.details.append(f"rejected: {e.request_ids} ({e.reason})")
    completions: dict[str, list[tuple[SyncCompleted, int, int]]] = defaultdict(list)
    for c, p, o in topics[COMPLETED]:
        if c.source_id in sources:
            completions[c.job_id].append((c, p, o))
            answered.update(c.request_ids)
    for request_id, key in provider.keys.items():
        if key not in in_kafka:
            fig.lost += 1
            fig.details.append(f"lost: {key} was acknowledged but is not in {DELIVERIES}")
        elif request_id not in routings:
            fig.lost += 1
            fig.details.append(f"lost: request {request_id} ({key}) was never routed")
        elif request_id not in answered:
            fig.lost += 1
            said = [(type(e).__name__, e.job_id, p, o) for e, p, o in topics[EVENTS] if request_id in e.request_ids]
            fig.details.append(
                f"lost: request {request_id} was routed at {sorted(routings[request_id])} "
                f"but never answered; lifecycle {said}"
            )
    if settled:
        fig.details.extend(await _diagnose_running(settings, topics, completions, sources))
        lost_jobs = {
            j for d in fig.details if d.startswith("lost: request") for j in re.findall(r"'SyncStarted', '([^']+)'", d)
        }
        for job in sorted(lost_jobs)[:2]:
            versions = [
                (type(e).__name__, len(e.request_ids), p, o, e.occurred_at.isoformat()[11:23])
                for e, p, o in topics[EVENTS]
                if e.job_id == job
            ]
            done = [(len(c.request_ids), p, o, c.started_at.isoformat()[11:23]) for c, p, o in completions.get(job, [])]
            fig.details.append(f"job {job}: lifecycle {versions}; completions {done}")
    dead = [d for d, _, _ in topics[DLQ]]
    if dead:
        fig.details.append(f"{len(dead)} dead letters, e.g. {dead[0]!r:.300}")

    # Routed twice: one request id from two different delivery messages.
    for request_id, where in routings.items():
        if len(where) > 1:
            fig.routed_twice += 1
            fig.details.append(f"routed twice: {request_id} from {sorted(where)}")

    # Syncs twice: one request id served by two jobs.
    served: dict[str, set[str]] = defaultdict(set)
    for job_id, copies in completions.items():
        for request_id in copies[0][0].request_ids:
            served[request_id].add(job_id)
    for request_id, jobs in served.items():
        if len(jobs) > 1:
            fig.syncs_twice += 1
            fig.details.append(f"synced twice: {request_id} by {sorted(jobs)}")

    plans: dict[str, PlanRequested] = {}
    for plan, _, _ in topics[PLANS]:
        if plan.source_id in sources and plan.job_id not in plans:
            plans[plan.job_id] = plan
    rows = await _documents(settings, set(sources))
    jobs_rows = await _sync_jobs(settings, set(completions))
    bad_jobs: set[str] = set()
    for source_id, repo in sources.items():
        ordered = sorted(
            (copies[0][1], copies[0][2], job_id)
            for job_id, copies in completions.items()
            if copies[0][0].source_id == source_id
        )
        _check_source(
            fig,
            repo,
            [completions[j] for _, _, j in ordered],
            plans,
            rows.get(source_id, {}),
            jobs_rows,
            settings,
            bad_jobs,
        )
    fig.counts_differing = len(bad_jobs)
    fig.seconds = time.monotonic() - started
    FIGURES.append(fig)
    return fig


def _check_source(
    fig: Figures,
    repo: MirrorRepo,
    jobs: list[list[tuple[SyncCompleted, int, int]]],
    plans: dict[str, PlanRequested],
    rows: dict[str, tuple[str, int, str]],
    jobs_rows: dict[str, dict],
    settings: Settings,
    bad_jobs: set[str],
) -> None:
    git = GitOracle(repo.path, settings.max_text_bytes)
    sim: dict[str, tuple[str, int, str]] = {}  # path -> (sha256, size, job id): what the rows should be
    reached: str | None = None  # the commit the last job converged to

    def bad(job_id: str, why: str) -> None:
        bad_jobs.add(job_id)
        if len([d for d in fig.details if d.startswith("counts")]) < 12:
            fig.details.append(f"counts: {job_id}: {why}")

    for copies in jobs:
        done = copies[0][0]
        job = done.job_id
        if any(c != done for c, _, _ in copies[1:]):
            bad(job, f"completed {len(copies)} times with different records")
        if done.status != "succeeded":
            bad(job, f"status {done.status}: {done.error}")
        plan = plans.get(job)
        if plan is None:
            bad(job, "no plan request on hookstream.sync.plans")
            continue
        if done.commit not in repo.commits:
            bad(job, f"commit {done.commit} is not one of the repository's")
            continue
        if reached is not None and repo.commits.index(done.commit) < repo.commits.index(reached):
            bad(job, f"went back from {reached[:10]} to {done.commit[:10]}")
        reached = done.commit
        base = plan.base
        if (
            plan.mode == "incremental"
            and base is not None
            and git.is_commit(base)
            and git.is_ancestor(base, done.commit)
        ):
            upserts, deletes = git.diff(base, done.commit) if base != done.commit else ({}, [])
        else:
            upserts = git.tree(done.commit)
            deletes = sorted(set(sim) - set(upserts))
        blobs = git.blobs(upserts.values())
        skipped = sum(1 for oid in upserts.values() if blobs[oid][2])
        listed = len(upserts) + len(deletes)
        expected = {
            "files_listed": listed,
            "processed": len(upserts) - skipped,
            "failed": 0,
            "deleted": len(deletes),
            "skipped": skipped,
            "documents_written": len(upserts),
            "bytes": sum(blobs[o][1] for o in upserts.values()),
            "batches": math.ceil(listed / settings.batch_size),
        }
        reported = {f: getattr(done, f) for f in COUNT_FIELDS}
        if reported != expected:
            bad(job, f"reported {_delta(reported, expected)}")
        row = jobs_rows.get(job)
        if row is None:
            bad(job, "no sync_jobs row")
        else:
            projected = {f: row[f] for f in COUNT_FIELDS}
            if (
                projected != reported
                or row["status"] != done.status
                or sorted(row["request_ids"]) != sorted(done.request_ids)
            ):
                bad(job, f"sync_jobs row {row['status']} {_delta(projected, reported)} vs sync.completed")
                fig.details.append(f"  its completion is at (partition, offset) {[(p, o) for _, p, o in copies]}")
        for path in deletes:
            sim.pop(path, None)
        for path, oid in upserts.items():
            sim[path] = (blobs[oid][0], blobs[oid][1], job)

    # The rows against what the jobs' listings say they are, and against git ls-tree of the last commit.
    differing: set[str] = set()
    for path in set(sim) | set(rows):
        have, want = rows.get(path), sim.get(path)
        if (have[:2] if have else None) != (want[:2] if want else None):
            differing.add(path)
        elif have and want and have[2] != want[2]:
            bad(want[2], f"row {path} is attributed to {have[2]}, but this job wrote it last")
    # Convergence, from git alone: the documents are the branch head's files, whatever the jobs said.
    tree = git.tree(git.head())
    blobs = git.blobs(tree.values())
    for path in set(tree) | set(rows):
        have = rows.get(path)
        want = (blobs[tree[path]][0], blobs[tree[path]][1]) if path in tree else None
        if (have[:2] if have else None) != want:
            differing.add(path)
    if differing:
        fig.docs_differing += len(differing)
        sample = sorted(differing)[:3]
        idx = {c: i for i, c in enumerate(repo.commits)}
        trail = [
            (
                c[0][0].job_id.rsplit(":", 1)[1],
                plans[c[0][0].job_id].mode[0] if c[0][0].job_id in plans else "?",
                idx.get(plans[c[0][0].job_id].base) if c[0][0].job_id in plans else None,
                idx.get(c[0][0].commit),
            )
            for c in jobs[-6:]
        ]
        fig.details.append(
            f"  {repo.source_id}'s last jobs (offset, mode, base, commit as commit index; head "
            f"{idx.get(git.head())}): {trail}"
        )
        fig.details.append(
            f"docs: {repo.source_id}: {len(differing)} paths differ, e.g. "
            + "; ".join(
                f"{p}: row {(rows.get(p) or ('-',))[0][:10]}, jobs' oracle "
                f"{(sim.get(p) or ('-',))[0][:10]}, head {blobs[tree[p]][0][:10] if p in tree else '-'}"
                for p in sample
            )
        )


async def _diagnose_running(settings: Settings, topics: dict, completions: dict, sources) -> list[str]:
    """For a scenario that did not settle: what each job still running waits for."""
    from app.events import BatchCompleted, SyncPlanned

    started = {e.job_id: e for e, _, _ in topics[EVENTS] if isinstance(e, SyncStarted) and e.source_id in sources}
    running = sorted(set(started) - set(completions))
    if not running:
        return []
    batches = await read_topics(settings, ("hookstream.files.batches",))
    out = []
    for job in running[:3]:
        plans_ = [(p, o) for r, p, o in topics[PLANS] if r.job_id == job]
        planned = [
            (r.batch_count, p, o) for r, p, o in topics[CONTROL] if isinstance(r, SyncPlanned) and r.job_id == job
        ]
        reported = sorted(
            {r.batch_index for r, _, _ in topics[CONTROL] if isinstance(r, BatchCompleted) and r.job_id == job}
        )
        on_topic = sorted({(r.batch_index, p, o) for r, p, o in batches["hookstream.files.batches"] if r.job_id == job})
        missing = [b for b in on_topic if b[0] not in reported]
        out.append(
            f"running {job}: plan requests at {plans_}, planned {planned}, {len(reported)} batches reported, "
            f"{len(on_topic)} batch records, unreported {missing[:10]}"
        )
    return out


def _delta(got: dict, want: dict) -> str:
    return ", ".join(f"{k} {got[k]} (expected {want[k]})" for k in got if got[k] != want.get(k)) or "equal"


async def _documents(settings: Settings, sources: set[str]) -> dict[str, dict[str, tuple[str, int, str]]]:
    out: dict[str, dict[str, tuple[str, int, str]]] = defaultdict(dict)
    async with await _connect(settings) as conn:
        cur = await conn.execute(
            "SELECT source_id, path, sha256, size, job_id FROM documents WHERE source_id = ANY(%s)", (sorted(sources),)
        )
        for source_id, path, sha, size, job_id in await cur.fetchall():
            out[source_id][path] = (sha, size, job_id)
    return out


async def _sync_jobs(settings: Settings, job_ids: set[str]) -> dict[str, dict]:
    from psycopg.rows import dict_row

    async with await _connect(settings) as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT * FROM sync_jobs WHERE job_id = ANY(%s)", (sorted(job_ids),))
        return {r["job_id"]: r for r in await cur.fetchall()}


def assert_clean(fig: Figures, provider: Provider, stack: FaultStack) -> None:
    # The diagnosis first, then the (possibly many) lost requests one by one.
    problems = [d for d in fig.details if not d.startswith("lost: ")] + [
        d for d in fig.details if d.startswith("lost: ")
    ]
    if provider.abandoned:
        problems.append(f"{len(provider.abandoned)} deliveries never got a 2xx within the provider's bounds")
    if provider.unexpected:
        problems.append(f"unexpected answers: {provider.unexpected[:3]}")
    assert fig.clean and not provider.abandoned and not provider.unexpected, "\n".join(
        ["", *table([fig]), provider.summary(), *problems[:40], stack.log_tails()]
    )
