"""The GitHub adapter in a real sync: signed webhooks through the real ingress, the real worker, and a
local server answering in GitHub's documented shapes (tests/support/fake_github.py).

An `installation` webhook connects a `github`-type source and asks it to be looked at; pushes sync it
through trees, compare, blobs and contents, with installation tokens minted from the App's key (the
worker reads HOOKSTREAM_GITHUB_API_URL, _GITHUB_APP_ID and _GITHUB_PRIVATE_KEY_FILE) and GitHub's rate
limits on the way. After each settles, the documents are compared with the fake repository's tree at
the branch head (path set and sha256 of the bytes the fake holds), filtered by the `.hookstream.yml` at
that head with tests/support/globs.py; the `sources` row with what the file says.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
import psycopg
import pytest
from pydantic import SecretStr

from app.embedded.ports import free_port
from app.plugins import get_plugin
from app.settings import load_instances
from tests.support import globs
from tests.support.fake_github import FakeClock, FakeGitHub
from tests.support.flows import document_digests, github_push, settled
from tests.support.services import isolated_settings
from tests.support.stack import IngressProcess, started_worker, write_instances

SECRET = "gh-e2e-secret"
APP_ID = "912345"
INSTALLATION = 42
REPO_ID = 1296269  # the fake's repository id
SOURCE = f"github:{REPO_ID}"
PAYLOADS = Path(__file__).parents[1] / "unit" / "payloads" / "github"


class WallClock(FakeClock):
    """The fake's clock is the real one here: the worker signs its App JWT with its own clock."""

    def __call__(self) -> float:
        return time.time()


@pytest.fixture(scope="module")
async def stack(broker, postgres, tmp_path_factory):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    tmp = tmp_path_factory.mktemp("github-e2e")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp / "app-key.pem"
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    github = FakeGitHub(WallClock(), APP_ID, key.public_key(), "acme/widgets", installation_id=INSTALLATION)
    await github.start()
    instances = write_instances(tmp / "instances.toml", [{"plugin": "github", "id": "gh", "secret": SECRET}])
    s = isolated_settings(
        broker.bootstrap,
        postgres.url,
        instances_file=instances,
        batch_size=4,
        ingress_port=free_port(),
        events_token=SecretStr("t"),
        github_api_url=github.url,
        github_app_id=APP_ID,
        github_private_key_file=pem,
    )
    worker = await started_worker(s, tmp)
    ingress = IngressProcess(s, tmp / "ingress.log").start()
    await ingress.ready()
    yield s, worker, ingress, github
    ingress.stop()
    worker.stop()
    await github.stop()


async def deliver(settings, ingress: IngressProcess, event: str, body: bytes) -> str:
    """Sign `body` as GitHub does and post it to the ingress; the delivery id."""
    instance = load_instances(settings.instances_file)[("github", "gh")]
    delivery_id = str(uuid.uuid4())
    headers = get_plugin("github").sign(body, instance, time.time(), delivery_id=delivery_id, event=event)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{ingress.url}/hooks/github/gh", data=body, headers=headers) as r:
            assert r.status == 202, (r.status, await r.text())
    return delivery_id


def installation_created() -> bytes:
    data = json.loads((PAYLOADS / "installation_created.json").read_text())
    data["installation"] = {**data["installation"], "id": INSTALLATION}
    data["repositories"] = [
        {"id": REPO_ID, "node_id": "R_kgDOABPJ1Q", "name": "widgets", "full_name": "acme/widgets", "private": True}
    ]
    return orjson.dumps(data)


def expected(github: FakeGitHub, include=(), exclude=()) -> dict[str, str]:
    """path -> sha256 of the fake repository's files at the branch head that the globs select."""
    files = github.commits[github.branches["main"]].files
    return {p: hashlib.sha256(c).hexdigest() for p, c in files.items() if globs.written(p, include, exclude)}


async def source_row(settings) -> dict | None:
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, options=f"-c search_path={settings.database_schema}"
    ) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        return await (await cur.execute("SELECT * FROM sources WHERE source_id = %s", (SOURCE,))).fetchone()


async def push(
    settings, ingress, github: FakeGitHub, before: str, files: dict[str, bytes], **changed
) -> tuple[str, str]:
    """Commit `files` on main in the fake and deliver GitHub's push for it; (commit, delivery id)."""
    after = github.commit(files, parent=before)
    return after, await deliver(settings, ingress, "push", github_push(REPO_ID, before, after, **changed))


