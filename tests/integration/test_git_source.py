"""The git source adapter against real repositories built with git (tests/support/gitrepo.py).

The oracles are independent of the adapter: the mappings the repository was
built from, and `git ls-tree` / `git diff --name-status` run by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.events.sync import FileChange, PlanRequested
from app.sources import Listing, SourceError, SourceOptions, get_adapter
from tests.support.gitrepo import Executable, Submodule, Symlink, build_repo, git, synthetic_files, tree_of

UNICODE_NAME = "docs/with space/naïve café «draft».md"
LATER_UNICODE_NAME = "x/ünïcödé 名前 (2).txt"


class Repo:
    """A repository and, per commit, the files it must contain (path -> bytes)."""

    def __init__(self, path: Path, shas: list[str], states: list[dict[str, bytes]]) -> None:
        self.path, self.shas, self.states = path, shas, states


def _apply(state: dict[str, bytes], changes: dict) -> dict[str, bytes]:
    state = dict(state)
    for name, change in changes.items():
        if change is None:
            state.pop(name, None)
        elif isinstance(change, bytes):
            state[name] = change
        elif isinstance(change, Executable):
            state[name] = change.content
        elif isinstance(change, Symlink):
            state[name] = change.target.encode()
        elif isinstance(change, Submodule):
            state.pop(name, None)  # not a file
    return state


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    rng = random.Random(7)
    base = synthetic_files(400, seed=1)
    first = dict(base)
    first.update(
        {
            UNICODE_NAME: "# Naïve café\n\nbody\n".encode(),
            "bin/run.sh": Executable(b"#!/bin/sh\necho hi\n"),
            "link-to-readme": Symlink("docs/README.md"),
            "docs/README.md": b"# Readme\n",
            "empty.txt": b"",
            "no-newline.txt": b"abc",
            "big.bin": rng.randbytes(300_000) + b"\0\n\0",  # larger than a pipe buffer
            "dir/rename-me.py": b"print('moving')\n",
        }
    )
    names = sorted(base)
    second = {name: base[name] + b"\n# modified\n" for name in names[:12]}
    second.update({name: None for name in names[12:20]})
    second.update(
        {
            "dir/rename-me.py": None,
            "dir2/renamed.py": b"print('moving')\n",  # a rename: same content, new path
            "images/logo.png": b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + rng.randbytes(2000),
            "empty.txt": b"not empty any more\n",
        }
    )
    third = {
        names[0]: b"modified again\n",
        UNICODE_NAME: None,
        LATER_UNICODE_NAME: "ünïcödé\n".encode(),
        names[30]: None,
    }

    path = tmp_path_factory.mktemp("gitsrc") / "repo"
    shas = build_repo(path, commits=[first, second])
    # A submodule entry, which is never a file, added in the third commit.
    third["vendor/lib"] = Submodule(shas[0])
    shas += build_repo(path, commits=[third])
    states = []
    state: dict[str, bytes] = {}
    for changes in (first, second, third):
        state = _apply(state, changes)
        states.append(state)
    return Repo(path, shas, states)


def plan(repo: Repo, mode: str = "full", base: str | None = None, after: str | None = None, **config) -> PlanRequested:
    return PlanRequested(
        job_id="job-1",
        source_id="git:test",
        source_type="git",
        source_config={"path": str(repo.path), **config},
        mode=mode,
        base=base,
        after=after,
        requested_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def pinned(repo: Repo, index: int) -> str:
    """A branch at commit `index`: the adapter lists a branch's head, whatever a request names."""
    git(repo.path, "branch", "-f", f"at-{index}", repo.shas[index])
    return f"at-{index}"


async def listing_of(repo: Repo, request: PlanRequested, options: SourceOptions | None = None):
    async with get_adapter("git", request.source_config, options) as adapter:
        return await adapter.list_changes(request)


async def fetch_all(adapter, files: list[FileChange]) -> dict[str, tuple[bytes | None, str | None]]:
    out = {}
    async with contextlib.aclosing(adapter.fetch(files)) as fetched:
        async for change, content, error in fetched:
            assert change.path not in out, f"{change.path} fetched twice"
            out[change.path] = (content, error)
    return out


