"""Providers end to end: signed HTTP deliveries through the real ingress, the real worker, rows out.

- Linear: Issue and Comment webhooks sync a `linear` source against a local
  server answering in Linear's GraphQL shapes; when quiet, the source's documents
  equal the fake API's issues, rendered (including after a lost webhook).
- A third-party Standard Webhooks sender (signed by the `standardwebhooks`
  library): one payload routed by a rule to a sync, another ignored by the
  default rule, counted in the worker's metrics and not dead-lettered.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

import aiohttp
import orjson
import pytest
import standardwebhooks
from aiohttp import web

from app.events import SourceConnected
from app.plugins import get_plugin
from app.sources.linear_render import render_issue
from tests.support import gitrepo
from tests.support.fake_github import FakeClock
from tests.support.fake_linear import FakeLinear
from tests.support.flows import completions, documents, now, send_control
from tests.support.kafka import read_all
from tests.support.services import isolated_settings, wait_until
from tests.support.stack import started_worker

ORG = "8a5f2c3e-7b1d-4e9a-b6c0-1d2e3f4a5b6c"
LINEAR_SECRET = "lin_wh_e2e_secret"
WHSEC = "whsec_" + "c3RhbmRhcmQtd2ViaG9va3MtZTJlLWtleQ=="
INSTANCES = f"""
[[instance]]
plugin = "linear"
id = "acme"
secret = "{LINEAR_SECRET}"
# The fake's clock moves a second per change and jumps ahead between phases.
options = {{ tolerance_seconds = "1h" }}

[[instance]]
plugin = "standard-webhooks"
id = "billing"
secret = "{WHSEC}"

[[instance.options.rules]]
name = "invoices"
action = "sync"
source_id = "git:{{/data/repository}}"
mode = "full"
trigger = "invoice"
match = [{{ pointer = "/type", glob = "invoice.*" }}]

