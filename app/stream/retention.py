"""`prune_history`: the worker's retention timer (`app.store.retention`, like `hookstream db prune`).

Every HOOKSTREAM_PRUNE_INTERVAL_SECONDS, history older than HOOKSTREAM_RETENTION_DAYS is
deleted in one transaction; the rows deleted are counted in `hookstream_pruned_rows{table}`.
One worker prunes for all: the one assigned partition 0 of `hookstream.sync.control`.
Faust's own `on_leader` timers never run here: the worker disables Faust's leader topic
(`topic_disable_leader`), so no worker is ever Faust's leader. Two workers that both
believe they hold the partition during a rebalance prune the same rows: harmless.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from app.events import utcnow
from app.store import retention
from app.store.db import in_transaction
from app.stream.app import Worker

log = logging.getLogger(__name__)


def register(worker: Worker) -> None:
    app, settings = worker.app, worker.settings
    control = settings.topic("hookstream.sync.control")

    def prunes() -> bool:
        return any(tp.topic == control and tp.partition == 0 for tp in app.consumer.assignment())

    @app.timer(interval=settings.prune_interval_seconds)
    async def prune_history() -> None:
        if not prunes():
            return
        older_than = utcnow() - timedelta(days=settings.retention_days)
        counts = await in_transaction(
            await worker.pool(),
            lambda conn: retention.prune(conn, settings.database_schema, older_than),
            "pruning history",
        )
        for table, n in counts.items():
            if n:
                worker.metrics.pruned.labels(table).inc(n)
        if any(counts.values()):
            log.info(
                "pruned history older than %s: %s",
                older_than.isoformat(timespec="seconds"),
                ", ".join(f"{n} {table}" for table, n in counts.items() if n),
            )