async def test_an_installation_connects_a_github_source_and_pushes_keep_it_equal_to_the_repository(stack):
    settings, worker, ingress, github = stack
    tree = {
        ".hookstream.yml": b"# what hookstream indexes\nexclude: ['vendor/**']\n",
        "README.md": b"# Widgets\n",
        "docs/guide.md": b"# Guide\n",
        "docs/faq.md": b"# FAQ\n",
        "src/widgets/core.py": b"def widget():\n    return 1\n",
        "assets/logo.png": b"\x89PNG\r\n\x1a\n\0\x01",
        "vendor/lib/dep.js": b"module.exports = 1;\n",
        "vendor/lib/other.js": b"module.exports = 2;\n",
    }
    c1 = github.commit(tree)
    # GitHub's limits on the way: the primary (403, reset in a second) and a secondary one (429, retry-after).
    github.rate_limit_next(1, reset_in=1)
    github.rate_limit_next(1, secondary_retry_after=1)
    installed = await deliver(settings, ingress, "installation", installation_created())
    sent = [f"{installed}/{SOURCE}"]  # the request the connection makes, per repository
    done = await settled(settings, SOURCE, sent, alive=worker.alive)

    assert await document_digests(settings, SOURCE) == expected(github, exclude=["vendor/**"]), worker.log_tail()
    assert (done[-1].trigger, done[-1].listing, done[-1].commit, done[-1].status) == (
        "connect",
        "full",
        c1,
        "succeeded",
    )
    assert not github.queued_failures, "both rate-limited answers were served and waited out"
    assert "POST /app/installations/42/access_tokens" in github.requests
    assert any(r.startswith("GET /repos/acme/widgets/contents/.hookstream.yml?ref=") for r in github.requests)
    row = await source_row(settings)
    assert (row["source_type"], row["name"], row["config"]["installation_id"]) == (
        "github",
        "acme/widgets",
        INSTALLATION,
    )
    assert (row["config_status"], row["config_path"], row["config_commit"]) == ("configured", ".hookstream.yml", c1)

    # A push: modified, added and removed files, and an excluded one changed. A diff through compare.
    tree2 = {**tree, "docs/guide.md": b"# Guide v2\n", "docs/new.md": b"# New\n", "vendor/lib/dep.js": b"v2\n"}
    del tree2["docs/faq.md"]
    c2, delivery = await push(
        settings,
        ingress,
        github,
        c1,
        tree2,
        added=["docs/new.md"],
        modified=["docs/guide.md", "vendor/lib/dep.js"],
        removed=["docs/faq.md"],
    )
    sent.append(delivery)
    done = await settled(settings, SOURCE, sent, alive=worker.alive)
    assert await document_digests(settings, SOURCE) == expected(github, exclude=["vendor/**"])
    assert (done[-1].listing, done[-1].commit, done[-1].processed, done[-1].deleted) == ("diff", c2, 2, 1)
    assert any(r.startswith(f"GET /repos/acme/widgets/compare/{c1}...{c2}") for r in github.requests)

    # The config changes: only markdown, and never docs/drafts. A full sync; what it no longer selects is deleted.
    tree3 = {
        **tree2,
        ".hookstream.yml": b"include: ['**/*.md']\nexclude: ['docs/drafts/**']\n",
        "docs/drafts/wip.md": b"# WIP\n",
    }
    c3, delivery = await push(
        settings, ingress, github, c2, tree3, added=["docs/drafts/wip.md"], modified=[".hookstream.yml"]
    )
    sent.append(delivery)
    done = await settled(settings, SOURCE, sent, alive=worker.alive)
    want = expected(github, include=["**/*.md"], exclude=["docs/drafts/**"])
    assert await document_digests(settings, SOURCE) == want and set(want) == {
        "README.md",
        "docs/guide.md",
        "docs/new.md",
    }
    # .hookstream.yml, src/widgets/core.py and assets/logo.png are no longer selected.
    assert (done[-1].mode, done[-1].trigger, done[-1].listing, done[-1].deleted) == ("full", "config_change", "full", 3)

    # A broken config file: reported, and the rules in effect stay while other changes sync.
    tree4 = {
        **tree3,
        ".hookstream.yml": b"include: ['**/*.md'\n",
        "docs/guide.md": b"# Guide v3\n",
        "src/widgets/more.py": b"x = 2\n",
    }
    c4, delivery = await push(
        settings,
        ingress,
        github,
        c3,
        tree4,
        added=["src/widgets/more.py"],
        modified=[".hookstream.yml", "docs/guide.md"],
    )
    sent.append(delivery)
    await settled(settings, SOURCE, sent, alive=worker.alive)
    assert await document_digests(settings, SOURCE) == expected(github, include=["**/*.md"], exclude=["docs/drafts/**"])
    row = await source_row(settings)
    assert (row["config_status"], row["config_commit"]) == ("invalid", c4)
    assert row["config_error"] == ".hookstream.yml: line 2, column 1: expected ',' or ']', but got '<stream end>'"

    # The config file removed: unconfigured, and every file of the head is a document again.
    tree5 = {p: c for p, c in tree4.items() if p != ".hookstream.yml"}
    c5, delivery = await push(settings, ingress, github, c4, tree5, removed=[".hookstream.yml"])
    sent.append(delivery)
    await settled(settings, SOURCE, sent, alive=worker.alive)
    assert await document_digests(settings, SOURCE) == expected(github)
    row = await source_row(settings)
    assert (row["config_status"], row["config_path"], row["config_commit"], row["config_error"]) == (
        "unconfigured",
        None,
        c5,
        None,
    )