@pytest.mark.parametrize("index", [0, 1, 2])
async def test_full_listing_equals_git_ls_tree_of_the_commit(repo, index):
    listing = await listing_of(repo, plan(repo, branch=pinned(repo, index)))

    assert listing.kind == "full" and listing.commit == repo.shas[index]
    assert all(f.change == "upsert" for f in listing.files)
    listed = {f.path: (f.blob, f.size) for f in listing.files}
    assert len(listed) == len(listing.files), "a path listed twice"
    assert listed == {p: (oid, size) for p, (_mode, oid, size) in tree_of(repo.path, repo.shas[index]).items()}
    assert set(listed) == set(repo.states[index])


async def test_full_listing_never_lists_a_submodule(repo):
    listing = await listing_of(repo, plan(repo))
    assert "vendor/lib" not in {f.path for f in listing.files}
    assert b"160000 commit" in git(repo.path, "ls-tree", "-r", repo.shas[2], "vendor")


async def test_the_listing_is_of_the_configured_branch_or_head_whatever_the_request_names(repo):
    git(repo.path, "branch", "-f", "older", repo.shas[0])

    assert (await listing_of(repo, plan(repo))).commit == repo.shas[-1]
    older = await listing_of(repo, plan(repo, branch="older"))
    assert older.commit == repo.shas[0]
    assert {f.path for f in older.files} == set(repo.states[0])
    # A request's `after` is a lower bound only: never a commit to list, even a newer one.
    assert (await listing_of(repo, plan(repo, after=repo.shas[-1], branch="older"))).commit == repo.shas[0]


def _expected_changes(old: dict[str, bytes], new: dict[str, bytes]) -> tuple[set[str], set[str]]:
    upserts = {p for p in new if old.get(p) != new[p]}
    deletes = set(old) - set(new)
    return upserts, deletes


@pytest.mark.parametrize("before, after", [(0, 1), (1, 2), (0, 2)])
async def test_incremental_listing_has_exactly_the_adds_modifies_and_deletes(repo, before, after):
    listing = await listing_of(repo, plan(repo, "incremental", repo.shas[before], branch=pinned(repo, after)))

    assert listing.kind == "diff" and listing.commit == repo.shas[after]
    upserts = {f.path for f in listing.upserts}
    deletes = {f.path for f in listing.deletes}
    assert (upserts, deletes) == _expected_changes(repo.states[before], repo.states[after])
    # Blob ids and sizes are those of the new commit; deletes carry none.
    tree = tree_of(repo.path, repo.shas[after])
    assert {f.path: (f.blob, f.size) for f in listing.upserts} == {p: tree[p][1:] for p in upserts}
    assert all(f.blob is None for f in listing.deletes)
    # The same answer as git's own name-status diff.
    out = git(repo.path, "diff", "--name-status", "-z", "--no-renames", repo.shas[before], repo.shas[after])
    fields = out.split(b"\0")[:-1]
    by_status = {(s.decode(), p.decode()) for s, p in zip(fields[::2], fields[1::2], strict=True)}
    assert deletes == {p for s, p in by_status if s == "D"}
    # git's diff names the submodule too; it is not a file, so never a document.
    assert upserts == {p for s, p in by_status if s in ("A", "M", "T")} - {"vendor/lib"}


async def test_a_rename_is_a_delete_and_an_add(repo):
    listing = await listing_of(repo, plan(repo, "incremental", repo.shas[0], branch=pinned(repo, 1)))
    by_path = {f.path: f for f in listing.files}
    assert by_path["dir/rename-me.py"].change == "delete"
    assert by_path["dir2/renamed.py"].change == "upsert"


async def test_documents_at_the_head_already_list_nothing(repo):
    listing = await listing_of(
        repo, plan(repo, "incremental", repo.shas[1], after=repo.shas[0], branch=pinned(repo, 1))
    )
    assert listing.kind == "unchanged" and listing.files == [] and listing.commit == repo.shas[1]