[[instance.options.rules]]
name = "pings"
action = "ignore"
match = {{ pointer = "/type", equals = "ping" }}
"""


@pytest.fixture(scope="module")
async def stack(broker, postgres, tmp_path_factory):
    """A fake Linear, one worker and one in-process ingress for the module."""
    from app.ingress.app import create_app

    tmp = tmp_path_factory.mktemp("providers")
    linear = await FakeLinear(FakeClock(time.time()), organization_id=ORG).start()
    (tmp / "instances.toml").write_text(INSTANCES)
    s = isolated_settings(
        broker.bootstrap,
        postgres.url,
        instances_file=tmp / "instances.toml",
        batch_size=5,
        linear_api_url=linear.url,
        linear_api_key=linear.api_key,
        producer_linger_ms=1,
    )
    worker = await started_worker(s, tmp)
    instances = s.instances()
    runner = web.AppRunner(create_app(s, instances), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    async with aiohttp.ClientSession() as session:
        yield s, worker, linear, instances, session, f"http://{host}:{port}"
    await runner.cleanup()
    worker.stop()
    await linear.stop()


async def post(stack, plugin: str, instance: str, body: bytes, headers: dict[str, str]) -> dict:
    settings, worker, linear, instances, session, url = stack
    async with session.post(f"{url}/hooks/{plugin}/{instance}", data=body, headers=headers) as response:
        answer = await response.json()
        assert response.status == 202, answer
        return answer


async def linear_webhook(stack, payload: dict, delivery_id: str) -> None:
    settings, worker, linear, instances, session, url = stack
    body = orjson.dumps(payload)
    headers = get_plugin("linear").sign(
        body, instances[("linear", "acme")], time.time(), delivery_id=delivery_id, event=payload["type"]
    )
    await post(stack, "linear", "acme", body, headers)


def rendered(linear: FakeLinear) -> dict[str, str]:
    """path -> sha256 of what the fake API holds, rendered: the oracle (built from the fake's records)."""
    docs = {}
    for issue in linear.live():
        view = linear._issue_view(issue)
        content = render_issue(view, view["labels"](None)["nodes"], view["comments"](None, first=250)["nodes"])
        docs[f"issues/{issue.identifier}.md"] = hashlib.sha256(content).hexdigest()
    return docs


async def converged(settings, worker, linear: FakeLinear, source: str) -> dict[str, str]:
    """Wait until the source's documents equal the API's issues (a condition, with a deadline)."""

    async def equal():
        if not worker.alive():
            raise AssertionError(f"the worker died:\n{worker.log_tail()}")
        rows = {path: row[0] for path, row in (await documents(settings, source)).items()}
        return rows if rows == rendered(linear) else None

    return await wait_until(equal, timeout=90, interval=0.3, what=f"documents of {source} equal to the API's issues")


async def test_linear_webhooks_through_the_ingress_keep_the_source_equal_to_the_api(stack):
    settings, worker, linear, *_ = stack
    source = f"linear:{ORG}"
    linear.add_team("ENG", "Engineering")
    linear.add_team("OPS", "Operations")
    for n in range(9):
        issue = linear.add_issue(
            "ENG" if n % 3 else "OPS",
            f"Issue {n}",
            description=f"What {n} is about.",
            priority=n % 5,
            labels=["bug"] if n % 2 else [],
            assignee="Grace Hopper" if n % 4 == 0 else None,
        )
        if n % 3 == 0:
            linear.comment(issue.identifier, f"A note on {n}")
    await send_control(
        settings,
        SourceConnected(
            source_id=source, occurred_at=now(), source_type="linear", name="Acme", config={"organization_id": ORG}
        ),
    )

    # 1. Later, a first webhook: the source has no sync point yet, so its first sync lists everything.
    linear.clock.now += 600
    first = linear.update("ENG-1", title="Issue 1, retitled")
    await linear_webhook(stack, linear.webhook("update", first), "lin-1")
    await converged(settings, worker, linear, source)

    # 2. Time passes; issues change, a comment is written, one is deleted, one archived; each change's
    #    webhook goes through the ingress (one of them twice: Linear retried it).
    linear.clock.now += 600
    retitled = linear.update("ENG-2", title="Renamed in Linear", state="In Progress", state_type="started")
    comment = linear.comment("OPS-1", "Reproduced on staging.")
    gone = linear.delete("ENG-3")
    archived = linear.archive("ENG-4")
    for n, payload in enumerate(
        [
            linear.webhook("update", retitled),
            linear.webhook("create", linear.by_identifier("OPS-1"), comment),
            linear.webhook("remove", gone),
            linear.webhook("update", archived),
        ]
    ):
        await linear_webhook(stack, payload, f"lin-2-{n}")
    await linear_webhook(stack, linear.webhook("update", retitled), "lin-2-0")  # the redelivery
    rows = await converged(settings, worker, linear, source)
    assert "issues/ENG-3.md" not in rows and "issues/ENG-4.md" not in rows

    # 3. A webhook is lost (ENG-5 changes without one); the next webhook for the workspace repairs it.
    linear.clock.now += 600
    linear.update("ENG-5", description="Changed while the webhook was lost.")
    moved = linear.move("OPS-2", "ENG")
    await linear_webhook(stack, linear.webhook("update", moved), "lin-3")
    await converged(settings, worker, linear, source)

    done = await completions(settings, source, alive=worker.alive)
    assert all(c.status == "succeeded" and c.failed == 0 for c in done), done
    # The first sync listed everything; each later one only what changed since the last complete sync
    # (and the changes inside its margin): none re-read the workspace.
    assert done[0].files_listed == 9 and max(c.files_listed for c in done[1:]) <= 6, [c.files_listed for c in done]


async def test_a_standard_webhooks_senders_payload_is_routed_by_a_rule_and_another_ignored_by_the_default(
    stack, tmp_path
):
    settings, worker, linear, instances, session, url = stack
    repo = tmp_path / "billing-docs"
    (head,) = gitrepo.build_repo(repo, files={"invoices/README.md": b"# Invoices\n", "policy.md": b"Net 30.\n"})
    await send_control(
        settings,
        SourceConnected(source_id="git:billing-docs", occurred_at=now(), source_type="git", config={"path": str(repo)}),
    )
    sender = standardwebhooks.Webhook(WHSEC)  # the third party's own library signs

    async def deliver(msg_id: str, payload: dict) -> None:
        body = orjson.dumps(payload)
        signature = sender.sign(msg_id, datetime.now(tz=UTC), body.decode())
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": signature,
            "content-type": "application/json",
        }
        await post(stack, "standard-webhooks", "billing", body, headers)

    await deliver(
        "msg_invoice_1",
        {"type": "invoice.paid", "timestamp": "2024-05-02T10:21:07Z", "data": {"repository": "billing-docs"}},
    )
    await deliver(
        "msg_customer_1", {"type": "customer.created", "timestamp": "2024-05-02T10:21:08Z", "data": {"id": "cus_1"}}
    )

    (done,) = await completions(settings, "git:billing-docs", alive=worker.alive)
    assert (done.status, done.trigger, done.request_ids, done.commit) == (
        "succeeded",
        "invoice",
        ["msg_invoice_1"],
        head,
    )
    assert set(await documents(settings, "git:billing-docs")) == set(gitrepo.tree_of(repo, head))

    async def counted() -> str | None:
        async with session.get(worker.metrics_url) as response:
            text = await response.text()
        line = 'hookstream_deliveries_ignored_total{plugin="standard-webhooks",rule="billing.unmatched"} 1.0'
        return text if line in text else None

    await wait_until(counted, timeout=30, interval=0.3, what="the unmatched delivery counted by the default rule")
    dead = await read_all(settings, "hookstream.dlq", timeout=3, idle=1.0)
    assert [key for key, *_ in dead if "msg_customer_1" in (key or "")] == []
