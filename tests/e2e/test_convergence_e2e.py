"""Convergence end to end: signed GitHub pushes through the real ingress, a real worker, real git.

Each test replays a history as GitHub would deliver it (out of order, to a new
source, across a failed job, to several branches) and then compares the source's
documents with `git ls-tree` of the branch head, path by path and digest by
digest. Nothing the jobs report is trusted: every one of these cases once ended
with documents that matched no commit while every job said `succeeded`.
"""

from __future__ import annotations

import time
import uuid

import aiohttp
import orjson
import pytest
from pydantic import SecretStr

from app.embedded.ports import free_port
from app.instances import load_instances
from app.plugins import get_plugin
from tests.support import gitrepo
from tests.support.flows import connected, document_digests, github_push, lifecycle, send_control, settled
from tests.support.services import isolated_settings
from tests.support.stack import IngressProcess, started_worker, write_instances

SECRET = "conv-secret"


@pytest.fixture(scope="module")
async def stack(broker, postgres, tmp_path_factory):

    tmp = tmp_path_factory.mktemp("convergence")
    instances = write_instances(tmp / "instances.toml", [{"plugin": "github", "id": "gh", "secret": SECRET}])
    s = isolated_settings(
        broker.bootstrap,
        postgres.url,
        instances_file=instances,
        batch_size=20,
        ingress_port=free_port(),
        events_token=SecretStr("t"),
        deadline_check_interval_seconds=0.5,
    )
    worker = await started_worker(s, tmp)
    ingress = IngressProcess(s, tmp / "ingress.log").start()
    await ingress.ready()
    yield s, worker, ingress
    ingress.stop()
    worker.stop()


class Pusher:
    """Signs and posts push deliveries the way GitHub does; remembers their delivery ids."""

    def __init__(self, settings, ingress: IngressProcess, repo_id: int) -> None:
        self.settings, self.ingress, self.repo_id = settings, ingress, repo_id
        self.instance = load_instances(settings.instances_file)[("github", "gh")]
        self.sent: list[str] = []

    async def push(self, before: str, after: str, branch: str = "main", **changed) -> str:
        body = github_push(self.repo_id, before, after, branch=branch, **changed)
        delivery_id = str(uuid.uuid4())
        headers = get_plugin("github").sign(body, self.instance, time.time(), delivery_id=delivery_id, event="push")
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.ingress.url}/hooks/github/gh", data=body, headers=headers) as r:
                assert r.status == 202, (r.status, await r.text())
                assert orjson.loads(await r.read())["deliveryId"] == delivery_id
        self.sent.append(delivery_id)
        return delivery_id


async def assert_converged(settings, source_id: str, repo, ref: str) -> None:
    want = gitrepo.digests_at(repo, ref)
    have = await document_digests(settings, source_id)
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    wrong = sorted(p for p in set(want) & set(have) if want[p] != have[p])
    assert not (missing or extra or wrong), (
        f"{source_id} differs from {ref}: {len(missing)} missing {missing[:3]}, {len(extra)} extra {extra[:3]}, "
        f"{len(wrong)} with other content {wrong[:3]}"
    )


def move(repo, branch: str, commit: str) -> None:
    gitrepo.git(repo, "update-ref", f"refs/heads/{branch}", commit)


def history(n_files: int = 30, seed: int = 0) -> list[dict]:
    """A first commit of `n_files` files, then commits that modify, add, delete and rename."""
    files = gitrepo.synthetic_files(n_files, seed=seed, binary_every=0)
    names = sorted(files)
    return [
        files,
        {names[0]: b"second version\n", "added/in-c2.md": b"# c2\n", names[1]: None},
        {
            names[2]: b"third version\n",
            "added/in-c3.md": b"# c3\n",
            "added/in-c2.md": None,
            names[3]: None,
            "renamed/" + names[3].rsplit("/", 1)[-1]: files[names[3]],
        },
        {names[4]: b"fourth version\n", "added/in-c4.md": b"# c4\n"},
    ]


async def test_a_late_push_never_rolls_the_documents_back(stack, tmp_path):
    """Pushes 0->C1, C2->C3, then the older C1->C2 arriving last: the documents stay at C3."""
    settings, worker, ingress = stack
    repo = tmp_path / "repo"
    c1, c2, c3, _ = gitrepo.build_repo(repo, commits=history(seed=1))
    move(repo, "main", c1)
    source = "github:7001"
    await send_control(settings, connected(source, repo))
    gh = Pusher(settings, ingress, 7001)
    await gh.push("0" * 40, c1)
    await settled(settings, source, gh.sent, alive=worker.alive)
    move(repo, "main", c3)
    await gh.push(c2, c3, modified=["x"])
    await settled(settings, source, gh.sent, alive=worker.alive)
    await gh.push(c1, c2, modified=["y"])  # GitHub does not promise delivery order
    done = await settled(settings, source, gh.sent, alive=worker.alive)

    await assert_converged(settings, source, repo, "main")
    assert [c.status for c in done] == ["succeeded"] * 3
    assert done[-1].commit == c3 and done[-1].listing == "unchanged", "the late push is answered: already synced"


