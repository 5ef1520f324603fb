"""Property: when the pipeline is quiet, a source's documents equal `git ls-tree` of its tracked branch
head, filtered by the config file at that head.

Hypothesis generates a real git history (adds, modifications, deletions,
renames, a `.hookstream.yml` with include/exclude globs added, changed, broken
or removed, a force push, a second branch the source switches to) and a schedule
over it: the branch moves, its pushes are delivered late, out of order, twice
or never; manual requests arrive; the orchestrator crashes between sending its
effects and storing its state; plan and batch records are taken in any order
and some of them again; some jobs' planning or reading fails. The stages are
the real ones (`tests/support/pipeline.py`): the fold, the planner with the git
adapter, the batch writer and PostgreSQL. At the end the newest push (and, after
an injected failure, one manual request) is delivered, everything settles, and
the documents are compared with git itself, path by path and digest by digest,
keeping the paths the config at the head selects: the generator knows what each
config file it wrote means, and the globs are matched by tests/support/globs.py,
not by the app's code. When the head's config file is invalid, the documents must
be the head's tree filtered by the rules of a valid config the history had (the
rules in effect are kept), or by nothing when none was ever in effect.

`HOOKSTREAM_PROPERTY_EXAMPLES` sets how many schedules run (CI: the default).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from tests.support import gitrepo
from tests.support.config_oracle import CONFIG_FILE, EVERYTHING, NOTHING, config_file, meaning_at, selected
from tests.support.pipeline import Pipeline, schema_and_loop

EXAMPLES = int(os.environ.get("HOOKSTREAM_PROPERTY_EXAMPLES", "60"))
PATHS = ("a.md", "b.md", "docs/c.md", "docs/d.txt", "src/e.py", "src/deep/f.py", "x/y/z.json")
CONTENTS = (b"one\n", b"two\n", b"three\n", b"# heading\n\nbody\n", b"\x00binary\x01", b"")
RUN = {"examples": 0, "steps": 0, "jobs": 0, "configured": 0, "invalid": 0}


@pytest.fixture(scope="module")
def env(broker, postgres, tmp_path_factory):
    with schema_and_loop(broker.bootstrap, postgres.url) as (loop, pool):
        yield loop, pool, tmp_path_factory.mktemp("histories")


@pytest.fixture(autouse=True)
def _figures(request):
    """The run's figures, carried in the report to the session's summary (tests/conftest.py)."""
    yield
    line = (
        f"convergence property: {RUN['examples']} examples, {RUN['steps']} schedule steps, "
        f"{RUN['jobs']} jobs, {RUN['configured']} with a config file at the head ({RUN['invalid']} broken); "
        "every one converged on its tracked branch head, filtered by its config"
    )
    request.node.user_properties.append(("summary_line", line))


# -- histories ------------------------------------------------------------------------------


def commit_changes(tree: dict[str, bytes]):
    """One commit's changes on top of `tree`: writes, deletions and renames of a few paths, and
    now and then the config file written (valid or broken) or removed."""
    write = st.tuples(st.just("write"), st.sampled_from(PATHS), st.sampled_from(CONTENTS))
    delete = st.tuples(st.just("delete"), st.sampled_from(PATHS), st.none())
    rename = st.tuples(st.just("rename"), st.sampled_from(PATHS), st.sampled_from(PATHS))
    config = st.tuples(st.just("write"), st.just(CONFIG_FILE), config_file())
    unconfig = st.tuples(st.just("delete"), st.just(CONFIG_FILE), st.none())
    return st.lists(st.one_of(write, write, delete, rename, config, unconfig), min_size=1, max_size=3)


def apply(tree: dict[str, bytes], ops) -> tuple[dict[str, bytes], dict[str, bytes | None]]:
    tree, change = dict(tree), {}
    for kind, path, arg in ops:
        if kind == "write":
            tree[path] = arg
            change[path] = arg
        elif kind == "delete" and path in tree and len(tree) > 1:
            del tree[path]
            change[path] = None
        elif kind == "rename" and path in tree and arg != path and len(tree) > 1:
            tree[arg] = tree.pop(path)
            change[path], change[arg] = None, tree[arg]
    return tree, change


@st.composite
def line(draw, base: dict[str, bytes], min_size: int, max_size: int) -> list[dict[str, bytes | None]]:
    commits, tree = [], base
    for _ in range(draw(st.integers(min_size, max_size))):
        after, change = apply(tree, draw(commit_changes(tree)))
        if not change:  # every operation was a no-op: touch a file, so that the commit changes something
            change = {"a.md": b"touched %d\n" % len(commits)}
            after = {**tree, **change}
        commits.append(change)
        tree = after
    return commits


@dataclass
class History:
    """The commits each branch's ref moves through, in order (`main` may jump: a force push)."""

    moves: dict[str, list[str]]
    forced_at: int | None = None
    position: dict[str, int] = field(default_factory=dict)

    def commits(self) -> list[str]:
        return list(dict.fromkeys(sha for shas in self.moves.values() for sha in shas))