async def test_documents_ahead_of_a_branch_moved_back_list_everything_at_its_head(repo):
    """A force push back to an older commit: the documents' commit is not in the head's history."""
    listing = await listing_of(repo, plan(repo, "incremental", repo.shas[2], branch=pinned(repo, 0)))
    assert listing.kind == "full" and "force push" in listing.reason
    assert {f.path for f in listing.files} == set(repo.states[0])


@pytest.mark.parametrize("base", [None, "0" * 40, "deadbeef" * 5, "no-such-ref", "--output=/tmp/x"])
async def test_an_unknown_base_lists_everything(repo, base):
    listing = await listing_of(repo, plan(repo, "incremental", base, branch=pinned(repo, 2)))

    assert listing.kind == "full" and listing.reason
    assert {f.path for f in listing.files} == set(repo.states[2])


async def test_a_blob_as_base_lists_everything(repo):
    blob = tree_of(repo.path, repo.shas[0])["docs/README.md"][1]
    listing = await listing_of(repo, plan(repo, "incremental", blob, branch=pinned(repo, 2)))
    assert listing.kind == "full"


async def test_a_full_request_lists_everything_even_when_the_documents_are_at_the_head(repo):
    listing = await listing_of(repo, plan(repo, "full", repo.shas[2]))
    assert listing.kind == "full" and {f.path for f in listing.files} == set(repo.states[2])


async def test_fetch_returns_byte_exact_content_for_every_blob(repo):
    async with get_adapter("git", {"path": str(repo.path)}) as adapter:
        for index, sha in enumerate(repo.shas):
            listing = Listing(await adapter.list_full(sha), sha, "full")
            fetched = await fetch_all(adapter, listing.files)
            assert {p: c for p, (c, _e) in fetched.items()} == repo.states[index]
            assert all(error is None for _c, error in fetched.values())


async def test_fetch_skips_deletes_and_reports_a_missing_blob_per_file(repo):
    good = FileChange(
        path="docs/README.md", change="upsert", blob=tree_of(repo.path, repo.shas[0])["docs/README.md"][1]
    )
    missing = FileChange(path="ghost.txt", change="upsert", blob="1" * 40)
    bogus = FileChange(path="bogus.txt", change="upsert", blob="HEAD\nmaster")
    tree = FileChange(
        path="a-tree", change="upsert", blob=git(repo.path, "rev-parse", f"{repo.shas[0]}^{{tree}}").decode().strip()
    )
    deleted = FileChange(path="gone.txt", change="delete")
    async with get_adapter("git", {"path": str(repo.path)}) as adapter:
        fetched = await fetch_all(adapter, [good, missing, deleted, bogus, tree])

    assert fetched["docs/README.md"] == (b"# Readme\n", None)
    for path, word in (("ghost.txt", "missing"), ("bogus.txt", "blob id"), ("a-tree", "not a blob")):
        content, error = fetched[path]
        assert content is None and word in error
    assert "gone.txt" not in fetched


async def test_one_cat_file_process_serves_a_whole_batch(repo, tmp_path):
    log = tmp_path / "git-calls.log"
    wrapper = tmp_path / "git-wrapper"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec git "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    options = SourceOptions(git_binary=str(wrapper))

    async with get_adapter("git", {"path": str(repo.path)}, options) as adapter:
        listing = Listing(await adapter.list_full(repo.shas[1]), repo.shas[1], "full")
        log.write_text("")
        fetched = await fetch_all(adapter, listing.files)

    assert len(fetched) == len(listing.files) > 400
    calls = log.read_text().splitlines()
    assert [c for c in calls if "cat-file" in c] == [f"-C {repo.path} cat-file --batch"]
    assert len(calls) <= 2, calls  # the batch process, and at most one repository check