async def test_two_pushes_coalesced_in_swapped_order_converge_on_the_head(stack, tmp_path):
    """While a long job runs, C2->C3 then C1->C2 queue and coalesce (the last-arrived `after` is C2)."""
    settings, worker, ingress = stack
    repo = tmp_path / "repo"
    big = gitrepo.synthetic_files(2500, seed=4, binary_every=0)
    c1, c2, c3 = gitrepo.build_repo(repo, commits=[big, {"a.md": b"# a\n"}, {"b.md": b"# b\n", "a.md": None}])
    move(repo, "main", c1)
    source = "github:7002"
    await send_control(settings, connected(source, repo))
    gh = Pusher(settings, ingress, 7002)
    await gh.push("0" * 40, c1)  # a full listing of 2,500 files: the next two queue behind it
    move(repo, "main", c3)
    await gh.push(c2, c3, added=["b.md"], removed=["a.md"])
    await gh.push(c1, c2, added=["a.md"])
    done = await settled(settings, source, gh.sent, alive=worker.alive)

    await assert_converged(settings, source, repo, "main")
    assert done[-1].commit == c3 and all(c.status == "succeeded" for c in done)
    kinds = [e.type for e in await lifecycle(settings, source)]
    assert "sync.coalesced" in kinds, kinds  # the case is the coalesced one


async def test_the_first_push_to_a_new_source_writes_every_file(stack, tmp_path):
    """The source was never synced: a push's `before` is not where its documents are."""
    settings, worker, ingress = stack
    repo = tmp_path / "repo"
    c1, c2, _, _ = gitrepo.build_repo(repo, commits=history(n_files=50, seed=2))
    move(repo, "main", c2)
    source = "github:7003"
    await send_control(settings, connected(source, repo))
    gh = Pusher(settings, ingress, 7003)
    await gh.push(c1, c2, modified=["m"])
    (done,) = await settled(settings, source, gh.sent, alive=worker.alive)

    await assert_converged(settings, source, repo, "main")
    assert (done.listing, done.files_listed) == ("full", len(gitrepo.tree_of(repo, c2)))


async def test_the_changes_of_a_failed_job_are_written_by_the_next_one(stack, tmp_path):
    """A job fails (the repository is briefly gone); the next push lists everything, not its own diff."""
    settings, worker, ingress = stack
    repo = tmp_path / "repo"
    c1, c2, c3, _ = gitrepo.build_repo(repo, commits=history(seed=3))
    move(repo, "main", c1)
    source = "github:7004"
    await send_control(settings, connected(source, repo))
    gh = Pusher(settings, ingress, 7004)
    await gh.push("0" * 40, c1)
    await settled(settings, source, gh.sent, alive=worker.alive)

    move(repo, "main", c2)
    repo.rename(tmp_path / "away")
    await gh.push(c1, c2, modified=["m"])
    failed = (await settled(settings, source, gh.sent, alive=worker.alive))[-1]
    assert failed.status == "failed" and "does not exist" in (failed.error or ""), failed.error

    (tmp_path / "away").rename(repo)
    move(repo, "main", c3)
    await gh.push(c2, c3, modified=["m"])
    done = (await settled(settings, source, gh.sent, alive=worker.alive))[-1]

    await assert_converged(settings, source, repo, "main")
    assert (done.status, done.listing, done.commit) == ("succeeded", "full", c3)


async def test_pushes_to_a_branch_the_source_does_not_track_are_ignored_by_rule(stack, tmp_path):
    """Connected with branch `stable`: pushes to main are answered `ignored`; the documents follow stable."""
    settings, worker, ingress = stack
    repo = tmp_path / "repo"
    c1, c2, c3, c4 = gitrepo.build_repo(repo, commits=history(seed=5))
    move(repo, "stable", c2)
    move(repo, "main", c4)
    source = "github:7005"
    await send_control(settings, connected(source, repo, branch="stable"))
    gh = Pusher(settings, ingress, 7005)
    await gh.push(c3, c4, branch="main", modified=["m"])
    await gh.push(c1, c2, branch="stable", modified=["m"])
    done = await settled(settings, source, gh.sent, alive=worker.alive)

    await assert_converged(settings, source, repo, "stable")
    assert [c.commit for c in done] == [c2]
    ignored = [e for e in await lifecycle(settings, source) if e.type == "sync.ignored"]
    assert [(e.request_ids, e.rule) for e in ignored] == [([gh.sent[0]], "push.untracked_branch")]

    # Moving the tracked branch is a config change: a full sync of the new branch, at once.
    await send_control(settings, connected(source, repo, branch="main"))
    await gh.push(c3, c4, branch="main", modified=["m"])
    await settled(settings, source, gh.sent, alive=worker.alive)
    await assert_converged(settings, source, repo, "main")
