"""One source's orchestration state, and the fold that makes every decision about it.

`fold(state, event, now, offset, policy) -> (state, effects)` is docs/architecture.md's per-source orchestration as
one pure function: `now` is the event's timestamp and job ids come from the
event's offset, so replaying the control topic rebuilds the same state and the
same effects. Invariants it keeps:

- at most one active job and at most one queued (coalesced) job per source;
- an event at an offset <= `last_offset` changes nothing and emits nothing;
- every started job ends with exactly one `SyncCompleted`, whose counts are the
  sum over the distinct batch indexes reported while it was active;
- every request id is answered once: started, queued, coalesced, deduplicated,
  rejected or ignored (a push to a branch the source does not track); a
  redelivery of it (another offset) is `Ignored`;
- every plan request carries `base`, the commit the documents were last written
  to completely (the last job succeeded with no failed file), or None after a
  failed, cancelled or timed-out job, a partial one, or a change of the source's
  config: the planner then lists everything. A request's own `before` is never a
  base: pushes arrive out of order, and the documents need not be at it;
- the config file status is what a planner found (`SyncPlanned.config`), never
  what a delivery claims: the newest job's finding wins (`is_newer_config`), and
  every plan request carries the path rules in effect (`config_rules`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from app.core.coalesce import JobRequest, job_for, merge
from app.core.config_file import is_newer_config
from app.core.convergence import tracked_branch, untracked_push
from app.core.effects import Effect, EnsureSource, Ignored
from app.core.fanin import is_complete, planned, record, totals
from app.core.jobs import ActiveJob, fanin_outcome, plan_requested, sync_completed, sync_started, timeout_error
from app.core.policy import Policy, idempotency_key
from app.events import ControlRecord
from app.events.config import ConfigStatus as FoundStatus
from app.events.config import PathRules
from app.events.control import (
    BatchCompleted,
    DeadlineReached,
    PlanFailed,
    SourceConfigChanged,
    SourceConnected,
    SourceDisconnected,
    SourceType,
    SourceUpdated,
    SyncPlanned,
    SyncRequested,
)
from app.events.sync import (
    JobCancelled,
    SyncCancelled,
    SyncCoalesced,
    SyncDeduplicated,
    SyncIgnored,
    SyncQueued,
    SyncRejected,
    SyncStatus,
)

Connection = Literal["unknown", "connected", "disconnected"]
# The config file's status: "unknown" until a plan reads it, then what the planner found.
ConfigStatus = Literal["unknown"] | FoundStatus
# What a deduplicated request is told about the job holding its key.
KeyStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "timed_out"]

Step = tuple["SourceState", list[Effect]]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HeldKey(_Model):
    job_id: str
    expires_at: datetime
    status: KeyStatus


class LastResult(_Model):
    job_id: str
    status: SyncStatus
    finished_at: datetime


class SourceState(_Model):
    """Everything the orchestrator knows about one source; one RocksDB table value."""

    source_id: str
    connection: Connection = "unknown"
    source_type: SourceType | None = None
    name: str | None = None
    config: dict[str, Any] = {}
    config_status: ConfigStatus = "unknown"
    config_path: str | None = None
    config_commit: str | None = None
    config_error: str | None = None
    # The path rules the documents are written with (None: no plan has read a config yet),
    # and the job whose plan found them.
    config_rules: PathRules | None = None
    config_job: str | None = None
    # Whether EnsureSource was emitted since the source was last connected.
    store_ensured: bool = False
    active: ActiveJob | None = None
    pending: JobRequest | None = None
    keys: dict[str, HeldKey] = {}
    # Request id -> when it is forgotten: a redelivery before then starts nothing.
    seen_requests: dict[str, datetime] = {}
    last_result: LastResult | None = None
    # The commit the documents are at: that of the last job that succeeded with no failed
    # file. None when unknown, or when the last job left them partly written.
    synced_commit: str | None = None
    jobs_created: int = 0
    last_offset: int | None = None

    def to_json(self) -> bytes:
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes | str) -> SourceState:
        return cls.model_validate_json(raw)


def fold(
    state: SourceState | None, event: ControlRecord, now: datetime, offset: int | None, policy: Policy
) -> tuple[SourceState, list[Effect]]:
    """Apply one control event at `offset`, stamped `now`, to a source's state."""
    if state is None:
        state = SourceState(source_id=event.source_id)
    elif event.source_id != state.source_id:
        raise ValueError(f"event for source {event.source_id!r} folded into the state of {state.source_id!r}")
    if offset is not None and state.last_offset is not None and offset <= state.last_offset:
        return state, []
    try:
        handle = _HANDLERS[type(event)]
    except KeyError:
        raise TypeError(f"not a control event: {type(event).__name__}") from None
    state, effects = handle(_forget_expired(state, now), event, now, offset, policy)
    if offset is not None:
        state = state.model_copy(update={"last_offset": offset})
    return state, effects