async def test_a_consumer_that_stops_early_leaves_no_process_behind(repo):
    async with get_adapter("git", {"path": str(repo.path)}) as adapter:
        listing = await adapter.list_changes(plan(repo))
        async with contextlib.aclosing(adapter.fetch(listing.files)) as fetched:
            async for _ in fetched:
                break
    children = [p for p in os.listdir("/proc") if p.isdigit() and _parent(p) == os.getpid()]
    assert not [c for c in children if b"cat-file" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _parent(pid: str) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


async def test_a_branch_that_does_not_exist_is_a_source_error_naming_it(repo):
    with pytest.raises(SourceError, match="branch 'no-such-branch' does not exist"):
        await listing_of(repo, plan(repo, branch="no-such-branch"))


async def test_a_repository_that_went_away_is_reported_as_missing_not_as_a_bad_commit(tmp_path):
    """The adapter is kept between jobs: a check cached from the first job must not hide the cause."""
    (sha,) = build_repo(tmp_path / "r", files={"a.md": b"a\n"})
    request = plan(Repo(tmp_path / "r", [sha], []))
    async with get_adapter("git", request.source_config) as adapter:
        assert (await adapter.list_changes(request)).commit == sha
        (tmp_path / "r").rename(tmp_path / "moved")
        with pytest.raises(SourceError, match="does not exist"):
            await adapter.list_changes(request)
        with pytest.raises(SourceError, match="does not exist"):
            await fetch_all(adapter, [FileChange(path="a.md", change="upsert", blob="1" * 40)])
        (tmp_path / "moved").rename(tmp_path / "r")
        (tmp_path / "r" / ".git").rename(tmp_path / "r" / "not-git")
        with pytest.raises(SourceError, match="not a git repository"):
            await adapter.list_changes(request)


async def test_a_file_where_the_repository_should_be_is_reported_as_such(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SourceError, match="not a directory"):
        async with get_adapter("git", {"path": str(tmp_path / "file")}) as adapter:
            await adapter.list_changes(plan(Repo(tmp_path / "file", [], [])))


async def test_a_path_that_is_not_a_repository_is_a_source_error(tmp_path):
    request = PlanRequested(
        job_id="j",
        source_id="s",
        source_type="git",
        source_config={"path": str(tmp_path)},
        mode="full",
        requested_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    with pytest.raises(SourceError, match="not a git repository"):
        async with get_adapter("git", request.source_config) as adapter:
            await adapter.list_changes(request)
    with pytest.raises(SourceError, match="does not exist"):
        async with get_adapter("git", {"path": str(tmp_path / "nope")}) as adapter:
            await adapter.list_changes(request)


async def test_an_empty_repository_is_a_source_error_that_says_so(tmp_path):
    git(tmp_path, "init", "-q")
    with pytest.raises(SourceError, match="no commits"):
        async with get_adapter("git", {"path": str(tmp_path)}) as adapter:
            await adapter.list_changes(plan(Repo(tmp_path, [], []), mode="full"))


def test_bad_config_and_unknown_types_are_source_errors():
    with pytest.raises(SourceError, match="path"):
        get_adapter("git", {})
    with pytest.raises(SourceError, match="unknown source type 'svn'"):
        get_adapter("svn", {"path": "/x"})


async def test_consecutive_fetches_share_one_cat_file_process_and_an_early_stop_does_not_desync_the_next(
    repo, tmp_path
):
    log = tmp_path / "git-calls.log"
    wrapper = tmp_path / "git-wrapper"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec git "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    async with get_adapter("git", {"path": str(repo.path)}, SourceOptions(git_binary=str(wrapper))) as adapter:
        listing = Listing(await adapter.list_full(repo.shas[1]), repo.shas[1], "full")
        files = [f for f in listing.files if f.change == "upsert"]
        log.write_text("")
        first = await fetch_all(adapter, files[:50])
        second = await fetch_all(adapter, files[50:100])
        assert [c for c in log.read_text().splitlines() if "cat-file" in c] == [f"-C {repo.path} cat-file --batch"]
        # Stop in the middle of a fetch: the process is dropped, the next fetch is still exact.
        async with contextlib.aclosing(adapter.fetch(files[:50])) as fetched:
            async for _ in fetched:
                break
        again = await fetch_all(adapter, files[:50])
    assert again == first and len(second) == 50
    for path, (content, error) in again.items():
        assert error is None and content == git(repo.path, "cat-file", "blob", f"{repo.shas[1]}:{path}")


async def test_concurrent_fetches_read_with_up_to_git_readers_processes(repo, tmp_path):
    log = tmp_path / "git-calls.log"
    wrapper = tmp_path / "git-wrapper"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec git "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)

    def spawned():
        return [c for c in log.read_text().splitlines() if "cat-file --batch" in c]

    options = SourceOptions(git_binary=str(wrapper), git_readers=2)
    async with get_adapter("git", {"path": str(repo.path)}, options) as adapter:
        listing = Listing(await adapter.list_full(repo.shas[1]), repo.shas[1], "full")
        files = [f for f in listing.files if f.change == "upsert"]
        log.write_text("")
        a, b, c = (adapter.fetch(files[i : i + 50]) for i in (0, 50, 100))
        got = {}
        for gen in (a, b):  # two fetches in the middle of their batches: two processes
            change, content, _ = await anext(gen)
            got[change.path] = content
        assert len(spawned()) == 2
        third = asyncio.create_task(fetch_all_of(c))  # waits for a reader, spawns none
        for gen in (a, b):
            async for change, content, _ in gen:
                got[change.path] = content
        got.update({path: content for path, (content, _) in (await third).items()})
        assert len(spawned()) == 2
    assert len(got) == 150
    for path, content in got.items():
        assert content == git(repo.path, "cat-file", "blob", f"{repo.shas[1]}:{path}")


async def fetch_all_of(gen) -> dict:
    return {change.path: (content, error) async for change, content, error in gen}


async def test_a_reader_killed_mid_fetch_is_replaced_and_the_fetch_is_still_exact(tmp_path):
    """A supervisor's SIGTERM to the worker's process group used to kill git under a batch
    the worker then reported as every file failed (found by the redelivery-storm fault test)."""
    rng = random.Random(5)
    files = {f"big/{i:02d}.txt": bytes(rng.choice(b"abcdefgh \n") for _ in range(64 * 1024)) for i in range(40)}
    (sha,) = build_repo(tmp_path / "big", files=files)
    log = tmp_path / "git-calls.log"
    wrapper = tmp_path / "git-wrapper"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec git "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    async with get_adapter("git", {"path": str(tmp_path / "big")}, SourceOptions(git_binary=str(wrapper))) as adapter:
        listing = await adapter.list_changes(plan(Repo(tmp_path / "big", [sha], [])))
        log.write_text("")
        got = {}
        async with contextlib.aclosing(adapter.fetch(listing.files)) as fetched:
            async for change, content, error in fetched:
                if not got:  # 64 KiB read of 2.5 MiB: the reader is mid-stream
                    for pid in cat_file_children():
                        os.kill(int(pid), signal.SIGTERM)
                got[change.path] = (content, error)
    assert {path: content for path, (content, _) in got.items()} == files
    assert len([c for c in log.read_text().splitlines() if "cat-file --batch" in c]) == 2


async def test_a_repository_whose_readers_always_die_fails_the_fetch_with_gits_message(repo, tmp_path):
    wrapper = tmp_path / "git-wrapper"
    wrapper.write_text(
        '#!/bin/sh\nfor a in "$@"; do [ "$a" = "--batch" ] && { echo "fatal: out of memory" >&2; exit 128; }; done\n'
        'exec git "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    async with get_adapter("git", {"path": str(repo.path)}, SourceOptions(git_binary=str(wrapper))) as adapter:
        listing = Listing(await adapter.list_full(repo.shas[1]), repo.shas[1], "full")
        with pytest.raises(SourceError, match="out of memory.*after 2 fresh processes"):
            await fetch_all(adapter, [f for f in listing.files if f.change == "upsert"][:5])


def cat_file_children() -> list[str]:
    return [
        p
        for p in os.listdir("/proc")
        if p.isdigit() and _parent(p) == os.getpid() and b"--batch" in Path(f"/proc/{p}/cmdline").read_bytes()
    ]
