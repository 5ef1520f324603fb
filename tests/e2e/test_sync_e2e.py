"""HTTP/Kafka in, sync.completed and PostgreSQL rows out: a real worker, broker, PostgreSQL and git."""

from __future__ import annotations

import pytest

from tests.support import gitrepo
from tests.support.flows import completions, connected, documents, requested, send_control
from tests.support.services import isolated_settings
from tests.support.stack import WorkerProcess, write_instances


@pytest.fixture(scope="module")
async def stack(broker, postgres, tmp_path_factory):
    """One worker for the module (a group join costs seconds); each test uses its own sources."""
    from app import topology
    from app.store.db import migrate

    tmp = tmp_path_factory.mktemp("stack")
    instances = write_instances(tmp / "instances.toml", [
        {"plugin": "github", "id": "gh", "secret": "s3cret"},
        {"plugin": "generic-hmac", "id": "a", "secret": "s1"},
    ])
    s = isolated_settings(broker.bootstrap, postgres.url, instances_file=instances, batch_size=20,
                          idempotency_ttl_seconds=4.0, deadline_check_interval_seconds=0.5)
    await topology.apply(s)
    await migrate(s)
    worker = WorkerProcess(s, tmp / "rocks", tmp / "worker.log").start()
    yield s, worker
    worker.stop()


def repo_with_history(path):
    """Several commits with renames, deletions and a binary file; returns (shas, final tree)."""
    files = gitrepo.synthetic_files(300, seed=3)
    first = dict(files)
    second = {"pkg00/mod00/renamed.py": files["pkg00/mod00/file_00000.py"] if "pkg00/mod00/file_00000.py" in files else b"x\n"}
    victims = sorted(files)[1:11]
    for v in victims:
        second[v] = None
    second["docs/new guide é.md"] = b"# New guide\n\nhello\n"
    second["assets/logo.png"] = b"\x89PNG\r\n\x1a\n\x00\x00binary"
    third = {sorted(files)[20]: b"changed content\n"}
    shas = gitrepo.build_repo(path, commits=[first, second, third])
    tree = {}
    for change in (first, second, third):
        for p, c in change.items():
            if c is None:
                tree.pop(p, None)
            else:
                tree[p] = c
    return shas, tree


async def test_a_full_sync_writes_exactly_the_commits_tree_and_reports_it(stack, tmp_path):
    settings, worker = stack
    shas, tree = repo_with_history(tmp_path / "repo")
    await send_control(settings, connected("git:full", tmp_path / "repo"), requested("git:full", "full"))

    (done,) = await completions(settings, "git:full", alive=worker.alive)
    rows = await documents(settings, "git:full")
    oracle = gitrepo.tree_of(tmp_path / "repo", shas[-1])
    assert set(rows) == set(oracle), worker.log_tail()
    for path, content in tree.items():
        assert rows[path][1] == len(content)
    assert done.status == "succeeded", done
    assert done.commit == shas[-1]
    assert done.files_listed == len(oracle)
    assert done.documents_written == len(rows)
    assert done.processed + done.skipped == len(rows)
    assert done.skipped == sum(1 for r in rows.values() if r[2])
    assert done.failed == 0 and done.deleted == 0
    assert done.batches == -(-len(oracle) // 20)