def overdue_job(state: SourceState | None, now: datetime) -> str | None:
    """The id of the active job if it is past its deadline at `now`: the timer's question."""
    if state is None or state.active is None or now < state.active.deadline:
        return None
    return state.active.job.job_id


# -- requests ---------------------------------------------------------------------------


def _requested(state: SourceState, ev: SyncRequested, now: datetime, offset: int | None, policy: Policy) -> Step:
    rid = ev.request_id
    if _seen(state, rid):
        return state, [Ignored("duplicate_request", ev.type, request_id=rid)]
    state = _remember(state, rid, now, policy)
    if state.connection != "connected":
        reason = "source disconnected" if state.connection == "disconnected" else "unknown source"
        return state, [SyncRejected(source_id=state.source_id, occurred_at=now, request_ids=[rid], reason=reason)]
    if untracked_push(ev.branch, state.config):
        return state, [
            Ignored("untracked_branch", ev.type, request_id=rid),
            SyncIgnored(source_id=state.source_id, occurred_at=now, request_ids=[rid], rule="push.untracked_branch"),
        ]
    key = idempotency_key(ev, policy.idempotency_key_fields)
    held = state.keys.get(key)
    if held is not None and not ev.force:
        answer = SyncDeduplicated(
            source_id=state.source_id,
            occurred_at=now,
            request_ids=[rid],
            job_id=held.job_id,
            idempotency_key=key,
            held_by_job_id=held.job_id,
            held_status=held.status,
        )
        return state, [answer]
    if state.pending is not None:
        job = merge(state.pending, ev)
        state = _claim(state.model_copy(update={"pending": job}), key, job.job_id, "queued", now, policy)
        return state, [
            SyncCoalesced(
                source_id=state.source_id, occurred_at=now, request_ids=[rid], job_id=job.job_id, mode=job.mode
            )
        ]
    job_id = f"{state.source_id}:{offset}" if offset is not None else f"{state.source_id}:local-{state.jobs_created}"
    job = job_for(job_id, ev, now)
    state = state.model_copy(update={"jobs_created": state.jobs_created + 1})
    if state.active is None:
        return _start(_claim(state, key, job_id, "running", now, policy), job, now, policy)
    state = _claim(state.model_copy(update={"pending": job}), key, job_id, "queued", now, policy)
    return state, [
        SyncQueued(source_id=state.source_id, occurred_at=now, request_ids=[rid], job_id=job_id, mode=job.mode)
    ]


def _seen(state: SourceState, request_id: str) -> bool:
    return (
        request_id in state.seen_requests
        or (state.active is not None and request_id in state.active.job.request_ids)
        or (state.pending is not None and request_id in state.pending.request_ids)
    )


def _remember(state: SourceState, request_id: str, now: datetime, policy: Policy) -> SourceState:
    seen = {**state.seen_requests, request_id: now + policy.request_memory}
    if len(seen) > policy.max_remembered_requests:
        # Forget the ones due soonest (ties by id): deterministic, and bounded.
        keep = sorted(seen.items(), key=lambda kv: (kv[1], kv[0]))[-policy.max_remembered_requests :]
        seen = dict(keep)
    return state.model_copy(update={"seen_requests": seen})


def _claim(state: SourceState, key: str, job_id: str, status: KeyStatus, now: datetime, policy: Policy) -> SourceState:
    held = HeldKey(job_id=job_id, expires_at=now + policy.idempotency_ttl(state.source_type), status=status)
    keys = {**state.keys, key: held}
    if len(keys) > policy.max_held_keys:
        # Forget the keys due soonest (ties by key): deterministic, and bounded.
        keys = dict(sorted(keys.items(), key=lambda kv: (kv[1].expires_at, kv[0]))[-policy.max_held_keys :])
    return state.model_copy(update={"keys": keys})


def _forget_expired(state: SourceState, now: datetime) -> SourceState:
    """Drop idempotency keys and remembered request ids whose time is up (keeps the state bounded)."""
    keys = {k: h for k, h in state.keys.items() if now < h.expires_at}
    seen = {r: t for r, t in state.seen_requests.items() if now < t}
    if len(keys) == len(state.keys) and len(seen) == len(state.seen_requests):
        return state
    return state.model_copy(update={"keys": keys, "seen_requests": seen})


def _with_status(state: SourceState, job_id: str, status: KeyStatus) -> SourceState:
    keys = {k: (h.model_copy(update={"status": status}) if h.job_id == job_id else h) for k, h in state.keys.items()}
    return state.model_copy(update={"keys": keys})


