"""The GitHub source adapter against a local server answering in GitHub's documented shapes.

Loopback only, no real sleeping: the client's sleep and clock are a FakeClock
shared with the server (tests/support/fake_github.py).
"""

from __future__ import annotations

import contextlib
import random
import sys
from datetime import UTC, datetime

import pytest

from app.events.sync import FileChange, PlanRequested
from app.sources import MissingExtraError, SourceError, SourceOptions, get_adapter
from tests.support.fake_github import FakeClock, FakeGitHub, blob_sha
from tests.support.gitrepo import build_repo, tree_of

APP_ID = "123456"
REPOSITORY = "acme/widgets"


@pytest.fixture(scope="module")
def app_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return pem, key.public_key()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
async def github(clock, app_key):
    server = FakeGitHub(clock, APP_ID, app_key[1], REPOSITORY, installation_id=42)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def options(github, clock, app_key):
    return SourceOptions(
        github_api_url=github.url,
        github_app_id=APP_ID,
        github_private_key=app_key[0],
        sleep=clock.sleep,
        clock=clock,
        max_retries=3,
        max_rate_limit_wait_seconds=120,
        random=lambda: 1.0,  # backoff jitter at its top: each wait is its ceiling, 1 s, 2 s, ...
    )


def sample_files(count: int = 120, seed: int = 3) -> dict[str, bytes]:
    rng = random.Random(seed)
    files = {f"src/pkg{i % 5}/mod_{i:03d}.py": f"VALUE = {i}\n".encode() for i in range(count)}
    files.update(
        {
            "README.md": b"# Widgets\n",
            "docs/with space/naïve café.md": "# Café\n".encode(),
            "assets/logo.png": b"\x89PNG\r\n\x1a\n\0" + rng.randbytes(3000),
            "empty.txt": b"",
            "deep/a/b/c/d/e/leaf.txt": b"leaf\n",
        }
    )
    return files


