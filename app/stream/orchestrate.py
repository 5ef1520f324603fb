"""`orchestrate_syncs`: fold every control event of a source into its state; send the effects.

All decisions are `core.source_state.fold`, at the record's broker timestamp
(`core.admission.fold_record`: a sender does not choose the fold's clock, and a
record that would grow the state past its bound is refused). Crash safety by order: the fold's
effects are acknowledged by the broker (and `EnsureSource` committed in
PostgreSQL) before the new state is stored; a crash in between re-folds the
same event from the old state and re-sends the same effects (job ids are
derived from offsets, downstream stages are idempotent). The reverse order
would lose effects: the state's offset fence would skip the replayed event.

The `sources` projection of each record runs here too, after the fold: a topic
must have one agent (`app.stream.projections.project_sources_record` says why).
"""

from __future__ import annotations

import logging

from app import codec
from app.core.admission import broker_datetime, fold_record
from app.core.effects import EnsureSource, Ignored, Refused, destination
from app.core.policy import Policy
from app.core.source_state import SourceState, overdue_job
from app.events import ControlRecord, DeadlineReached, utcnow
from app.store import documents
from app.store.db import in_transaction
from app.stream import faust_tuning
from app.stream.app import Worker
from app.stream.job_log import JobLog
from app.stream.projections import project_sources_record

log = logging.getLogger(__name__)


def policy_from(settings) -> Policy:
    return Policy(deadline_seconds=settings.sync_deadline_seconds, idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
                  max_state_bytes=settings.max_source_state_bytes, max_clock_skew_seconds=settings.max_clock_skew_seconds)


def register(worker: Worker) -> None:
    app, settings, metrics = worker.app, worker.settings, worker.metrics
    control = worker.topic("hookstream.sync.control")
    policy = policy_from(settings)
    sources = app.Table(
        "sources", default=None, partitions=8, key_type=bytes, value_type=bytes,
        changelog_topic=worker.changelog_topic("hookstream.sources.changelog"),
    )
    sinks: dict[str, object] = {}
    job_log = JobLog()

    def sink(logical: str):
        if logical not in sinks:
            sinks[logical] = worker.topic(logical)
        return sinks[logical]

    async def ensure(effect: EnsureSource) -> None:
        await in_transaction(
            await worker.pool(),
            lambda conn: documents.ensure_source(conn, effect.source_id, effect.source_type, effect.config, effect.name),
            f"ensuring source {effect.source_id}",
        )

    @app.agent(control, name="orchestrate_syncs", concurrency=1)
    async def orchestrate_syncs(stream):
        async for event in faust_tuning.events(stream):
            message = event.message
            try:
                record = codec.decode(ControlRecord, message.value)
            except codec.DecodeError as exc:
                log.error("undecodable control event at %d/%d ignored by rule: %s", message.partition, message.offset, exc)
                metrics.control_ignored.labels("undecodable").inc()
                await project_sources_record(worker, message, None)
                continue
            key = message.key or record.source_id.encode()
            stored = sources.get(key)
            state = SourceState.from_json(stored) if stored is not None else None
            timestamp_ms = round(message.timestamp * 1000) if message.timestamp is not None else None
            broker_time = broker_datetime(timestamp_ms)
            new_state, effects = fold_record(state, record, broker_time, message.offset, policy,
                                             missing_time=broker_time is None)
            pending = []
            for effect in effects:
                if isinstance(effect, Ignored):
                    metrics.control_ignored.labels(effect.reason).inc()
                    continue
                if isinstance(effect, Refused):
                    log.warning("control event %s at %d/%d refused: %s", effect.event_type, message.partition,
                                message.offset, effect.reason)
                    metrics.control_refused.labels(effect.event_type).inc()
                    continue
                if isinstance(effect, EnsureSource):
                    await ensure(effect)
                    continue
                where = destination(effect)
                pending.append(await sink(where.topic).send(
                    key=codec.encode_key(where.key), value=codec.encode(effect), force=True,
                ))
            if pending:
                # Send now: awaiting the acks alone would wait out the producer's linger on
                # every control event (50 ms: the orchestrator then folds ~20 events a second).
                await app.producer.flush()
            for fut in pending:
                await fut
            if new_state is not None and new_state is not state:
                sources[key] = new_state.to_json()
            job_log.folded(record, effects)
            await project_sources_record(worker, message, record)

    @app.timer(interval=settings.deadline_check_interval_seconds)
    async def emit_reached_deadlines():
        """Put `DeadlineReached` into the control topic for overdue jobs, so the state change
        happens in the stream (and replays identically). Duplicates are ignored by the fold."""
        now = utcnow()
        for key, raw in list(sources.data.items()):
            if raw is None:
                continue
            state = SourceState.from_json(raw)
            job_id = overdue_job(state, now)
            if job_id is not None:
                reached = DeadlineReached(source_id=state.source_id, occurred_at=now, job_id=job_id)
                await control.send(key=codec.encode_key(state.source_id), value=codec.encode(reached), force=True)
                log.info("job %s of %s is past its deadline", job_id, state.source_id)