# -- job lifecycle ----------------------------------------------------------------------


def _start(state: SourceState, job: JobRequest, now: datetime, policy: Policy) -> Step:
    """Make `job` the active job: announce it, ensure the store once per connection, request its plan."""
    assert state.source_type is not None, "a connected source has a type"
    active = ActiveJob(job=job, started_at=now, deadline=now + policy.deadline)
    effects: list[Effect] = [sync_started(state.source_id, active)]
    if not state.store_ensured:
        effects.append(EnsureSource(state.source_id, state.source_type, dict(state.config), state.name))
    effects.append(
        plan_requested(
            state.source_id, state.source_type, state.config, active, state.synced_commit, state.config_rules
        )
    )
    state = _with_status(state, job.job_id, "running")
    return state.model_copy(update={"active": active, "store_ensured": True}), effects


def _finish(state: SourceState, status: SyncStatus, error: str | None, now: datetime, policy: Policy) -> Step:
    """End the active job with `status` and its counts so far; start the queued job if the source is connected."""
    active = state.active
    assert active is not None
    job = active.job
    completed = sync_completed(state.source_id, active, status, error, now)
    effects: list[Effect] = []
    if status in ("cancelled", "timed_out", "failed") and not is_complete(active.progress):
        # A job that ends before its fan-in: batches not yet started are to be skipped.
        effects.append(JobCancelled(job_id=job.job_id, source_id=state.source_id, cancelled_at=now))
    effects.append(completed)
    state = _with_status(state, job.job_id, status).model_copy(
        update={
            "active": None,
            "last_result": LastResult(job_id=job.job_id, status=status, finished_at=now),
            "synced_commit": completed.commit if status == "succeeded" and not completed.failed else None,
        }
    )
    if state.pending is not None and state.connection == "connected":
        queued = state.pending
        state, started = _start(state.model_copy(update={"pending": None}), queued, now, policy)
        effects.extend(started)
    return state, effects


def _finish_if_complete(
    state: SourceState, active: ActiveJob, now: datetime, policy: Policy, effects: list[Effect]
) -> Step:
    state = state.model_copy(update={"active": active})
    if not is_complete(active.progress):
        return state, effects
    status, error = fanin_outcome(totals(active.progress))
    state, finished = _finish(state, status, error, now, policy)
    return state, effects + finished


def _active_job(state: SourceState, job_id: str) -> ActiveJob | None:
    return state.active if state.active is not None and state.active.job.job_id == job_id else None


def _planned(state: SourceState, ev: SyncPlanned, now: datetime, offset: int | None, policy: Policy) -> Step:
    state = _config_found(state, ev)
    active = _active_job(state, ev.job_id)
    if active is None:
        return state, [Ignored("late_plan", ev.type, job_id=ev.job_id)]
    if active.progress.batch_count is not None:
        return state, [Ignored("duplicate_plan", ev.type, job_id=ev.job_id)]
    progress = planned(active.progress, ev.batch_count)
    dropped = active.progress.reported - progress.reported
    effects: list[Effect] = [Ignored("batch_out_of_range", ev.type, job_id=ev.job_id)] * dropped
    active = active.model_copy(
        update={"progress": progress, "files_listed": ev.file_count, "commit": ev.commit, "listing": ev.listing}
    )
    return _finish_if_complete(state, active, now, policy, effects)


def _batch(state: SourceState, ev: BatchCompleted, now: datetime, offset: int | None, policy: Policy) -> Step:
    active = _active_job(state, ev.job_id)
    if active is None:
        return state, [Ignored("late_batch", ev.type, job_id=ev.job_id)]
    if active.progress.has(ev.batch_index):
        return state, [Ignored("duplicate_batch", ev.type, job_id=ev.job_id)]
    if not active.progress.in_range(ev.batch_index):
        return state, [Ignored("batch_out_of_range", ev.type, job_id=ev.job_id)]
    active = active.model_copy(update={"progress": record(active.progress, ev)})
    return _finish_if_complete(state, active, now, policy, [])


def _plan_failed(state: SourceState, ev: PlanFailed, now: datetime, offset: int | None, policy: Policy) -> Step:
    if _active_job(state, ev.job_id) is None:
        return state, [Ignored("late_plan_failure", ev.type, job_id=ev.job_id)]
    return _finish(state, "failed", ev.error, now, policy)


def _deadline(state: SourceState, ev: DeadlineReached, now: datetime, offset: int | None, policy: Policy) -> Step:
    active = _active_job(state, ev.job_id)
    if active is None:
        return state, [Ignored("late_deadline", ev.type, job_id=ev.job_id)]
    if now < active.deadline:
        return state, [Ignored("deadline_not_reached", ev.type, job_id=ev.job_id)]
    return _finish(state, "timed_out", timeout_error(active), now, policy)


