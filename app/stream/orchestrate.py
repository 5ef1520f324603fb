"""`orchestrate_syncs`: fold every control event of a source into its state; send the effects.

All decisions are `core.source_state.fold`, at the record's broker timestamp
(`core.admission.fold_record`: a sender does not choose the fold's clock, and a
record that would grow the state past its bound is refused). Crash safety by order: the fold's
effects are acknowledged by the broker (and `EnsureSource` committed in
PostgreSQL) before the new state is stored; a crash in between re-folds the
same event from the old state and re-sends the same effects (job ids are
derived from offsets, downstream stages are idempotent). The reverse order
would lose effects: the state's offset fence would skip the replayed event.

The `sources` projection of each record runs here too, after the fold and
before the effects: a topic must have one agent
(`app.stream.projections.project_sources_record` says why).

A record that cannot be applied (it does not decode, is keyed by another
source, holds what PostgreSQL cannot store, makes the fold raise, is refused by
the projection) is dead-lettered before any of its effects, its state or its
projection exists (`app.stream.poison`): the state and the read model agree.
"""

from __future__ import annotations

import functools
import logging

from app import codec
from app.core.admission import broker_datetime, fold_record
from app.core.effects import Destination, Effect, EnsureSource, Ignored, Refused, destination
from app.core.poison import MAX_RECORD_BYTES, CannotApply, control_key_problem, unstorable
from app.core.policy import Policy
from app.core.source_state import SourceState, overdue_job
from app.events import ControlRecord, DeadlineReached, utcnow
from app.store import documents
from app.store.db import in_transaction
from app.stream import faust_tuning
from app.stream.app import Worker
from app.stream.job_log import JobLog
from app.stream.poison import DeadLetters, stage
from app.stream.projections import project_sources_record
from app.stream.source_states import readable_states

log = logging.getLogger(__name__)

CONTROL = "hookstream.sync.control"


def policy_from(settings) -> Policy:
    return Policy(
        deadline_seconds=settings.sync_deadline_seconds,
        idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
        max_state_bytes=settings.max_source_state_bytes,
        max_clock_skew_seconds=settings.max_clock_skew_seconds,
    )


def sendable(effects: list[Effect]) -> list[tuple[Destination, bytes]]:
    """The wire effects, encoded, in order; `CannotApply` when one is larger than a record may be."""
    out = []
    for effect in effects:
        if isinstance(effect, (EnsureSource, Ignored, Refused)):
            continue  # not records: carried out (or counted) by the agent itself
        where = destination(effect)
        assert where is not None
        value = codec.encode(effect)
        if len(value) > MAX_RECORD_BYTES:
            raise CannotApply(
                "fold",
                f"its {effect.type} effect would be {len(value)} bytes, over the {MAX_RECORD_BYTES} a record may have",
            )
        out.append((where, value))
    return out


def register(worker: Worker) -> None:
    app, settings, metrics = worker.app, worker.settings, worker.metrics
    control = worker.topic(CONTROL)
    policy = policy_from(settings)
    sources = app.Table(
        "sources",
        default=None,
        partitions=8,
        key_type=bytes,
        value_type=bytes,
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
            lambda conn: documents.ensure_source(
                conn, effect.source_id, effect.source_type, effect.config, effect.name
            ),
            f"ensuring source {effect.source_id}",
        )

    dead_letters = DeadLetters.of(worker, "orchestrate_syncs", CONTROL)

    async def apply(message) -> None:
        """One control record, or `CannotApply`: then nothing of it is anywhere (state, effects, read model)."""
        try:
            record = codec.decode(ControlRecord, message.value)
        except codec.DecodeError as exc:
            await project_sources_record(worker, message, None)
            raise CannotApply("decode", str(exc)) from None
        problem = control_key_problem(message.key, record.source_id) or unstorable(record)
        if problem is not None:
            raise CannotApply("validate", problem)
        key = message.key
        with stage("fold"):
            stored = sources.get(key)
            state = SourceState.from_json(stored) if stored is not None else None
            # The fold's clock is the record's broker timestamp (app.core.admission).
            timestamp_ms = round(message.timestamp * 1000) if message.timestamp is not None else None
            broker_time = broker_datetime(timestamp_ms)
            new_state, effects = fold_record(
                state, record, broker_time, message.offset, policy, missing_time=broker_time is None
            )
            outgoing = sendable(effects)
            state_value = new_state.to_json() if new_state is not None and new_state is not state else None
        # The record's PostgreSQL writes come before its effects and its state, so a record
        # PostgreSQL refuses is dead-lettered with no trace elsewhere; a crash after them
        # re-folds the record from the old state (the projection's fence skips it then).
        with stage("project"):
            await project_sources_record(worker, message, record)
            for effect in effects:
                if isinstance(effect, EnsureSource):
                    await ensure(effect)
        for effect in effects:
            if isinstance(effect, Ignored):
                metrics.control_ignored.labels(effect.reason).inc()
            elif isinstance(effect, Refused):
                log.warning(
                    "control event %s at %d/%d refused: %s",
                    effect.event_type,
                    message.partition,
                    message.offset,
                    effect.reason,
                )
                metrics.control_refused.labels(effect.event_type).inc()
        pending = [
            await sink(where.topic).send(key=codec.encode_key(where.key), value=value, force=True)
            for where, value in outgoing
        ]
        if pending:
            # Send now: awaiting the acks alone would wait out the producer's linger on
            # every control event (50 ms: the orchestrator then folds ~20 events a second).
            await app.producer.flush()
        for fut in pending:
            await fut
        if state_value is not None:
            sources[key] = state_value
        job_log.folded(record, effects)

    @app.agent(control, name="orchestrate_syncs", concurrency=1)
    async def orchestrate_syncs(stream):
        async for event in faust_tuning.events(stream):
            await dead_letters.guard(event.message, functools.partial(apply, event.message), "fold")

    @app.timer(interval=settings.deadline_check_interval_seconds)
    async def emit_reached_deadlines():
        """Put `DeadlineReached` into the control topic for overdue jobs, so the state change
        happens in the stream (and replays identically). Duplicates are ignored by the fold."""
        now = utcnow()
        for state in readable_states(sources, metrics, "its deadline is not checked"):
            job_id = overdue_job(state, now)
            if job_id is not None:
                reached = DeadlineReached(source_id=state.source_id, occurred_at=now, job_id=job_id)
                await control.send(key=codec.encode_key(state.source_id), value=codec.encode(reached), force=True)
                log.info("job %s of %s is past its deadline", job_id, state.source_id)
