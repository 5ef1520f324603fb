"""Config files read by the planner at the synced commit, through the real adapters (git, the GitHub
fake) and the real fold, planner, batch writer and PostgreSQL (tests/support/pipeline.py).

Every outcome is checked against the world: the documents against `git ls-tree` of the head filtered
by an independent implementation of the globs (tests/support/globs.py), the config status against
what the file at that commit says.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from app.events import SyncPlanned
from app.events.config import PathRules
from app.sources import SourceOptions, get_adapter
from app.store.db import migrate, open_pool
from tests.support import gitrepo, globs
from tests.support.fake_github import FakeClock, FakeGitHub
from tests.support.pipeline import Pipeline
from tests.support.services import isolated_settings

_ids = itertools.count(1)


@pytest.fixture(scope="module")
def env(broker, postgres):
    loop = asyncio.new_event_loop()
    s = isolated_settings(broker.bootstrap, postgres.url)
    loop.run_until_complete(migrate(s))
    pool = open_pool(s, min_size=1, max_size=4)
    loop.run_until_complete(pool.open(wait=True, timeout=30))
    yield loop, pool
    loop.run_until_complete(pool.close())
    loop.close()


class Source:
    """A git repository, its pipeline and an oracle: what its documents must be at the head."""

    def __init__(self, env, path, **config: Any) -> None:
        self.loop, pool = env
        self.path = path
        n = next(_ids)
        self.pipe = Pipeline(source_id=f"git:config-{n}", repo_id=880000 + n, pool=pool)
        self.config = {"path": str(path), "branch": "main", **config}
        self.requests = itertools.count(1)

    def commit(self, change: dict[str, bytes | None]) -> str:
        (sha,) = gitrepo.build_repo(self.path, commits=[change], branch="main")
        return sha

    def sync(self):
        """Ask the source to look again (a push's request), let everything settle; the job's completion."""
        if not self.pipe.control:
            self.pipe.connect(self.config)
        rid = f"look-{next(self.requests)}"
        self.pipe.request(rid, "incremental", force=True)  # past the idempotency key of the last look
        self.loop.run_until_complete(self.pipe.drain())
        (done,) = [c for c in self.pipe.completions.values() if rid in c.request_ids]
        assert done.status == "succeeded", done
        return done

    def plans(self) -> list[SyncPlanned]:
        return [e for e in self.pipe.control if isinstance(e, SyncPlanned)]

    def documents(self) -> dict[str, str]:
        async def read():
            async with self.pipe.pool.connection() as conn:
                rows = await (
                    await conn.execute(
                        "SELECT path, sha256 FROM documents WHERE source_id = %s", (self.pipe.source_id,)
                    )
                ).fetchall()
            return dict(rows)

        return self.loop.run_until_complete(read())

    def expected(self, include=(), exclude=()) -> dict[str, str]:
        tree = gitrepo.digests_at(self.path, "refs/heads/main")
        return {p: d for p, d in tree.items() if globs.written(p, include, exclude)}

    def close(self) -> None:
        self.loop.run_until_complete(self.pipe.aclose())


@pytest.fixture
def source(env, tmp_path):
    made: list[Source] = []

    def make(**config: Any) -> Source:
        made.append(Source(env, tmp_path / f"repo-{len(made)}", **config))
        return made[-1]

    yield make
    for s in made:
        s.close()


BASE = {"README.md": b"# r\n", "docs/guide.md": b"# guide\n", "secret/key.txt": b"k\n", "src/app.py": b"x = 1\n"}


def test_an_exclude_added_by_a_push_deletes_the_excluded_documents_and_counts_them(source):
    s = source()
    s.commit(BASE)
    first = s.sync()
    assert s.documents() == s.expected() and first.listing == "full"
    assert s.pipe.state.config_status == "unconfigured"

    c2 = s.commit({".hookstream.yml": b"# keep secrets out\nexclude: ['secret/**']\n"})
    done = s.sync()

    assert s.documents() == s.expected(exclude=["secret/**"])
    assert "secret/key.txt" not in s.documents()
    # The push's diff touched the config, which selects other paths: everything was listed.
    assert (done.listing, done.deleted) == ("full", 1)
    state = s.pipe.state
    assert (state.config_status, state.config_path, state.config_commit, state.config_rules) == (
        "configured",
        ".hookstream.yml",
        c2,
        PathRules(exclude=("secret/**",)),
    )


def test_a_push_that_removes_the_config_file_makes_the_source_unconfigured_and_writes_everything(source):
    s = source()
    s.commit({**BASE, ".hookstream.yml": b"include: ['**/*.md']\n"})
    s.sync()
    assert s.documents() == s.expected(include=["**/*.md"]) and set(s.documents()) == {"README.md", "docs/guide.md"}
    assert s.pipe.state.config_status == "configured"

    c2 = s.commit({".hookstream.yml": None})
    done = s.sync()

    assert (s.pipe.state.config_status, s.pipe.state.config_path, s.pipe.state.config_commit) == (
        "unconfigured",
        None,
        c2,
    )
    assert s.documents() == s.expected() and "secret/key.txt" in s.documents()
    assert done.listing == "full"


def test_an_invalid_config_file_is_reported_and_the_rules_in_effect_stay(source):
    s = source()
    s.commit({**BASE, ".hookstream.yml": b"exclude: [secret/**]\n"})
    s.sync()

    s.commit({".hookstream.yml": b"exclude: [secret/**\n", "README.md": b"# r v2\n", "secret/new.txt": b"n\n"})
    done = s.sync()

    state = s.pipe.state
    assert state.config_status == "invalid" and state.config_path == ".hookstream.yml"
    assert state.config_error.startswith(".hookstream.yml: line 2, column 1:"), state.config_error
    # The other changes synced, with the exclude that was in effect: nothing excluded came in.
    assert s.documents() == s.expected(exclude=["secret/**"])
    assert "secret/new.txt" not in s.documents() and done.listing == "diff"

    s.commit({".hookstream.yml": b"exclude: []\n"})
    done = s.sync()
    assert s.pipe.state.config_status == "configured" and s.documents() == s.expected()
    assert done.listing == "full" and {"secret/key.txt", "secret/new.txt"} <= set(s.documents())


def test_an_invalid_config_file_on_the_first_sync_writes_nothing_until_it_is_fixed(source):
    s = source()
    s.commit({**BASE, ".hookstream.yml": b"include: !!python/object:os.system [echo]\n"})
    s.sync()
    assert s.pipe.state.config_status == "invalid" and "could not determine a constructor" in s.pipe.state.config_error
    assert s.documents() == {}

    s.commit({".hookstream.yml": b"include: [docs/**]\n"})
    s.sync()
    assert s.pipe.state.config_status == "configured" and s.documents() == s.expected(include=["docs/**"])


def test_a_diff_that_touches_no_config_file_reads_none_and_writes_no_excluded_path(source):
    s = source()
    s.commit({**BASE, ".hookstream.yml": b"exclude: ['logs/**']\n", "logs/a.log": b"1\n"})
    s.sync()
    s.commit({"logs/a.log": b"2\n", "logs/b.log": b"3\n", "docs/guide.md": b"# guide v2\n"})
    done = s.sync()

    assert (done.listing, done.files_listed, done.processed) == ("diff", 1, 1)
    assert s.plans()[-1].config is None, "the config file was not read again"
    assert s.documents() == s.expected(exclude=["logs/**"])


def test_a_config_edit_that_selects_the_same_paths_stays_a_diff(source):
    s = source()
    s.commit({**BASE, ".hookstream.yml": b"exclude: ['secret/**', 'tmp/**']\n"})
    s.sync()
    c2 = s.commit(
        {
            ".hookstream.yml": b"# reordered, commented\nexclude:\n  - tmp/**\n  - secret/**\n  - tmp/**\n",
            "README.md": b"# r v2\n",
        }
    )
    done = s.sync()

    assert done.listing == "diff" and s.pipe.state.config_commit == c2
    assert s.documents() == s.expected(exclude=["secret/**"])


def test_the_config_file_names_come_from_the_source_config(source):
    s = source(config_files=["conf/hookstream.yaml"])
    s.commit({**BASE, ".hookstream.yml": b"exclude: ['**']\n", "conf/hookstream.yaml": b"include: ['src/**']\n"})
    s.sync()
    assert s.pipe.state.config_path == "conf/hookstream.yaml"
    assert s.documents() == s.expected(include=["src/**"])


def test_the_first_default_name_found_wins(source):
    s = source()
    s.commit({**BASE, ".hookstream.yaml": b"include: ['docs/**']\n"})
    s.sync()
    assert (s.pipe.state.config_status, s.pipe.state.config_path) == ("configured", ".hookstream.yaml")
    s.commit({".hookstream.yml": b"include: ['src/**']\n"})
    s.sync()
    assert s.pipe.state.config_path == ".hookstream.yml" and s.documents() == s.expected(include=["src/**"])


def test_a_job_planned_again_publishes_the_config_its_kept_plan_found(source):
    s = source()
    s.commit({**BASE, ".hookstream.yml": b"include: ['docs/**']\n"})
    s.pipe.connect(s.config)
    s.pipe.request("r1", "incremental")
    loop = s.loop
    loop.run_until_complete(s.pipe.fold_next())
    loop.run_until_complete(s.pipe.fold_next())
    loop.run_until_complete(s.pipe.plan(0, again=True))
    s.commit({".hookstream.yml": b"include: ['src/**']\n"})  # the head moves before the redelivery
    loop.run_until_complete(s.pipe.plan(0))
    first, again = s.plans()
    assert first.config == again.config and first.config.rules == PathRules(include=("docs/**",))
    assert first.commit == again.commit


# -- the adapters' read_file ------------------------------------------------------------------


def test_git_reads_a_file_at_a_commit_and_says_when_it_is_absent_a_directory_or_too_large(env, tmp_path):
    loop, _ = env
    c1, c2 = gitrepo.build_repo(
        tmp_path / "r",
        commits=[
            {".hookstream.yml": b"include: [a]\n", "dir/x": b"x\n", "big": b"b" * 5000},
            {".hookstream.yml": None},
        ],
    )

    async def read():
        async with get_adapter("git", {"path": str(tmp_path / "r")}) as git:
            return [
                await git.read_file(c, p, 1000)
                for c, p in ((c1, ".hookstream.yml"), (c2, ".hookstream.yml"), (c1, "dir"), (c1, "big"), (c1, "nope/x"))
            ]

    present, removed, directory, big, absent = loop.run_until_complete(read())
    assert present.content == b"include: [a]\n" and removed == (None, None) and absent == (None, None)
    assert directory.problem == "is a directory, not a file"
    assert big.problem == "5000 bytes, more than the 1000 a config file may have"


@pytest.fixture
def app_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode(), key.public_key()


def test_github_reads_a_file_at_a_commit_through_the_contents_api_and_a_rate_limit(env, app_key):
    loop, _ = env
    clock = FakeClock()
    github = FakeGitHub(clock, "1234", app_key[1], "acme/widgets", installation_id=42)
    loop.run_until_complete(github.start())
    c1 = github.commit({".hookstream.yml": b"exclude: [vendor/**]\n", "vendor/lib/x.js": b"x\n", "big": b"b" * 5000})
    c2 = github.commit({"vendor/lib/x.js": b"x\n"}, parent=c1)
    options = SourceOptions(
        github_api_url=github.url,
        github_app_id="1234",
        github_private_key=app_key[0],
        sleep=clock.sleep,
        clock=clock,
        max_retries=3,
    )

    async def read():
        async with get_adapter("github", {"repository": "acme/widgets", "installation_id": 42}, options) as gh:
            first = await gh.read_file(c1, ".hookstream.yml", 1000)  # mints the installation token
            github.rate_limit_next(1, reset_in=20)
            limited = await gh.read_file(c1, ".hookstream.yml", 1000)
            return (
                first,
                limited,
                *[await gh.read_file(c, p, 1000) for c, p in ((c2, ".hookstream.yml"), (c1, "vendor"), (c1, "big"))],
            )

    try:
        first, limited, removed, directory, big = loop.run_until_complete(read())
    finally:
        loop.run_until_complete(github.stop())
    assert first.content == limited.content == b"exclude: [vendor/**]\n"
    assert clock.sleeps and clock.sleeps[-1] >= 20, "the rate limit was waited out"
    assert removed == (None, None)
    assert directory.problem == "is a directory, not a file"
    assert big.problem == "5000 bytes, more than the 1000 a config file may have"
    assert f"GET /repos/acme/widgets/contents/.hookstream.yml?ref={c2}" in github.requests