# -- the source itself ------------------------------------------------------------------


def _connected(state: SourceState, ev: SourceConnected, now: datetime, offset: int | None, policy: Policy) -> Step:
    """Connect (or reconnect) the source. A source connected before with another type or config
    (another path, repository or branch) is at no known commit of the new one: its next sync
    lists everything, and a full sync is requested at once (trigger `config_change`)."""
    changed = state.source_type is not None and (state.source_type != ev.source_type or state.config != dict(ev.config))
    update: dict[str, Any] = {
        "connection": "connected",
        "source_type": ev.source_type,
        "config": dict(ev.config),
        # Type or config may differ from the last connection: ensure the store again.
        "store_ensured": False,
    }
    if changed:
        update["synced_commit"] = None
    if ev.name is not None:
        update["name"] = ev.name
    state = state.model_copy(update=update)
    if not changed:
        return state, []
    return _requested(state, _config_change_request(ev, offset, state.jobs_created), now, offset, policy)


def _config_change_request(ev: SourceConnected | SourceUpdated, offset: int | None, jobs_created: int) -> SyncRequested:
    """The full sync a change of a source's config asks for; its id is derived from the event's offset."""
    where = str(offset) if offset is not None else f"local-{jobs_created}"
    return SyncRequested(
        source_id=ev.source_id,
        occurred_at=ev.occurred_at,
        request_id=f"config-change:{where}",
        mode="full",
        trigger="config_change",
        force=True,
    )


def _disconnected(
    state: SourceState, ev: SourceDisconnected, now: datetime, offset: int | None, policy: Policy
) -> Step:
    """Cancel the active job (partial counts) and the queued one; forget every idempotency key."""
    queued = state.pending
    state = state.model_copy(update={"connection": "disconnected", "pending": None})
    effects: list[Effect] = []
    if state.active is not None:
        job = state.active.job
        effects.append(
            SyncCancelled(
                source_id=state.source_id,
                occurred_at=now,
                request_ids=list(job.request_ids),
                job_id=job.job_id,
                reason=ev.reason,
            )
        )
        state, finished = _finish(state, "cancelled", f"cancelled: {ev.reason}", now, policy)
        effects.extend(finished)
    if queued is not None:
        effects.append(
            SyncCancelled(
                source_id=state.source_id,
                occurred_at=now,
                request_ids=list(queued.request_ids),
                job_id=queued.job_id,
                reason=ev.reason,
            )
        )
    # A reconnected source starts fresh: a request after reconnecting is never answered
    # by a job of the previous connection.
    return state.model_copy(update={"keys": {}}), effects


def _config_found(state: SourceState, ev: SyncPlanned) -> SourceState:
    """Record the config file a plan found at its commit, unless a newer job's plan was recorded.
    Late and duplicate plans count too: what a planner read at a commit is true of that commit."""
    found = ev.config
    if found is None or not is_newer_config(state.config_job, ev.job_id):
        return state
    return state.model_copy(
        update={
            "config_status": found.status,
            "config_path": found.path,
            "config_commit": ev.commit,
            "config_error": found.error,
            "config_rules": found.rules,
            "config_job": ev.job_id,
        }
    )


def _config_changed(
    state: SourceState, ev: SourceConfigChanged, now: datetime, offset: int | None, policy: Policy
) -> Step:
    """Superseded (a delivery claimed a config file without reading it): counted, changes nothing."""
    return state, [Ignored("config_claim_superseded", ev.type)]


def _updated(state: SourceState, ev: SourceUpdated, now: datetime, offset: int | None, policy: Policy) -> Step:
    """New metadata (a renamed or transferred repository). A change of the branch it tracks is a
    config change: documents are at no known commit of the new branch, a full sync is requested."""
    config = {**state.config, **ev.config}
    update: dict[str, Any] = {"config": config}
    if ev.name is not None:
        update["name"] = ev.name
    moved = tracked_branch(config) != tracked_branch(state.config)
    if moved:
        update["synced_commit"] = None
    state = state.model_copy(update=update)
    if not moved or state.connection != "connected":
        return state, []
    return _requested(state, _config_change_request(ev, offset, state.jobs_created), now, offset, policy)


_HANDLERS: dict[type, Callable[[SourceState, Any, datetime, int | None, Policy], Step]] = {
    SyncRequested: _requested,
    SourceConnected: _connected,
    SourceDisconnected: _disconnected,
    SourceConfigChanged: _config_changed,
    SourceUpdated: _updated,
    SyncPlanned: _planned,
    PlanFailed: _plan_failed,
    BatchCompleted: _batch,
    DeadlineReached: _deadline,
}
