"""The load: git repositories that GitHub "pushes" to, and a provider that delivers over HTTP.

Each source is `github:<repository id>`, connected as a git mirror of a real
repository (`tests/support/gitrepo`). Every commit of its history is built up
front; "pushing" commit i moves the branch to it and delivers GitHub's push
webhook (before = commit i-1, after = commit i, the changed paths listed), so
incremental syncs diff real commits. Now and then a producer asks for a full
sync (`sync.requested` through the generic-hmac instance), which lists whatever
the branch points at when it is planned.

The `Provider` behaves like a webhook sender: it signs each delivery, retries a
503 or a broken connection with backoff (honouring Retry-After), up to a bounded
number of attempts and a bounded total time, and records every delivery it got
a 2xx for. It redelivers a fraction of what was acknowledged (GitHub's
"redeliver": same delivery id, same body), some of it at once, some held back
until the scenario releases it (after a worker restart).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from app import codec
from app.events import SourceConnected, SyncRequested
from app.instances import load_instances
from app.plugins import get_plugin
from app.settings import Settings
from tests.faults.harness import GITHUB_INSTANCE, PRODUCER_INSTANCE
from tests.support import gitrepo
from tests.support.flows import github_push


@dataclass
class MirrorRepo:
    """A repository and the `github:<id>` source that mirrors it. `changes[i]` lists what commit i changed."""

    source_id: str
    repo_id: int
    path: Path
    commits: list[str]
    changes: list[dict[str, list[str]]]

    @property
    def pushes(self) -> int:
        return len(self.commits) - 1

    def connected(self) -> SourceConnected:
        return SourceConnected(
            source_id=self.source_id,
            occurred_at=datetime.now(UTC),
            source_type="git",
            name=f"mirror {self.repo_id}",
            config={"path": str(self.path)},
        )


def build_mirror(path: Path, repo_id: int, files: int, pushes: int, seed: int) -> MirrorRepo:
    """A repository of `files` files and `pushes` more commits (each modifies two files, adds one,
    sometimes deletes one or makes a file binary); the branch is left at the first commit."""
    rng = random.Random(seed)
    tree = gitrepo.synthetic_files(files, seed=seed, max_size=3000)
    commits: list[dict] = [dict(tree)]
    changes: list[dict[str, list[str]]] = [{}]
    for i in range(1, pushes + 1):
        paths = sorted(tree)
        modified = rng.sample(paths, 2)
        change: dict[str, bytes | None] = {}
        for p in modified:
            binary = rng.random() < 0.08
            change[p] = (
                (b"\0bin %d %d" % (i, rng.randrange(10**6)))
                if binary
                else f"push {i} of {p}: {rng.random()}\n".encode()
            )
        added = f"pushed/p{i:04d}_{rng.randrange(10**6)}.md"
        change[added] = f"# push {i}\n\n{rng.random()}\n".encode()
        removed = []
        if rng.random() < 0.4 and len(paths) > 10:
            victim = rng.choice([p for p in paths if p not in modified])
            change[victim] = None
            removed.append(victim)
        for p, content in change.items():
            if content is None:
                tree.pop(p, None)
            else:
                tree[p] = content
        commits.append(change)
        changes.append({"added": [added], "modified": sorted(modified), "removed": removed})
    shas = gitrepo.build_repo(path, commits=commits)
    repo = MirrorRepo(f"github:{repo_id}", repo_id, path, shas, changes)
    move_branch(repo, 0)
    return repo


def move_branch(repo: MirrorRepo, index: int) -> None:
    """Point `main` at commit `index`, as a push to the repository would (an atomic ref file write)."""
    ref = repo.path / ".git" / "refs" / "heads" / "main"
    tmp = ref.with_name(f".main.{os.getpid()}.tmp")
    tmp.write_text(repo.commits[index] + "\n")
    os.replace(tmp, ref)


@dataclass(frozen=True)
class Outgoing:
    """One delivery as a provider sends it (a redelivery sends the very same bytes and headers)."""

    kind: str  # "push" | "manual"
    source_id: str
    request_id: str
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Traffic:
    """What one scenario sends: per source `pushes` pushes paced over `seconds`, a manual full sync
    after every `manual_every`-th push, a fraction `redeliver` of acknowledged deliveries sent again
    (`held` of those only once `release_held()` is called). A fraction `reorder` of the pushes is
    delivered late, after up to `reorder_by` later pushes of the source; a fraction `lose` is never
    delivered (GitHub gave up), but the source's last push always is: the promise is convergence on
    the branch head as of the newest accepted push."""

    pushes: int
    seconds: float
    manual_every: int = 8
    redeliver: float = 0.05
    held: float = 0.0
    reorder: float = 0.0
    reorder_by: int = 4
    lose: float = 0.0


@dataclass
class Provider:
    url: str
    settings: Settings
    seed: int = 0
    max_attempts: int = 60
    give_up_after: float = 90.0
    max_backoff: float = 2.0
    # Every 2xx answer (redeliveries included), and the first one per request id.
    acknowledged: int = 0
    accepted: dict[str, Outgoing] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    statuses: Counter = field(default_factory=Counter)
    redelivered: int = 0
    abandoned: list[Outgoing] = field(default_factory=list)
    unexpected: list[tuple[int, bytes]] = field(default_factory=list)
    sent_at: float = 0.0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.instances = load_instances(self.settings.instances_file)
        self._held = asyncio.Event()
        self._redeliveries: list[asyncio.Task] = []
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Provider:
        self.http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=15), connector=aiohttp.TCPConnector(limit=64)
        )
        return self

    async def __aexit__(self, *exc) -> None:
        self.release_held()
        for task in self._redeliveries:
            task.cancel()
        await asyncio.gather(*self._redeliveries, return_exceptions=True)
        assert self.http is not None
        await self.http.close()

    # -- what a provider sends -------------------------------------------------------------

    def push(self, repo: MirrorRepo, index: int) -> Outgoing:
        changed = repo.changes[index]
        body = github_push(
            repo.repo_id,
            repo.commits[index - 1],
            repo.commits[index],
            added=changed["added"],
            modified=changed["modified"],
            removed=changed["removed"],
        )
        delivery_id = str(uuid.UUID(int=self.rng.getrandbits(128)))
        headers = get_plugin("github").sign(
            body, self.instances[("github", GITHUB_INSTANCE)], time.time(), delivery_id=delivery_id, event="push"
        )
        return Outgoing("push", repo.source_id, delivery_id, f"/hooks/github/{GITHUB_INSTANCE}", body, headers)

    def manual(self, source_id: str, trigger: str = "manual") -> Outgoing:
        request_id = f"m-{uuid.UUID(int=self.rng.getrandbits(128)).hex[:16]}"
        event = SyncRequested(
            source_id=source_id,
            occurred_at=datetime.now(UTC),
            request_id=request_id,
            mode="full",
            trigger=trigger,
        )
        body = codec.encode(event)
        headers = get_plugin("generic-hmac").sign(
            body, self.instances[("generic-hmac", PRODUCER_INSTANCE)], time.time()
        )
        return Outgoing("manual", source_id, request_id, f"/hooks/generic-hmac/{PRODUCER_INSTANCE}", body, headers)

    # -- delivering, like a provider -------------------------------------------------------

    async def deliver(self, out: Outgoing, redelivery: bool = False) -> bool:
        """POST until a 2xx; 503 and broken connections are retried with backoff, within bounds."""
        assert self.http is not None
        deadline = time.monotonic() + self.give_up_after
        backoff = 0.1
        for _ in range(self.max_attempts):
            retry_after = 0.0
            try:
                async with self.http.post(self.url + out.path, data=out.body, headers=out.headers) as response:
                    status = response.status
                    answer = await response.read()
                    retry_after = float(response.headers.get("Retry-After", 0) or 0)
            except (TimeoutError, aiohttp.ClientError, ConnectionError):
                status, answer = 0, b""
            self.statuses[status] += 1
            if 200 <= status < 300:
                self._acknowledged(out, answer, redelivery)
                return True
            if status not in (0, 503):
                self.unexpected.append((status, answer[:300]))
                return False
            wait = min(max(backoff, retry_after), self.max_backoff)
            if time.monotonic() + wait > deadline:
                break
            await asyncio.sleep(wait)  # the provider's backoff, not a synchronization
            backoff = min(backoff * 2, self.max_backoff)
        self.abandoned.append(out)
        return False

    def _acknowledged(self, out: Outgoing, answer: bytes, redelivery: bool) -> None:
        import orjson

        self.acknowledged += 1
        self.sent_at = time.monotonic()
        if redelivery:
            self.redelivered += 1
            return
        if out.request_id not in self.accepted:
            self.accepted[out.request_id] = out
            delivery_id = orjson.loads(answer)["deliveryId"]
            plugin, instance = out.path.split("/")[2:4]
            self.keys[out.request_id] = f"{plugin}/{instance}/{delivery_id}"

    def maybe_redeliver(self, out: Outgoing, traffic: Traffic) -> None:
        if self.rng.random() >= traffic.redeliver:
            return
        held = self.rng.random() < traffic.held
        delay = self.rng.uniform(0.05, 1.5)

        async def again() -> None:
            if held:
                await self._held.wait()
            await asyncio.sleep(delay)  # the provider's own schedule
            await self.deliver(out, redelivery=True)

        self._redeliveries.append(asyncio.create_task(again()))

    def release_held(self) -> None:
        self._held.set()

    async def send(self, out: Outgoing, traffic: Traffic) -> None:
        if await self.deliver(out):
            self.maybe_redeliver(out, traffic)

    async def run(self, repos: list[MirrorRepo], traffic: Traffic) -> None:
        """Every source's initial full sync, then its pushes in order (some late, some lost), paced;
        then the redeliveries."""
        interval = traffic.seconds / max(1, traffic.pushes)
        self.lost = 0
        self.late = 0

        async def source(repo: MirrorRepo, n: int) -> None:
            start = time.monotonic() + interval * n / len(repos)
            await self.send(self.manual(repo.source_id, "initial"), traffic)
            last = min(traffic.pushes, repo.pushes)
            late: list[tuple[int, Outgoing]] = []  # (deliver after push i, the push)
            for i in range(1, last + 1):
                move_branch(repo, i)
                push = self.push(repo, i)
                roll = self.rng.random()
                if i < last and roll < traffic.lose:
                    self.lost += 1
                elif i < last and roll < traffic.lose + traffic.reorder:
                    self.late += 1
                    late.append((i + self.rng.randint(1, traffic.reorder_by), push))
                else:
                    await self.send(push, traffic)
                for due in [x for x in late if x[0] <= i]:
                    late.remove(due)
                    await self.send(due[1], traffic)
                if traffic.manual_every and i % traffic.manual_every == 0:
                    await self.send(self.manual(repo.source_id), traffic)
                delay = start + i * interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing the load, not a synchronization
            for _, push in late:  # due after the last push: later still
                await self.send(push, traffic)

        await asyncio.gather(*(source(repo, n) for n, repo in enumerate(repos)))
        self.release_held()
        await asyncio.gather(*self._redeliveries)

    def summary(self) -> str:
        return (
            f"acknowledged={self.acknowledged} unique={len(self.accepted)} redelivered={self.redelivered} "
            f"abandoned={len(self.abandoned)} statuses={dict(self.statuses)}"
        )
