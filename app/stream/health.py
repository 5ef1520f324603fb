"""The worker's gauges, refreshed by timers: syncs running and queued, running batches, lag, dead letters.

Running and queued syncs come from this worker's share of the `sources` table
(the orchestrator's state: the partitions it holds), the lag from its consumer
(per stage: the agent reading the topic), the open dead letters from
PostgreSQL (a global figure: every worker reports the same one).
"""

from __future__ import annotations

import logging
from typing import Any

from app.core.fanin import is_complete
from app.store import dead_letters
from app.store.db import in_transaction
from app.stream.app import Worker
from app.stream.source_states import readable_states

log = logging.getLogger(__name__)

GAUGE_INTERVAL = 5.0
DEAD_LETTER_INTERVAL = 15.0


def register(worker: Worker) -> None:
    app, metrics = worker.app, worker.metrics

    @app.timer(interval=GAUGE_INTERVAL)
    async def refresh_sync_gauges() -> None:
        table: Any = app.tables.get("sources")
        if table is None:
            return
        running = queued = planned = done = 0
        for state in readable_states(table, metrics, "it is not in the sync gauges"):
            if state.active is not None:
                running += 1
                progress = state.active.progress
                planned += progress.batch_count or 0
                done += progress.reported if not is_complete(progress) else 0
            if state.pending is not None:
                queued += 1
        metrics.syncs_running.set(running)
        metrics.requests_queued.set(queued)
        metrics.running_batches.labels("planned").set(planned)
        metrics.running_batches.labels("done").set(done)

    stages: dict[str, str] = {}

    @app.timer(interval=GAUGE_INTERVAL)
    async def refresh_consumer_lag() -> None:
        if not stages:
            for agent in app.agents.values():
                for topic in agent.channel.topics:
                    stages[topic] = agent.name.rsplit(".", 1)[-1]
        consumer = app.consumer
        lag: dict[str, int] = {stage: 0 for stage in stages.values()}
        for tp in consumer.assignment():
            stage = stages.get(tp.topic)
            if stage is None:
                continue  # a table's changelog: read at recovery only
            highwater = consumer.highwater(tp)
            position = await consumer.position(tp)
            if highwater is not None and position is not None:
                lag[stage] += max(0, highwater - position)
        for stage, value in lag.items():
            metrics.consumer_lag.labels(stage).set(value)

    @app.timer(interval=DEAD_LETTER_INTERVAL)
    async def refresh_dead_letters() -> None:
        metrics.dead_letters_open.set(
            await in_transaction(await worker.pool(), dead_letters.open_count, "counting open dead letters")
        )