def build(draw, path) -> History:
    first = {
        p: draw(st.sampled_from(CONTENTS[:4]))
        for p in draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=4, unique=True))
    }
    if draw(st.booleans()):
        first[CONFIG_FILE] = draw(config_file())
    main = gitrepo.build_repo(path, commits=[first, *draw(line(first, 1, 6))], branch="line")
    moves = {"main": list(main)}
    forced_at = None
    if draw(st.booleans()):  # a force push: the branch jumps to a line rewritten from an earlier commit
        forced_at = draw(st.integers(0, len(main) - 1))
        gitrepo.git(path, "branch", "-f", "rewrite", main[forced_at])
        rewritten = gitrepo.build_repo(path, commits=draw(line(first, 1, 3)), branch="rewrite")
        keep = draw(st.integers(forced_at + 1, len(main)))
        moves["main"] = main[:keep] + rewritten
        forced_at = keep
    if draw(st.booleans()):  # another branch, which the source may be switched to
        gitrepo.git(path, "branch", "-f", "dev-line", main[draw(st.integers(0, len(main) - 1))])
        moves["dev"] = gitrepo.build_repo(path, commits=draw(line(first, 1, 3)), branch="dev-line")
    for branch, shas in moves.items():
        gitrepo.git(path, "update-ref", f"refs/heads/{branch}", shas[0])
    gitrepo.git(path, "symbolic-ref", "HEAD", "refs/heads/main")
    return History(moves, forced_at, {b: 0 for b in moves})


# -- the property ----------------------------------------------------------------------------

_sources = itertools.count(1)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_documents_converge_on_the_tracked_branch_whatever_the_schedule(env, data):
    loop, pool, tmp = env
    n = next(_sources)
    path = tmp / f"repo-{n}"
    history = build(data.draw, path)
    note(
        f"moves: { {b: [s[:7] for s in shas] for b, shas in history.moves.items()} }, forced after {history.forced_at}"
    )
    pipe = Pipeline(source_id=f"github:{900000 + n}", repo_id=900000 + n, pool=pool)
    loop.run_until_complete(run_schedule(pipe, history, path, data))


