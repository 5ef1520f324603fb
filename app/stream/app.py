"""The Faust app factory: everything built from `Settings`, nothing at import."""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import faust

from app.embedded import tansu_quirks
from app.instances import InstanceConfig
from app.settings import Settings
from app.stream import faust_tuning
from app.stream.metrics import WorkerMetrics

log = logging.getLogger(__name__)

# Agent modules, each with `register(worker)`.
STREAM_MODULES = (
    "app.stream.dedup",
    "app.stream.dlq",
    "app.stream.orchestrate",
    "app.stream.plan",
    "app.stream.batches",
    "app.stream.projections",
    "app.stream.retention",
    "app.stream.ledger",
    "app.stream.health",
)

# Topics every worker consumes or produces; the worker refuses to start without them.
WORKER_TOPICS = [
    "hookstream.deliveries",
    "hookstream.sync.control",
    "hookstream.sync.plans",
    "hookstream.sync.events",
    "hookstream.sync.completed",
    "hookstream.sync.cancellations",
    "hookstream.files.batches",
    "hookstream.dlq",
    "hookstream.deliveries.outcomes",
    "hookstream.dedup.changelog",
    "hookstream.sources.changelog",
]


@dataclass
class Worker:
    """The Faust app plus what the agents share."""

    app: faust.App
    settings: Settings
    instances: dict[tuple[str, str], InstanceConfig]
    metrics: WorkerMetrics
    topics: dict[str, Any] = field(default_factory=dict)
    _pool: Any = None
    _pool_lock: Any = None

    _source_options: Any = None

    def source_options(self):
        """Options every source adapter shares (built once: installation tokens are cached in it)."""
        if self._source_options is None:
            from app.sources import SourceOptions

            s = self.settings
            key = s.github_private_key_file.read_text() if s.github_private_key_file else None
            self._source_options = SourceOptions(
                git_readers=s.batch_concurrency,
                git_roots=s.git_root_paths(),
                github_api_url=s.github_api_url,
                github_app_id=s.github_app_id,
                github_private_key=key,
                github_token=s.github_token.get_secret_value() if s.github_token else None,
                linear_api_url=s.linear_api_url,
                linear_api_key=s.linear_api_key.get_secret_value() if s.linear_api_key else None,
                http_timeout_seconds=s.source_http_timeout_seconds,
                max_retries=s.retry_attempts,
                retry_base_seconds=s.retry_base_seconds,
                retry_max_seconds=s.retry_max_seconds,
                # A linear source's `token_env` names one of these (LINEAR_* only, see app.sources.linear).
                environ={k: v for k, v in os.environ.items() if k.startswith(("LINEAR_", "HOOKSTREAM_LINEAR_"))},
            )
        return self._source_options

    _adapters: Any = None

    async def adapter(self, source_type: str, config: dict):
        """A source adapter kept for reuse (a checked repository, an HTTP session, cached tokens).

        At most 64 are kept; the least recently used is closed.
        """
        from collections import OrderedDict

        import orjson

        from app.sources import get_adapter

        if self._adapters is None:
            self._adapters = OrderedDict()
        key = (source_type, orjson.dumps(config, option=orjson.OPT_SORT_KEYS))
        adapter = self._adapters.pop(key, None)
        if adapter is None:
            adapter = get_adapter(source_type, config, self.source_options())
        self._adapters[key] = adapter
        while len(self._adapters) > 64:
            _, old = self._adapters.popitem(last=False)
            await old.aclose()
        return adapter

    async def pool(self):
        """The PostgreSQL pool, opened on first use (agents that never touch the database never open it)."""
        import asyncio

        if self._pool_lock is None:
            self._pool_lock = asyncio.Lock()
        async with self._pool_lock:
            if self._pool is None:
                from app.store.db import open_pool

                pool = open_pool(self.settings, min_size=1, max_size=4 + self.settings.batch_concurrency)
                await pool.open(wait=True, timeout=30)
                self._pool = pool
        return self._pool

    def topic(self, logical: str, **kwargs: Any):
        """The Faust topic for a declared topic (raw bytes in and out; the codec decodes)."""
        if logical not in self.topics:
            self.topics[logical] = self.app.topic(
                self.settings.topic(logical),
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
                **kwargs,
            )
        return self.topics[logical]

    def changelog_topic(self, logical: str):
        """The changelog topic of a table, declared as Faust declares its own: without acks.

        Faust's livelock detector checks every assigned partition of an acking topic whose
        stream has unprocessed records. Once a table is recovered no stream reads its
        changelog, so an acking changelog was reported as stalled ("Stream has not started
        processing", every 2.5 s per partition) as soon as it held a record. `maxsize` and
        `allow_empty` are Faust's changelog values too (recovery reads without committing).
        """
        return self.topic(logical, acks=False, maxsize=131_072, allow_empty=True)


def is_ready(app: faust.App) -> bool:
    recovery = getattr(app.tables, "recovery", None)
    return bool(
        app.rebalancing_count > 0
        and not app.rebalancing
        and recovery is not None
        and recovery.completed.is_set()
        and app.flow_control.is_active()
    )


def create_worker(settings: Settings, instances: dict[tuple[str, str], InstanceConfig] | None = None) -> Worker:
    tansu_quirks.install(settings)
    app = faust.App(
        f"{settings.topic_prefix}{settings.worker_id}",
        broker=[f"kafka://{hp}" for hp in settings.kafka_bootstrap_servers.split(",")],
        store="rocksdb://",
        datadir=str(settings.worker_data_dir),
        processing_guarantee="at_least_once",
        broker_session_timeout=settings.broker_session_timeout_seconds,
        broker_heartbeat_interval=max(1.0, settings.broker_session_timeout_seconds / 5),
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        stream_processing_timeout=settings.stream_processing_timeout_seconds,
        topic_partitions=8,
        topic_disable_leader=True,
        topic_allow_declare=False,
        table_standby_replicas=0,
        key_serializer="raw",
        value_serializer="raw",
        web_host=settings.worker_web_host,
        web_port=settings.worker_web_port,
        web_bind=settings.worker_web_host,
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        # Fewer, fuller produce requests (docs/performance.md: the largest single gain for table writes);
        # a commit still sends at once (faust_tuning flushes without waiting out the linger).
        producer_linger_ms=50,
        producer_max_batch_size=1024 * 1024,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
    )
    faust_tuning.install(
        app, settings.consumer_fetch_max_wait_ms
    )  # every change to Faust's own behaviour, each with its reason and test
    worker = Worker(app, settings, instances if instances is not None else settings.instances(), WorkerMetrics())

    from prometheus_client import generate_latest

    @app.page("/metrics")
    async def metrics_page(web, request):
        return web.bytes(generate_latest(worker.metrics.registry), content_type="text/plain; version=0.0.4")

    @app.page("/readyz")
    async def readiness_page(web, request):
        """200 once the worker has joined its group, recovered its tables and resumed its streams
        (what `hookstream dev` waits for before it says "up"), 503 until then and during a rebalance."""
        ready = is_ready(app)
        body = {
            "ready": ready,
            "partitions": len(app.consumer.assignment()) if ready else 0,
            "rebalancing": bool(app.rebalancing),
        }
        return web.json(body, status=200 if ready else 503)

    for name in STREAM_MODULES:
        importlib.import_module(name).register(worker)
    return worker
