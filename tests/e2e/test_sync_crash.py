"""A worker killed with SIGKILL mid-sync, restarted: the same final documents and counts as an undisturbed run."""

from __future__ import annotations

from tests.support import gitrepo
from tests.support.flows import completions, connected, documents, requested, send_control
from tests.support.services import wait_until
from tests.support.stack import WorkerProcess


async def test_a_worker_killed_mid_sync_converges_on_the_undisturbed_result(settings, tmp_path):
    repo = tmp_path / "repo"
    (sha,) = gitrepo.build_repo(repo, files=gitrepo.synthetic_files(2500, seed=8))
    oracle = gitrepo.tree_of(repo, sha)
    s = settings.model_copy(update={"batch_size": 25})
    worker = WorkerProcess(s, tmp_path / "rocks", tmp_path / "worker-1.log").start()
    try:
        await send_control(s, connected("git:crash", repo), requested("git:crash", "full"))
        await wait_until(lambda: _rows_at_least(s, "git:crash", 200), timeout=90, what="a part of the sync written")
        worker.kill()
    finally:
        worker.stop()
    restarted = WorkerProcess(s, tmp_path / "rocks", tmp_path / "worker-2.log").start()
    try:
        runs = await completions(s, "git:crash", timeout=150, alive=restarted.alive)
    finally:
        restarted.stop()
    assert len(runs) == 1, runs  # exactly one completion for the job, despite the crash
    done = runs[0]
    rows = await documents(s, "git:crash")
    assert set(rows) == set(oracle)
    assert done.status == "succeeded"
    assert done.files_listed == len(oracle) == done.documents_written == len(rows)
    assert done.processed + done.skipped == len(rows) and done.failed == 0
    assert done.batches == 100


async def _rows_at_least(settings, source, n):
    return len(await documents(settings, source)) >= n