async def run_schedule(pipe: Pipeline, history: History, path, data) -> None:
    tracked = "main"
    pipe.connect({"path": str(path), "branch": tracked})
    pending: list[tuple[str, str | None, str, str, bool]] = []  # undelivered pushes
    newest: dict[str, tuple[str, str | None, str, str, bool] | None] = {b: None for b in history.moves}
    delivered: set[str] = set()
    failed = False
    pushes = itertools.count(1)
    try:
        for step in range(data.draw(st.integers(5, 45), label="steps")):
            RUN["steps"] += 1
            options = ["fold", "fold", "fold", "request"]
            if any(history.position[b] + 1 < len(s) for b, s in history.moves.items()):
                options += ["advance", "advance"]
            if pending:
                options += ["deliver", "deliver"]
            if pipe.plans:
                options += ["plan", "plan"]
            if pipe.batches:
                options += ["batch", "batch", "batch"]
            if "dev" in history.moves:
                options.append("switch")
            action = data.draw(st.sampled_from(options), label=f"step {step}")
            if action == "advance":
                branch = data.draw(
                    st.sampled_from([b for b, s in history.moves.items() if history.position[b] + 1 < len(s)])
                )
                i = history.position[branch]
                history.position[branch] = i + 1
                before, after = history.moves[branch][i], history.moves[branch][i + 1]
                gitrepo.git(path, "update-ref", f"refs/heads/{branch}", after)
                forced = branch == "main" and history.forced_at == i + 1
                push = (f"push-{next(pushes)}", before, after, branch, forced)
                pending.append(push)
                newest[branch] = push
                note(f"{branch} -> {after[:7]}{' (forced)' if forced else ''}: {push[0]} pending")
            elif action == "deliver":
                push = pending[data.draw(st.integers(0, len(pending) - 1))]
                how = data.draw(st.sampled_from(["now", "now", "twice", "never"]))
                pending.remove(push)
                if how != "never":
                    pipe.push(push[0], push[1], push[2], push[3], forced=push[4])
                    delivered.add(push[0])
                if how == "twice":
                    pending.append(push)  # GitHub's redelivery: the same delivery id, later
                note(f"{push[0]} delivered {how}")
            elif action == "request":
                rid = f"manual-{step}"
                pipe.request(rid, data.draw(st.sampled_from(["full", "incremental"])), force=data.draw(st.booleans()))
                note(f"{rid} requested")
            elif action == "switch":
                tracked = "dev" if tracked == "main" else "main"
                pipe.connect({"path": str(path), "branch": tracked})
                note(f"source switched to {tracked}")
            elif action == "fold":
                await pipe.fold_next(crash=data.draw(st.booleans()) and data.draw(st.booleans()))
            elif action == "plan":
                i = data.draw(st.integers(0, len(pipe.plans) - 1))
                if data.draw(st.integers(0, 5)) == 0:
                    pipe.failing_plans.add(pipe.plans[i].job_id)
                    failed = True
                    note(f"planning {pipe.plans[i].job_id} fails")
                await pipe.plan(i, again=data.draw(st.integers(0, 4)) == 0)
            elif action == "batch":
                i = data.draw(st.integers(0, len(pipe.batches) - 1))
                if data.draw(st.integers(0, 7)) == 0:
                    b = pipe.batches[i]
                    pipe.failing_batches.add((b.job_id, b.batch_index))
                    failed = True
                    note(f"batch {b.job_id}/{b.batch_index} fails")
                await pipe.batch(i, again=data.draw(st.integers(0, 4)) == 0)

        # The newest push of the tracked branch is accepted (a push lost for good is outside the
        # promise); after an injected failure, one more request is (the failed job's range).
        last = newest[tracked]
        if last is not None and (last in pending or last[0] not in delivered):
            pipe.push(last[0] + "-final", last[1], last[2], last[3], forced=last[4])
        if failed or last is None:
            pipe.request("final", "incremental", force=True)
        await pipe.drain()
        RUN["examples"] += 1
        RUN["jobs"] += len(pipe.completions)

        assert pipe.quiet()
        head = gitrepo.git(path, "rev-parse", f"refs/heads/{tracked}").decode().strip()
        tree = gitrepo.digests_at(path, head)
        have = await document_digests(pipe)
        meaning = meaning_at(path, head)
        RUN["configured"] += meaning != EVERYTHING
        RUN["invalid"] += meaning is None
        # A broken config keeps the rules in effect: those of some valid (or absent) config of the
        # history, or nothing when none was ever applied.
        candidates = (
            [meaning]
            if meaning is not None
            else [*dict.fromkeys(m for m in (meaning_at(path, c) for c in history.commits()) if m is not None), NOTHING]
        )
        wanted = [selected(tree, rules) for rules in candidates]
        want = wanted[0] if len(wanted) == 1 else next((w for w in wanted if w == have), wanted[0])
        note(f"config at the head: {meaning}")
        assert have == want, (
            f"documents differ from {tracked} at {head[:7]} filtered by {candidates}: "
            f"missing {sorted(set(want) - set(have))}, "
            f"extra {sorted(set(have) - set(want))}, "
            f"other {sorted(p for p in set(want) & set(have) if want[p] != have[p])}; "
            f"jobs {[(c.job_id, c.status, c.listing, (c.commit or '-')[:7]) for c in pipe.completions.values()]}"
        )
    finally:
        await pipe.aclose()


async def document_digests(pipe: Pipeline) -> dict[str, str]:
    async with pipe.pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT path, sha256 FROM documents WHERE source_id = %s", (pipe.source_id,))
        ).fetchall()
    return {p: d for p, d in rows}
