"""Property: no record stops an agent or vanishes. Hypothesis throws hostile records at every agent of a
real worker, through the real broker, and each one ends up dead-lettered, with its stage and reason,
on `hookstream.dlq` and in the `dlq` table, counted; the worker stays alive; well-formed records sent
after them are still processed; and the read model agrees with the worker's state about them.

Hostile means the agent cannot apply the record: bytes that are not a record of the topic, valid
JSON of the wrong shape, values PostgreSQL cannot hold (a NUL character in any string field the
agent stores or looks up by; an integer past the read model's columns), a control record keyed by
another source, a date at the end of the calendar that the fold's arithmetic overflows, a plan or
batch of a source that cannot be read, and records of hundreds of kilobytes (within the broker's
record limit) whose dead letters must stay within theirs. A record an agent does apply (a projection
stores a NUL in a text column as U+FFFD, by design) is not generated as hostile.

The year-9999 sync request is the one record the fold answers instead: its clock is the broker's
timestamp, and a record dated far after it is refused and answered `sync.rejected`
(app.core.admission). The oracle accepts either outcome for it, dead-lettered (a fold that overflows)
or answered.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from app import codec, topology
from app.core import poison
from app.core.intake import dead_letter_id as delivery_dead_letter_id
from app.events import Delivery
from app.store.db import migrate
from tests.support import gitrepo
from tests.support.kafka import read_all
from tests.support.services import isolated_settings, wait_until
from tests.support.stack import WorkerProcess, write_instances

EXAMPLES = int(os.environ.get("HOOKSTREAM_HOSTILE_EXAMPLES", "12"))
T = "2026-05-01T12:00:00Z"
END_OF_TIME = "9999-12-31T23:59:59.999999Z"
HUGE = 600 * 1024  # bytes: within the record limit of every topic
HUGE_DELIVERY = 1_000_000  # a body at the ingress's default limit: its dead letter cannot carry it whole

AGENT_OF = {
    "hookstream.deliveries": "deduplicate_deliveries",
    "hookstream.sync.control": "orchestrate_syncs",
    "hookstream.sync.plans": "plan_syncs",
    "hookstream.files.batches": "process_file_batches",
    "hookstream.sync.events": "project_sync_jobs",
    "hookstream.sync.completed": "project_sync_jobs",
    "hookstream.dlq": "project_dead_letters",
}
STAGES = {"decode", "validate", "route", "dedup", "fold", "project", "plan", "batch"}


def dumps(value: Any) -> bytes:
    """JSON as a producer may write it: integers of any size (orjson stops at 64 bits), NUL as \\u0000."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


@dataclass
class Stack:
    loop: asyncio.AbstractEventLoop
    settings: Any
    worker: WorkerProcess
    producer: AIOKafkaProducer
    repo: str
    sent: dict[str, int] = field(default_factory=dict)  # agent -> hostile records it dead-lettered
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    def run(self, coro):
        return self.loop.run_until_complete(coro)


@pytest.fixture(scope="module")
def stack(broker, postgres, tmp_path_factory):
    """One worker for every example (a worker starts in seconds, an example runs in one or two)."""
    loop = asyncio.new_event_loop()
    tmp = tmp_path_factory.mktemp("hostile")
    repo = tmp / "repo"
    gitrepo.build_repo(repo, files={"a.md": b"alpha\n", "docs/b.md": b"beta\n"})
    instances = write_instances(tmp / "instances.toml", [{"plugin": "generic-hmac", "id": "a", "secret": "s"}])
    s = isolated_settings(
        broker.bootstrap,
        postgres.url,
        instances_file=instances,
        retry_attempts=1,
        retry_base_seconds=0.05,
        retry_max_seconds=0.1,
    )
    loop.run_until_complete(topology.apply(s))
    loop.run_until_complete(migrate(s))

    async def started_producer() -> AIOKafkaProducer:
        # Records up to the deliveries topic's limit (1.5 MB): aiokafka's default request limit is 1 MiB.
        producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap_servers, acks="all", max_request_size=1_600_000)
        await producer.start()
        return producer

    producer = loop.run_until_complete(started_producer())
    worker = WorkerProcess(s, tmp / "rocks", tmp / "worker.log").start()
    try:
        yield Stack(loop, s, worker, producer, str(repo))
    finally:
        worker.stop()
        loop.run_until_complete(producer.stop())
        loop.close()