def plan(mode: str = "full", base: str | None = None, after: str | None = None, **config) -> PlanRequested:
    return PlanRequested(
        job_id="job-1",
        source_id="github:1296269",
        source_type="github",
        source_config={"repository": REPOSITORY, "installation_id": 42, **config},
        mode=mode,
        base=base,
        after=after,
        requested_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


async def list_and_fetch(options: SourceOptions, request: PlanRequested):
    async with get_adapter("github", request.source_config, options) as adapter:
        listing = await adapter.list_changes(request)
        fetched = {}
        async with contextlib.aclosing(adapter.fetch(listing.files)) as stream:
            async for change, content, error in stream:
                fetched[change.path] = (content, error)
    return listing, fetched


async def test_full_listing_of_the_default_branch_matches_what_git_lists_for_the_same_files(github, options, tmp_path):
    files = sample_files()
    head = github.commit(files)

    listing, fetched = await list_and_fetch(options, plan())

    assert listing.kind == "full" and listing.commit == head
    # The same files committed with real git: the same paths, blob ids and sizes.
    build_repo(tmp_path / "repo", files=files)
    git_tree = tree_of(tmp_path / "repo", "HEAD")
    assert {f.path: (f.blob, f.size) for f in listing.files} == {
        p: (oid, size) for p, (_m, oid, size) in git_tree.items()
    }
    assert {p: content for p, (content, _e) in fetched.items()} == files
    assert all(error is None for _c, error in fetched.values())
    assert any(r.startswith("GET /repos/acme/widgets/git/trees/") and "recursive=1" in r for r in github.requests)


async def test_the_installation_token_comes_from_a_verified_app_jwt_and_is_cached_until_near_expiry(
    github, options, clock
):
    github.commit(sample_files(10))

    await list_and_fetch(options, plan())
    await list_and_fetch(options, plan())  # a second adapter built from the same options

    assert len(github.tokens) == 1, "one installation token serves every adapter of these options"
    claims = github.jwt_claims[0]
    assert claims["iss"] == APP_ID and claims["exp"] - claims["iat"] <= 600
    clock.now += 3600 - 200  # inside the refresh margin: a new token is minted first
    await list_and_fetch(options, plan())
    assert len(github.tokens) == 2
    assert github.requests.count("POST /app/installations/42/access_tokens") == 2


async def test_a_wrong_private_key_is_a_readable_source_error(github, options):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    options.github_private_key = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    github.commit(sample_files(3))

    with pytest.raises(SourceError, match="refused an installation token.*HTTP 401.*JSON web token"):
        await list_and_fetch(options, plan())


async def test_a_truncated_tree_is_walked_subtree_by_subtree(github, options):
    files = sample_files(300)
    head = github.commit(files)
    # Every recursive answer over 40 entries is cut: the root and src/ are, each src/pkgN is not.
    github.truncate_recursive_over = 40

    listing, fetched = await list_and_fetch(options, plan(after=head))

    assert listing.kind == "full"
    assert sorted(f.path for f in listing.files) == sorted(files)
    assert {f.path: f.blob for f in listing.files} == {p: blob_sha(c) for p, c in files.items()}
    assert {p: c for p, (c, _e) in fetched.items()} == files
    tree_requests = [r for r in github.requests if "/git/trees/" in r]
    root = github.commits[head].tree
    assert f"GET /repos/acme/widgets/git/trees/{root.sha}" in tree_requests  # the root, non-recursively
    assert f"GET /repos/acme/widgets/git/trees/{root.trees['src'].sha}" in tree_requests  # src/ was truncated too
    assert f"GET /repos/acme/widgets/git/trees/{root.trees['src'].trees['pkg0'].sha}?recursive=1" in tree_requests


async def test_compare_turns_added_modified_removed_and_renamed_into_upserts_and_deletes(github, options):
    first = sample_files(20)
    base = github.commit(first)
    second = dict(first)
    second["src/pkg0/mod_000.py"] = b"VALUE = 'changed'\n"  # modified
    second["new/file.txt"] = b"brand new\n"  # added
    del second["empty.txt"]  # removed
    second["moved/leaf.txt"] = second.pop("deep/a/b/c/d/e/leaf.txt")  # renamed
    head = github.commit(second, parent=base)

    listing, fetched = await list_and_fetch(options, plan("incremental", base=base, after=head))

    assert listing.kind == "diff" and listing.commit == head
    assert {(f.path, f.change) for f in listing.files} == {
        ("src/pkg0/mod_000.py", "upsert"),
        ("new/file.txt", "upsert"),
        ("empty.txt", "delete"),
        ("deep/a/b/c/d/e/leaf.txt", "delete"),
        ("moved/leaf.txt", "upsert"),
    }
    assert {p: c for p, (c, _e) in fetched.items()} == {
        p: second[p] for p in ("src/pkg0/mod_000.py", "new/file.txt", "moved/leaf.txt")
    }


async def test_a_compare_listing_files_without_a_filename_is_a_source_error_naming_the_shape(github, options):
    base = github.commit(sample_files(5))
    head = github.commit({**sample_files(5), "new.txt": b"new"}, parent=base)
    github.compare_files_without = "filename"

    with pytest.raises(SourceError, match="compare lists a file in an undocumented shape"):
        await list_and_fetch(options, plan("incremental", base=base, after=head))


async def test_documents_at_the_head_list_nothing_and_ask_nothing_more(github, options):
    head = github.commit(sample_files(5))
    listing, _ = await list_and_fetch(options, plan("incremental", base=head, after=head))
    assert listing.kind == "unchanged" and listing.files == [] and listing.commit == head
    assert not [r for r in github.requests if "/compare/" in r or "/git/trees/" in r]


async def test_the_head_of_the_branch_is_the_target_not_an_older_push(github, options):
    """A late push: its `after` is older than the branch head the documents are at."""
    older = github.commit(sample_files(5))
    head = github.commit({**sample_files(5), "new.txt": b"new"}, parent=older)
    listing, _ = await list_and_fetch(options, plan("incremental", base=head, after=older))
    assert (listing.kind, listing.commit) == ("unchanged", head)


async def test_a_head_behind_the_push_that_announced_it_is_asked_again(github, options, clock):
    base = github.commit(sample_files(5))
    head = github.commit({**sample_files(5), "new.txt": b"new"}, parent=base)
    github.lagging_head_answers = 2  # a replica that has not seen the push yet, twice

    listing, _ = await list_and_fetch(options, plan("incremental", base=base, after=head))

    assert (listing.kind, listing.commit) == ("diff", head)
    assert [f.path for f in listing.files] == ["new.txt"]
    assert clock.sleeps[-2:] == [1.0, 2.0]


@pytest.mark.parametrize("base", [None, "0" * 40, "f" * 40])
async def test_an_unknown_base_lists_everything(github, options, base):
    files = sample_files(15)
    head = github.commit(files)

    listing, _ = await list_and_fetch(options, plan("incremental", base=base, after=head))

    assert listing.kind == "full" and listing.reason
    assert {f.path for f in listing.files} == set(files)


async def test_a_base_that_is_not_an_ancestor_lists_everything(github, options):
    """A force push: the branch head no longer contains the commit the documents are at."""
    root = github.commit(sample_files(5))
    side = github.commit({**sample_files(5), "side.txt": b"x"}, parent=root, branch="side")
    head = github.commit({**sample_files(5), "main.txt": b"y"}, parent=root)

    listing, _ = await list_and_fetch(options, plan("incremental", base=side, after=head))

    assert listing.kind == "full" and "diverged" in listing.reason
    assert "main.txt" in {f.path for f in listing.files} and "side.txt" not in {f.path for f in listing.files}


async def test_a_compare_at_githubs_300_file_cap_falls_back_to_full(github, options):
    base = github.commit({"a.txt": b"a"})
    many = {f"gen/f{i:04d}.txt": b"%d" % i for i in range(350)}
    head = github.commit(many, parent=base)

    listing, _ = await list_and_fetch(options, plan("incremental", base=base, after=head))

    assert listing.kind == "full" and "300" in listing.reason
    assert {f.path for f in listing.files} == set(many)


async def test_a_primary_rate_limit_waits_for_the_reset_and_retries(github, options, clock):
    files = sample_files(10)
    github.commit(files)
    github.rate_limit_next(1, reset_in=30)

    listing, fetched = await list_and_fetch(options, plan())

    assert {f.path for f in listing.files} == set(files) and len(fetched) == len(files)
    assert clock.sleeps == [31.0], "waited until x-ratelimit-reset, plus a second"


async def test_a_secondary_rate_limit_honours_retry_after(github, options, clock):
    github.commit(sample_files(3))
    github.rate_limit_next(2, secondary_retry_after=7)

    await list_and_fetch(options, plan())

    assert clock.sleeps == [7.0, 7.0]


async def test_a_rate_limit_that_does_not_lift_is_a_source_error_after_bounded_retries(github, options, clock):
    github.commit(sample_files(3))
    github.rate_limit_next(10, reset_in=5)

    with pytest.raises(SourceError, match="still rate limited.*after 4 attempts"):
        await list_and_fetch(options, plan())
    assert len(clock.sleeps) == 3


async def test_a_reset_too_far_away_fails_at_once_without_waiting(github, options, clock):
    github.commit(sample_files(3))
    github.rate_limit_next(1, reset_in=3600)

    with pytest.raises(SourceError, match="resets in 3601s, longer than the 120s"):
        await list_and_fetch(options, plan())
    assert clock.sleeps == []


async def test_a_missing_blob_is_a_per_file_error_and_the_rest_is_fetched(github, options):
    files = sample_files(4)
    github.commit(files)
    ghost = FileChange(path="ghost.txt", change="upsert", blob="1" * 40)
    real = FileChange(path="README.md", change="upsert", blob=blob_sha(files["README.md"]))

    async with get_adapter("github", plan().source_config, options) as adapter:
        got = [f async for f in adapter.fetch([ghost, real, FileChange(path="gone", change="delete")])]

    by_path = {f.change.path: f for f in got}
    assert set(by_path) == {"ghost.txt", "README.md"}
    assert by_path["README.md"].content == b"# Widgets\n"
    assert by_path["ghost.txt"].content is None and "not found" in by_path["ghost.txt"].error


async def test_a_branch_without_a_commit_is_a_source_error_naming_it(github, options):
    github.commit(sample_files(3))
    with pytest.raises(SourceError, match="branch 'no-such-branch' of GitHub repository acme/widgets has no commit"):
        await list_and_fetch(options, plan(branch="no-such-branch"))


async def test_the_configured_branch_is_listed(github, options):
    main = github.commit({"main.txt": b"m"})
    release = github.commit({"release.txt": b"r"}, branch="release/1.0")

    listing, _ = await list_and_fetch(options, plan(branch="release/1.0"))
    assert listing.commit == release and [f.path for f in listing.files] == ["release.txt"]
    listing, _ = await list_and_fetch(options, plan())
    assert listing.commit == main


async def test_without_cryptography_the_error_names_the_pip_install(github, options, monkeypatch):
    github.commit({"a.txt": b"a"})
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives", None)

    with pytest.raises(MissingExtraError, match=r"pip install 'hookstream\[github\]'"):
        await list_and_fetch(options, plan())


def test_bad_github_config_is_a_source_error(options):
    with pytest.raises(SourceError, match="repository"):
        get_adapter("github", {"repository": "not a repo"}, options)
    with pytest.raises(SourceError, match="installation_id is required"):
        get_adapter("github", {"repository": REPOSITORY}, options)
