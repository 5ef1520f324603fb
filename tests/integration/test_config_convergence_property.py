"""Property: after every push settles, a source's documents are its branch head's tree filtered by the
config file at that head, and a broken config file keeps the rules that were in effect.

The schedule-wide property (test_convergence_property.py) mixes config files into
failures, force pushes and branch switches, where most listings are full. This one
walks a linear history commit by commit, each push delivered (the GitHub plugin
routes them; their payloads name no file, so only the planner can see a config
change), and lets the pipeline settle after most of them: most jobs are diffs,
whose excluded paths must write nothing, and config changes arrive in diffs, which
must turn into full listings when they select other paths. At every settled point
the documents are compared with git filtered by tests/support/globs.py, with the
rules the oracle knows to be in effect: those of the newest settled head whose
config file was valid or absent, or nothing when there was none yet.
"""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from tests.support import gitrepo
from tests.support.config_oracle import CONFIG_FILE, NOTHING, config_file, meaning_at, selected
from tests.support.pipeline import Pipeline, schema_and_loop

EXAMPLES = int(os.environ.get("HOOKSTREAM_PROPERTY_EXAMPLES", "60"))
PATHS = ("a.md", "b.md", "docs/c.md", "docs/d.txt", "src/e.py", "src/deep/f.py", "x/y/z.json")
CONTENTS = (b"one\n", b"two\n", b"# heading\n\nbody\n", b"\x00binary\x01")
RUN = {"examples": 0, "settled": 0, "jobs": 0, "diffs": 0}


@pytest.fixture(scope="module")
def env(broker, postgres, tmp_path_factory):
    with schema_and_loop(broker.bootstrap, postgres.url) as (loop, pool):
        yield loop, pool, tmp_path_factory.mktemp("config-histories")


@pytest.fixture(autouse=True)
def _figures(request):
    yield
    line = (
        f"config convergence property: {RUN['examples']} examples, {RUN['settled']} settled points checked, "
        f"{RUN['jobs']} jobs ({RUN['diffs']} diffs); each equal to its head filtered by the config in effect"
    )
    request.node.user_properties.append(("summary_line", line))


@st.composite
def commit(draw, tree: dict[str, bytes]) -> dict[str, bytes | None]:
    """One commit: a few files written or deleted, and often the config file written or removed."""
    change: dict[str, bytes | None] = {}
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        change[path] = draw(st.sampled_from(CONTENTS)) if draw(st.integers(0, 3)) else None
    kind = draw(st.sampled_from(["none", "none", "write", "remove"]))
    if kind == "write":
        change[CONFIG_FILE] = draw(config_file())
    elif kind == "remove":
        change[CONFIG_FILE] = None
    after = {p: c for p, c in {**tree, **change}.items() if c is not None}
    if not after:  # never an empty tree: git would have nothing to commit
        change["a.md"] = b"kept\n"
    return change


_sources = itertools.count(1)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_documents_follow_the_config_file_at_every_settled_head(env, data):
    loop, pool, tmp = env
    n = next(_sources)
    path = tmp / f"repo-{n}"
    tree: dict[str, bytes] = {}
    commits = []
    for _ in range(data.draw(st.integers(2, 8), label="commits")):
        change = data.draw(commit(tree), label="commit")
        tree = {p: c for p, c in {**tree, **change}.items() if c is not None}
        commits.append(change)
    shas = gitrepo.build_repo(path, commits=commits, branch="line")
    settle_after = [data.draw(st.integers(0, 3), label=f"settle after {i}") > 0 for i in range(len(shas))]
    pipe = Pipeline(source_id=f"github:{800000 + n}", repo_id=800000 + n, pool=pool)
    loop.run_until_complete(walk(pipe, path, shas, settle_after))


async def walk(pipe: Pipeline, path, shas: list[str], settle_after: list[bool]) -> None:
    in_effect = None  # the rules of the newest settled head whose config was valid or absent
    try:
        gitrepo.git(path, "update-ref", "refs/heads/main", shas[0])
        pipe.connect({"path": str(path), "branch": "main"})
        before = None
        for i, sha in enumerate(shas):
            gitrepo.git(path, "update-ref", "refs/heads/main", sha)
            pipe.push(f"push-{i}", before, sha, "main")
            before = sha
            if not (settle_after[i] or i == len(shas) - 1):
                continue
            await pipe.drain()
            meaning = meaning_at(path, sha)
            in_effect = meaning if meaning is not None else in_effect
            rules = in_effect if in_effect is not None else NOTHING
            want = selected(gitrepo.digests_at(path, sha), rules)
            have = await digests(pipe)
            note(f"settled at {sha[:7]} (commit {i}): config {meaning}, in effect {rules}")
            assert have == want, (
                f"at commit {i} {sha[:7]} with rules {rules}: missing {sorted(set(want) - set(have))}, "
                f"extra {sorted(set(have) - set(want))}, "
                f"other {sorted(p for p in set(want) & set(have) if want[p] != have[p])}; jobs "
                f"{[(c.job_id, c.status, c.listing) for c in pipe.completions.values()]}"
            )
            assert pipe.state.config_status == (
                "unconfigured" if meaning == ((), ()) else "invalid" if meaning is None else "configured"
            )
            RUN["settled"] += 1
        RUN["examples"] += 1
        RUN["jobs"] += len(pipe.completions)
        RUN["diffs"] += sum(c.listing == "diff" for c in pipe.completions.values())
    finally:
        await pipe.aclose()


async def digests(pipe: Pipeline) -> dict[str, str]:
    async with pipe.pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT path, sha256 FROM documents WHERE source_id = %s", (pipe.source_id,))
        ).fetchall()
    return dict(rows)