# -- hostile values ------------------------------------------------------------------------------

# A string with a NUL in it, and now and then other control characters and a bidi override.
nul_text = st.builds(
    lambda a, junk, b: a + "\x00" + junk + b,
    st.text(max_size=12),
    st.sampled_from(["", "\n", "\x1b[31m", "\u202e", "\r\n", "\x7f"]),
    st.text(max_size=12),
)
huge_int = st.one_of(st.integers(2**31, 2**40), st.integers(2**64, 2**70))
# Bytes that are no record: garbage, or JSON of another shape.
json_of_another_shape = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8,
).map(orjson.dumps)
garbage = st.one_of(
    st.binary(max_size=300).map(lambda b: b"\xff" + b),
    json_of_another_shape,
    st.just(b'{"type": "sync.requested"'),
    st.just(b""),
)


def leaves(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every string leaf of a JSON value."""
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in leaves(v, path + (k,))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in leaves(v, path + (i,))]
    return []


def replaced(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = replaced(value[head], rest, new)
    return copy


@st.composite
def with_nul(draw, base: dict, only: tuple[str, ...] | None = None) -> dict:
    """`base` with a NUL (and maybe more) in one of its string fields (or one of `only`)."""
    paths = [p for p in leaves(base) if only is None or p[0] in only]
    path = draw(st.sampled_from(paths))
    return replaced(base, path, draw(nul_text))


# -- the records of each topic -------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    topic: str  # logical
    key: bytes
    value: bytes
    why: str
    answered_by: str | None = None  # a request id: the oracle also accepts its answer (see the docstring)


def control_bases(n: int) -> list[dict]:
    source = f"hostile:{n}"
    common = {"source_id": source, "occurred_at": T}
    return [
        {
            "type": "sync.requested",
            **common,
            "request_id": f"h-{n}",
            "mode": "full",
            "trigger": "manual",
            "paths": ["a.md"],
            "before": "b",
            "after": "a",
            "branch": "main",
        },
        {
            "type": "source.connected",
            **common,
            "source_type": "git",
            "name": "n",
            "config": {"path": "/nowhere", "x": ["y"]},
        },
        {"type": "source.disconnected", **common, "reason": "gone"},
        {"type": "source.config_changed", **common, "config_path": ".hookstream.yml", "commit": "c"},
        {"type": "source.updated", **common, "name": "n", "config": {"branch": "main"}},
        {"type": "sync.planned", **common, "job_id": f"{source}:1", "batch_count": 1, "file_count": 1, "commit": "c"},
        {"type": "sync.plan_failed", **common, "job_id": f"{source}:1", "error": "e"},
        {"type": "batch.completed", **common, "job_id": f"{source}:1", "batch_index": 0, "errors": ["e"]},
        {"type": "sync.deadline_reached", **common, "job_id": f"{source}:1"},
    ]


@st.composite
def hostile_control(draw, n: int) -> Hostile:
    kind = draw(st.sampled_from(["garbage", "nul", "key", "end_of_time", "huge"]))
    if kind == "garbage":
        return Hostile("hookstream.sync.control", f"hostile:{n}".encode(), draw(garbage), kind)
    if kind == "huge":
        return Hostile("hookstream.sync.control", f"hostile:{n}".encode(), b"\xff" + b"x" * HUGE, kind)
    base = draw(st.sampled_from(control_bases(n)))
    if kind == "end_of_time":
        request = {**control_bases(n)[0], "occurred_at": END_OF_TIME}
        return Hostile(
            "hookstream.sync.control",
            request["source_id"].encode(),
            dumps(request),
            kind,
            answered_by=request["request_id"],
        )
    if kind == "key":  # keyed by another source: it would fold into that source's state
        return Hostile("hookstream.sync.control", f"other:{n}".encode(), dumps(base), kind)
    record = draw(with_nul(base))
    return Hostile("hookstream.sync.control", record["source_id"].encode("utf-8"), dumps(record), kind)


def plan_base(n: int) -> dict:
    return {
        "type": "sync.plan_requested",
        "job_id": f"hostile-plan:{n}:7",
        "source_id": f"hostile-plan:{n}",
        "source_type": "git",
        "source_config": {"path": f"/nowhere/{n}"},
        "mode": "incremental",
        "paths": ["a.md"],
        "base": "b",
        "after": "a",
        "requested_at": T,
    }


@st.composite
def hostile_plan(draw, n: int) -> Hostile:
    kind = draw(st.sampled_from(["garbage", "unreadable", "nul", "end_of_time"]))
    if kind == "garbage":
        return Hostile("hookstream.sync.plans", f"hostile-plan:{n}:7".encode(), draw(garbage), kind)
    record = plan_base(n)  # a source that cannot be listed: the path does not exist
    if kind == "nul":
        record = draw(with_nul(record))
    elif kind == "end_of_time":
        record["requested_at"] = END_OF_TIME
    return Hostile("hookstream.sync.plans", str(record["job_id"]).encode(), dumps(record), kind)


def batch_base(n: int) -> dict:
    return {
        "type": "files.batch",
        "job_id": f"hostile-batch:{n}:7",
        "source_id": f"hostile-batch:{n}",
        "source_type": "git",
        "source_config": {"path": f"/nowhere/{n}"},
        "batch_index": 0,
        "batch_count": 1,
        "commit": "c",
        "files": [{"type": "file.change", "path": "a.md", "change": "upsert", "blob": "0" * 40}],
    }


@st.composite
def hostile_batch(draw, n: int) -> Hostile:
    kind = draw(st.sampled_from(["garbage", "unreadable", "nul", "huge"]))
    if kind == "garbage":
        return Hostile("hookstream.files.batches", f"hostile-batch:{n}:7/0".encode(), draw(garbage), kind)
    record = batch_base(n)
    if kind == "nul":
        record = draw(with_nul(record))
    elif kind == "huge":  # a batch listing many long paths, none of which can be read
        record["files"] = [
            {"type": "file.change", "path": f"{i:06d}/" + "p" * 2000, "change": "upsert", "blob": "0" * 40}
            for i in range(HUGE // 2100)
        ]
    return Hostile("hookstream.files.batches", f"{record['job_id']}/0".encode("utf-8", "replace"), dumps(record), kind)


@st.composite
def hostile_sync_record(draw, n: int) -> Hostile:
    """Lifecycle events and completions: the projection looks a job's row up by its job id, and its
    counts are integer columns."""
    kind = draw(st.sampled_from(["garbage", "nul_job", "huge_count"]))
    topic = draw(st.sampled_from(["hookstream.sync.events", "hookstream.sync.completed"]))
    if kind == "garbage":
        return Hostile(topic, f"hostile-jobs:{n}".encode(), draw(garbage), kind)
    job = f"hostile-jobs:{n}:3"
    if topic == "hookstream.sync.events":
        record = {
            "type": "sync.started",
            "source_id": f"hostile-jobs:{n}",
            "occurred_at": T,
            "request_ids": [f"hj-{n}"],
            "job_id": job,
            "mode": "full",
            "trigger": "manual",
            "deadline": T,
        }
        if kind == "huge_count":  # a started job has no counts: a queued one with a NUL job id instead
            record = {
                "type": "sync.queued",
                "source_id": f"hostile-jobs:{n}",
                "occurred_at": T,
                "request_ids": [f"hj-{n}"],
                "job_id": job,
                "mode": "full",
            }
            kind = "nul_job"
    else:
        record = {
            "type": "sync.completed",
            "job_id": job,
            "source_id": f"hostile-jobs:{n}",
            "request_ids": [f"hj-{n}"],
            "mode": "full",
            "trigger": "manual",
            "status": "succeeded",
            "started_at": T,
            "finished_at": T,
            "duration_ms": 1,
        }
        if kind == "huge_count":
            record[draw(st.sampled_from(["processed", "failed", "files_listed", "batches"]))] = draw(huge_int)
    if kind == "nul_job":
        record["job_id"] = draw(nul_text)
    return Hostile(topic, str(record["source_id"]).encode(), dumps(record), kind)


@st.composite
def hostile_dead_letter(draw, n: int) -> Hostile:
    """Records on hookstream.dlq itself: the row is looked up by its id; attempts and positions are integers."""
    kind = draw(st.sampled_from(["garbage", "nul_id", "huge_number", "nul_redrive"]))
    key = f"hostile-dl-{n}".encode()
    if kind == "garbage":
        return Hostile("hookstream.dlq", key, draw(garbage), kind)
    if kind == "nul_redrive":
        record = {"type": "dlq.redrive_accepted", "dead_letter_id": draw(nul_text), "key": "k", "accepted_at": T}
        return Hostile("hookstream.dlq", key, dumps(record), kind)
    record = {
        "type": "dlq.dead_lettered",
        "dead_letter_id": f"hostile-dl-{n}",
        "key": "k",
        "stage": "s",
        "error": "e",
        "failed_at": T,
        "source_topic": "elsewhere",
        "source_partition": 0,
        "source_offset": 0,
        "raw": base64.b64encode(b"x").decode(),
    }
    if kind == "nul_id":
        record["dead_letter_id"] = draw(nul_text)
    else:
        name = draw(st.sampled_from(["attempt", "source_partition", "source_offset"]))
        record[name] = draw(st.integers(2**64, 2**70) if name == "source_offset" else huge_int)  # bigint / integer
    return Hostile("hookstream.dlq", key, dumps(record), kind)


def delivery_base(n: int) -> dict:
    return {
        "type": "delivery",
        "delivery_id": f"hostile-{n}",
        "plugin": "generic-hmac",
        "instance": "a",
        "route": "r",
        "received_at": T,
        "headers": {"x-kind": "v"},
        "body": base64.b64encode(b"not a producer event").decode(),
    }


@st.composite
def hostile_delivery(draw, n: int) -> Hostile:
    """Deliveries of the configured instance whose body is no producer event, with hostile fields."""
    kind = draw(st.sampled_from(["garbage", "nul", "time", "huge"]))
    if kind == "garbage":
        return Hostile("hookstream.deliveries", f"generic-hmac/a/hostile-{n}".encode(), draw(garbage), kind)
    record = delivery_base(n)
    if kind == "nul":
        record = draw(with_nul(record, only=("delivery_id", "plugin", "instance", "route", "headers")))
    elif kind == "time":
        record["received_at"] = draw(st.sampled_from([END_OF_TIME, "0001-01-01T00:00:00Z", "2026-13-45T99:99:99Z"]))
    else:
        record["body"] = base64.b64encode(b"\xff" * HUGE_DELIVERY).decode()
    key = f"{record['plugin']}/{record['instance']}/{record['delivery_id']}".encode()
    return Hostile("hookstream.deliveries", key, dumps(record), kind)


def hostile_records(n: int):
    agents = [
        hostile_control(n),
        hostile_plan(n),
        hostile_batch(n),
        hostile_sync_record(n),
        hostile_dead_letter(n),
        hostile_delivery(n),
    ]
    return st.tuples(*agents).flatmap(
        lambda first: st.lists(st.one_of(*agents), max_size=3).map(lambda more: [*first, *more])
    )


# -- the oracle ----------------------------------------------------------------------------------


def expected_dead_letter(h: Hostile) -> str:
    """The id of the dead letter a hostile record must end as (app.core.poison, as every agent builds it;
    a delivery that decoded but cannot be routed: the dedup stage's one dead letter per delivery key)."""
    if h.topic == "hookstream.deliveries":
        try:
            delivery = codec.decode(Delivery, h.value)
        except codec.DecodeError:
            return poison.id_of(h.topic, h.key, h.value)
        return delivery_dead_letter_id(delivery.key)
    return poison.id_of(h.topic, h.key, h.value)


async def query(settings, text: str, params=()) -> list[tuple]:
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, options=f"-c search_path={settings.database_schema}", autocommit=True
    ) as conn:
        return await (await conn.execute(text, params)).fetchall()


async def produce(stack: Stack, records: list[tuple[str, bytes, bytes]]) -> None:
    futures = [
        await stack.producer.send(stack.settings.topic(topic), key=key, value=value) for topic, key, value in records
    ]
    await asyncio.gather(*futures)


def good_records(stack: Stack, n: int) -> tuple[list[tuple[str, bytes, bytes]], dict[str, str]]:
    """One well-formed record per agent, and what each must leave behind."""
    request = {
        "type": "sync.requested",
        "source_id": f"good:{n}",
        "occurred_at": T,
        "request_id": f"good-{n}",
        "mode": "full",
        "trigger": "manual",
    }
    delivery = {**delivery_base(n), "delivery_id": f"good-{n}", "body": base64.b64encode(dumps(request)).decode()}
    plan = {
        "type": "sync.plan_requested",
        "job_id": f"good-plan:{n}:1",
        "source_id": f"good-plan:{n}",
        "source_type": "git",
        "source_config": {"path": stack.repo},
        "mode": "full",
        "requested_at": T,
    }
    completion = {
        "type": "sync.completed",
        "job_id": f"good-job:{n}:1",
        "source_id": f"good-job:{n}",
        "request_ids": [f"good-job-{n}"],
        "mode": "full",
        "trigger": "manual",
        "status": "succeeded",
        "started_at": T,
        "finished_at": T,
        "duration_ms": 1,
    }
    letter = {
        "type": "dlq.dead_lettered",
        "dead_letter_id": f"good-dl-{n}",
        "key": "k",
        "stage": "s",
        "error": "e",
        "failed_at": T,
        "source_topic": "elsewhere",
        "raw": base64.b64encode(b"x").decode(),
    }
    records = [
        ("hookstream.deliveries", f"generic-hmac/a/good-{n}".encode(), dumps(delivery)),
        ("hookstream.sync.plans", plan["job_id"].encode(), dumps(plan)),
        ("hookstream.sync.completed", completion["source_id"].encode(), dumps(completion)),
        ("hookstream.dlq", b"k", dumps(letter)),
    ]
    return records, {
        "request": f"good-{n}",
        "plan_source": f"good-plan:{n}",
        "job": f"good-job:{n}:1",
        "dead_letter": f"good-dl-{n}",
    }


async def run_example(stack: Stack, n: int, hostile: list[Hostile]) -> None:
    s = stack.settings
    await produce(stack, [(h.topic, h.key, h.value) for h in hostile])
    good, marks = good_records(stack, n)
    await produce(stack, good)
    expected = {expected_dead_letter(h): h for h in hostile}

    async def settled():
        assert stack.worker.alive(), f"the worker died:\n{stack.worker.log_tail()}"
        rows = {
            r[0]: r
            for r in await query(
                s,
                "SELECT dead_letter_id, stage, error, status FROM dlq WHERE dead_letter_id = ANY(%s)",
                (list(expected) + [marks["dead_letter"]],),
            )
        }
        answered = {
            r[0]
            for r in await query(
                s,
                "SELECT request_id FROM sync_requests WHERE request_id = ANY(%s)",
                ([marks["request"]] + [h.answered_by for h in hostile if h.answered_by],),
            )
        }
        missing = [
            h.why + ":" + h.topic for i, h in expected.items() if i not in rows and h.answered_by not in answered
        ]
        documents = await query(s, "SELECT path FROM documents WHERE source_id = %s", (marks["plan_source"],))
        job = await query(s, "SELECT status FROM sync_jobs WHERE job_id = %s", (marks["job"],))
        good_done = (
            marks["request"] in answered
            and len(documents) == 2
            and job == [("succeeded",)]
            and marks["dead_letter"] in rows
        )
        return (rows, answered) if not missing and good_done else None

    rows, answered = await wait_until(
        settled, timeout=40, interval=0.3, what=f"example {n}'s dead letters and good records"
    )
    for ident, h in expected.items():
        if ident in rows:
            stack.sent[AGENT_OF[h.topic]] = stack.sent.get(AGENT_OF[h.topic], 0) + 1
            _, stage, error, status = rows[ident]
            assert stage in STAGES and error and status == "open", (h, rows[ident])
            if h.why in ("garbage",) and h.value[:1] == b"\xff":
                assert stage == "decode", (h.why, stage, error)
        else:
            assert h.answered_by in answered, h

    # The worker's state and the read model agree about each dead-lettered control record: a source
    # whose connection was dead-lettered is unknown to both (a request for it is rejected, no row).
    dead_sources = set()
    for ident, h in expected.items():
        if h.topic == "hookstream.sync.control" and ident in rows:
            try:
                record = orjson.loads(h.value)
            except orjson.JSONDecodeError:
                continue
            if (
                isinstance(record, dict)
                and record.get("type") == "source.connected"
                and "\x00" not in str(record.get("source_id"))
            ):
                dead_sources.add(record["source_id"])
    if dead_sources:
        checks = [
            {
                "type": "sync.requested",
                "source_id": src,
                "occurred_at": T,
                "request_id": f"check-{n}-{i}",
                "mode": "full",
                "trigger": "manual",
            }
            for i, src in enumerate(sorted(dead_sources))
        ]
        await produce(stack, [("hookstream.sync.control", c["source_id"].encode(), dumps(c)) for c in checks])

        async def rejected():
            got = await query(
                s,
                "SELECT request_id, answer, reason FROM sync_requests WHERE request_id = ANY(%s)",
                ([c["request_id"] for c in checks],),
            )
            return got if len(got) == len(checks) else None

        answers = await wait_until(rejected, timeout=20, interval=0.3, what="the checks of dead-lettered connections")
        assert all(answer == "rejected" and reason == "unknown source" for _, answer, reason in answers), answers
        assert await query(s, "SELECT source_id FROM sources WHERE source_id = ANY(%s)", (sorted(dead_sources),)) == []


# No shrinking: each example runs against one long-lived worker, and the note says what it sent.
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(data=st.data())
def test_no_hostile_record_stops_an_agent_or_vanishes(stack, data):
    n = next(stack.counter)
    hostile = data.draw(hostile_records(n), label="hostile records")
    note(f"example {n}: " + ", ".join(f"{h.topic.removeprefix('hookstream.')}/{h.why}" for h in hostile))
    stack.run(run_example(stack, n, hostile))


def test_the_dead_letters_are_on_the_topic_and_counted_per_agent(stack):
    """After the property: every dead letter of the table is also a record of hookstream.dlq, and the
    worker counted at least one dead letter per hostile record it dead-lettered, agent by agent."""
    s = stack.settings
    assert stack.sent, "the property ran first (module order)"
    table = {r[0] for r in stack.run(query(s, "SELECT dead_letter_id FROM dlq WHERE stage <> 's'"))}
    on_topic = set()
    for _, value, _, _ in stack.run(read_all(s, "hookstream.dlq", timeout=20, idle=1.0, decode=False)):
        try:
            record = codec.decode_topic("hookstream.dlq", value)
        except codec.DecodeError:
            continue  # one of the hostile records produced to the topic
        if record.type == "dlq.dead_lettered":
            on_topic.add(record.dead_letter_id)
    assert table <= on_topic
    metrics = stack.run(_metrics(stack.worker.metrics_url))
    counted: dict[str, float] = {}
    for agent, value in re.findall(
        r'hookstream_records_dead_lettered_total\{agent="([^"]+)",stage="[^"]+"\} (\S+)', metrics
    ):
        counted[agent] = counted.get(agent, 0) + float(value)
    for agent, sent in stack.sent.items():
        assert counted.get(agent, 0) >= sent, (agent, counted, stack.sent)
    assert stack.worker.alive()


async def _metrics(url: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(url) as response:
            return await response.text()
