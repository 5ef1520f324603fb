"""What each record does to the PostgreSQL read model (`sources`, `sync_jobs`, `sync_requests`), pure.

The projections apply each consumed record once (offset fence,
`app.store.projection`); these functions decide the rows. Their invariants:

- `source_after` follows the control topic, where one partition holds every
  event of a source in one order: it mirrors the orchestrator's fold of the
  connection, config and config file status (from each `SyncPlanned` that read
  the file, by the fold's own rule, `config_file.is_newer_config`), with the
  fold's status names, and takes `updated_at` from the event.
- `job_after` merges a lifecycle event or a completion into a job's row. The two
  come from two topics with no order between them, so the merge is
  order-independent and idempotent: any interleaving of a job's events, each
  applied once or more, gives the same row (docs/architecture.md, invariant 6). The
  `SyncCompleted` is final: a `SyncStarted` replayed after it changes nothing.
- `request_answers` records the first answer each request got; the answers come
  from one topic in one order per source.
- Live progress comes from the control topic: the plan sets what it alone knows
  (`job_planned`: the batches planned, and the files listed until the completion
  says), and each batch index's first completion is a `batch_row`. A job's row
  keeps the completion's counts only; while a job is queued or running its
  counts are the sums of its batch rows, computed when read
  (app/store/sync_records.py: LIVE_JOBS). So no row depends on the order of the
  two topics, and the orchestrator writes one row per batch, not two.
- `record_row` is where a record of a job or request is (topic, partition,
  offset): what `hookstream trace` reads back, and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any, Literal

from app.core.config_file import is_newer_config
from app.events.config import CONFIGURED, INVALID, UNCONFIGURED
from app.events.control import (
    BatchCompleted,
    DeadlineReached,
    PlanFailed,
    SourceConnected,
    SourceDisconnected,
    SourceUpdated,
    SyncPlanned,
    SyncRequested,
)
from app.events.sync import (
    SyncCancelled,
    SyncCoalesced,
    SyncCompleted,
    SyncDeduplicated,
    SyncIgnored,
    SyncQueued,
    SyncRejected,
    SyncStarted,
)

SourceEvent = SourceConnected | SourceDisconnected | SourceUpdated | SyncPlanned
JobEvent = SyncQueued | SyncCoalesced | SyncStarted | SyncCancelled | SyncCompleted
AnswerEvent = SyncStarted | SyncQueued | SyncCoalesced | SyncDeduplicated | SyncRejected | SyncIgnored

SOURCE_EVENTS = (SourceConnected, SourceDisconnected, SourceUpdated, SyncPlanned)
JOB_EVENTS = (SyncQueued, SyncCoalesced, SyncStarted, SyncCancelled, SyncCompleted)
ANSWER_EVENTS = (SyncStarted, SyncQueued, SyncCoalesced, SyncDeduplicated, SyncRejected, SyncIgnored)

CONNECTED = "connected"
DISCONNECTED = "disconnected"
# The config file's status, named as the orchestrator names it (NULL: no plan has read it yet).
CONFIG_STATUSES = (CONFIGURED, UNCONFIGURED, INVALID)

QUEUED = "queued"
RUNNING = "running"
CANCELLED = "cancelled"
FINAL_STATUSES = ("succeeded", "failed", "cancelled", "timed_out")
JOB_STATUSES = (QUEUED, RUNNING, *FINAL_STATUSES)
# A job's status only moves up this order; a SyncCompleted's status is final and ranks highest.
_STATUS_RANK = {QUEUED: 0, RUNNING: 1, CANCELLED: 2, "succeeded": 3, "failed": 3, "timed_out": 3}
_MODE_RANK = {None: 0, "incremental": 1, "full": 2}  # full absorbs incremental

Answer = Literal["started", "queued", "coalesced", "deduplicated", "rejected", "ignored"]


# --- sources -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceRow:
    source_id: str
    source_type: str
    name: str | None
    status: str  # CONNECTED | DISCONNECTED
    config: dict[str, Any]
    config_status: str | None  # one of CONFIG_STATUSES; None until a plan read the config file
    config_path: str | None  # the file read (configured, invalid)
    config_commit: str | None  # the commit it was read at
    status_reason: str | None  # why it was disconnected
    updated_at: datetime
    config_error: str | None = None  # why the file is invalid
    config_rules: dict[str, Any] | None = None  # the path rules in effect: {"include": [...], "exclude": [...]}
    config_job_id: str | None = None  # the job whose plan read it


SOURCE_COLUMNS = tuple(f.name for f in fields(SourceRow))


def is_source_event(record: object) -> bool:
    """Whether `record` can change a `sources` row: a plan only when it read the config file."""
    if isinstance(record, SyncPlanned):
        return record.config is not None
    return isinstance(record, SOURCE_EVENTS)


def source_after(row: SourceRow | None, event: SourceEvent) -> SourceRow | None:
    """The source's row after `event`; None when there is no row and `event` makes none.

    Only a `SourceConnected` makes a row: it is the one event that says what type
    of source this is. Disconnecting, reconfiguring or renaming a source that
    never connected changes nothing here (the projection counts it).
    """
    at = event.occurred_at
    if isinstance(event, SourceConnected):
        if row is None:
            return SourceRow(
                source_id=event.source_id,
                source_type=event.source_type,
                name=event.name,
                status=CONNECTED,
                config=dict(event.config),
                config_status=None,
                config_path=None,
                config_commit=None,
                status_reason=None,
                updated_at=at,
            )
        # A reconnection replaces type and config; the name and the config file's status survive it.
        return replace(
            row,
            source_type=event.source_type,
            name=event.name if event.name is not None else row.name,
            status=CONNECTED,
            config=dict(event.config),
            status_reason=None,
            updated_at=at,
        )
    if row is None:
        return None
    if isinstance(event, SourceDisconnected):
        return replace(row, status=DISCONNECTED, status_reason=event.reason, updated_at=at)
    if isinstance(event, SyncPlanned):
        found = event.config
        if found is None or not is_newer_config(row.config_job_id, event.job_id):
            return row
        return replace(
            row,
            config_status=found.status,
            config_path=found.path,
            config_commit=event.commit,
            config_error=found.error,
            config_rules=found.rules.model_dump(mode="json"),
            config_job_id=event.job_id,
            updated_at=at,
        )
    if isinstance(event, SourceUpdated):
        return replace(
            row,
            name=event.name if event.name is not None else row.name,
            config={**row.config, **event.config},
            updated_at=at,
        )
    raise TypeError(f"not a source event: {type(event).__name__}")


# --- sync jobs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncJobRow:
    job_id: str
    source_id: str
    mode: str | None
    trigger: str | None
    request_ids: tuple[str, ...]
    status: str
    error: str | None = None
    commit: str | None = None
    listing: str | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    deadline: datetime | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    finished_at: datetime | None = None
    duration_ms: int | None = None
    files_listed: int = 0
    processed: int = 0
    failed: int = 0
    deleted: int = 0
    skipped: int = 0
    documents_written: int = 0
    bytes: int = 0
    batches: int = 0
    # What the plan said (SyncPlanned): the batches to expect, and when.
    batches_planned: int | None = None
    planned_at: datetime | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


JOB_COLUMNS = tuple(f.name for f in fields(SyncJobRow))


def job_after(row: SyncJobRow | None, event: JobEvent) -> SyncJobRow:
    """Merge `event` into its job's row: order-independent, idempotent, final once completed.

    Each column is either written by one kind of event only, or merged by a rule
    that does not care about order: the status and mode only rise (queued <
    running < cancelled < a completion's status; incremental < full); times
    that several events give are filled when empty and overwritten only by the
    completion, whose values are final; request ids are a union with the list
    of the job's start or completion (the full list, in request order) first.
    """
    job_id = event.job_id
    if job_id is None:
        raise ValueError(f"{event.type} for {event.source_id} names no job")
    if row is None:
        row = SyncJobRow(
            job_id=job_id, source_id=event.source_id, mode=None, trigger=None, request_ids=(), status=QUEUED
        )
    elif row.job_id != job_id:
        raise ValueError(f"{event.type} of job {job_id!r} merged into the row of {row.job_id!r}")

    if isinstance(event, SyncCompleted):
        return replace(
            row,
            mode=_higher_mode(row.mode, event.mode),
            trigger=event.trigger,
            request_ids=_with_full_list(row.request_ids, event.request_ids),
            status=event.status,
            error=event.error,
            commit=event.commit,
            listing=event.listing,
            started_at=event.started_at,
            finished_at=event.finished_at,
            duration_ms=event.duration_ms,
            files_listed=event.files_listed,
            **event.counts(),
            batches=event.batches,
        )
    if isinstance(event, SyncStarted):
        return replace(
            row,
            mode=_higher_mode(row.mode, event.mode),
            trigger=row.trigger if row.trigger is not None else event.trigger,
            request_ids=_with_full_list(row.request_ids, event.request_ids),
            status=_higher_status(row.status, RUNNING),
            started_at=row.started_at if row.started_at is not None else event.occurred_at,
            deadline=event.deadline,
        )
    if isinstance(event, (SyncQueued, SyncCoalesced)):
        queued_at = row.queued_at
        if isinstance(event, SyncQueued):
            queued_at = event.occurred_at if queued_at is None else min(queued_at, event.occurred_at)
        return replace(
            row,
            mode=_higher_mode(row.mode, event.mode),
            request_ids=_union(row.request_ids, event.request_ids),
            status=_higher_status(row.status, QUEUED),
            queued_at=queued_at,
        )
    if isinstance(event, SyncCancelled):
        return replace(
            row,
            request_ids=_union(row.request_ids, event.request_ids),
            status=_higher_status(row.status, CANCELLED),
            cancelled_at=event.occurred_at if row.cancelled_at is None else min(row.cancelled_at, event.occurred_at),
            cancel_reason=row.cancel_reason if row.cancel_reason is not None else event.reason,
            # A job cancelled while queued has no completion: its cancellation is when it finished.
            finished_at=row.finished_at if row.finished_at is not None else event.occurred_at,
        )
    raise TypeError(f"not a job event: {type(event).__name__}")


def _higher_status(current: str, new: str) -> str:
    return new if _STATUS_RANK[new] > _STATUS_RANK[current] else current


def _higher_mode(current: str | None, new: str | None) -> str | None:
    return new if _MODE_RANK[new] > _MODE_RANK[current] else current


def _union(current: tuple[str, ...], new: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*current, *new)))


def _with_full_list(current: tuple[str, ...], full: list[str]) -> tuple[str, ...]:
    """The start's or completion's list (every request the job serves, in order), then any other seen."""
    return tuple(dict.fromkeys((*full, *current)))


def _job_row(row: SyncJobRow | None, job_id: str, source_id: str) -> SyncJobRow:
    if row is None:
        return SyncJobRow(job_id=job_id, source_id=source_id, mode=None, trigger=None, request_ids=(), status=QUEUED)
    if row.job_id != job_id:
        raise ValueError(f"an event of job {job_id!r} merged into the row of {row.job_id!r}")
    return row


def job_planned(row: SyncJobRow | None, event: SyncPlanned) -> SyncJobRow:
    """The plan's batch count and time; its file count and commit until the completion gives them."""
    row = _job_row(row, event.job_id, event.source_id)
    row = replace(row, batches_planned=event.batch_count, planned_at=event.occurred_at)
    if row.is_final:
        return row
    return replace(
        row,
        status=_higher_status(row.status, RUNNING),
        files_listed=event.file_count,
        commit=event.commit if event.commit is not None else row.commit,
    )


# --- batches and records -----------------------------------------------------------------------


@dataclass(frozen=True)
class BatchRow:
    batch_id: str
    job_id: str
    batch_index: int
    source_id: str
    processed: int
    failed: int
    deleted: int
    skipped: int
    documents_written: int
    bytes: int
    cancelled: bool
    error: str | None
    completed_at: datetime
    topic: str
    partition: int
    offset: int


BATCH_COLUMNS = tuple(f.name for f in fields(BatchRow))


def batch_row(event: BatchCompleted, topic: str, partition: int, offset: int) -> BatchRow:
    return BatchRow(
        batch_id=f"{event.job_id}/{event.batch_index}",
        job_id=event.job_id,
        batch_index=event.batch_index,
        source_id=event.source_id,
        **event.counts(),
        cancelled=event.cancelled,
        error=event.errors[0][:500] if event.errors else None,
        completed_at=event.occurred_at,
        topic=topic,
        partition=partition,
        offset=offset,
    )


@dataclass(frozen=True)
class RecordRow:
    record_id: str
    topic: str
    partition: int
    offset: int
    type: str
    source_id: str
    job_id: str | None
    request_ids: tuple[str, ...]
    delivery_key: str | None
    occurred_at: datetime


RECORD_COLUMNS = tuple(f.name for f in fields(RecordRow))
# Control records of jobs and requests (a BatchCompleted is a `BatchRow`).
CONTROL_JOB_RECORDS = (SyncRequested, SyncPlanned, PlanFailed, DeadlineReached)


def record_row(record: Any, topic: str, partition: int, offset: int) -> RecordRow:
    """Where a request's, a job's or a lifecycle record is, and the ids it names."""
    job_id: str | None
    request_ids: tuple[str, ...]
    if isinstance(record, SyncRequested):
        job_id, request_ids, at = None, (record.request_id,), record.occurred_at
    elif isinstance(record, SyncCompleted):
        job_id, request_ids, at = record.job_id, tuple(record.request_ids), record.finished_at
    elif isinstance(record, (SyncQueued, SyncCoalesced, SyncDeduplicated, SyncStarted, SyncCancelled, SyncRejected)):
        job_id, request_ids, at = record.job_id, tuple(record.request_ids), record.occurred_at
    elif isinstance(record, (SyncPlanned, PlanFailed, DeadlineReached)):
        job_id, request_ids, at = record.job_id, (), record.occurred_at
    else:
        raise TypeError(f"not a record of a job or request: {type(record).__name__}")
    delivery = getattr(record, "delivery", None)
    return RecordRow(
        record_id=f"{topic}/{partition}/{offset}",
        topic=topic,
        partition=partition,
        offset=offset,
        type=record.type,
        source_id=record.source_id,
        job_id=job_id,
        request_ids=request_ids,
        delivery_key=delivery.key if delivery is not None else None,
        occurred_at=at,
    )


def batch_to_columns(row: BatchRow) -> dict[str, Any]:
    return {name: without_nul(getattr(row, name)) for name in BATCH_COLUMNS}


def batch_from_columns(values: Mapping[str, Any]) -> BatchRow:
    data: dict[str, Any] = {name: values.get(name) for name in BATCH_COLUMNS}
    return BatchRow(**data)


def record_to_columns(row: RecordRow) -> dict[str, Any]:
    values = {name: without_nul(getattr(row, name)) for name in RECORD_COLUMNS}
    values["request_ids"] = list(values["request_ids"])
    return values


def record_from_columns(values: Mapping[str, Any]) -> RecordRow:
    data: dict[str, Any] = {name: values.get(name) for name in RECORD_COLUMNS}
    data["request_ids"] = tuple(data["request_ids"] or ())
    return RecordRow(**data)


# --- request answers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestAnswer:
    request_id: str
    source_id: str
    answer: Answer
    job_id: str | None
    reason: str | None
    answered_at: datetime


REQUEST_COLUMNS = tuple(f.name for f in fields(RequestAnswer))


def request_answers(event: AnswerEvent) -> list[RequestAnswer]:
    """One answer per request id the event names. The projection keeps the first answer of each request:
    a request queued and later started stays `queued`, and its job's row says how the job went."""
    answer: Answer
    job_id: str | None
    reason: str | None
    if isinstance(event, SyncStarted):
        answer, job_id, reason = "started", event.job_id, None
    elif isinstance(event, SyncQueued):
        answer, job_id, reason = "queued", event.job_id, None
    elif isinstance(event, SyncCoalesced):
        answer, job_id, reason = "coalesced", event.job_id, None
    elif isinstance(event, SyncDeduplicated):
        answer, job_id = "deduplicated", event.held_by_job_id or event.job_id
        held = f" ({event.held_status})" if event.held_status else ""
        reason = f"idempotency key {event.idempotency_key} is held by job {job_id}{held}"
    elif isinstance(event, SyncRejected):
        answer, job_id, reason = "rejected", event.job_id, event.reason
    elif isinstance(event, SyncIgnored):
        answer, job_id, reason = "ignored", event.job_id, f"ignored by rule {event.rule}"
    else:
        raise TypeError(f"not an answer to a request: {type(event).__name__}")
    return [
        RequestAnswer(
            request_id=rid,
            source_id=event.source_id,
            answer=answer,
            job_id=job_id,
            reason=reason,
            answered_at=event.occurred_at,
        )
        for rid in dict.fromkeys(event.request_ids)
    ]


# --- columns -----------------------------------------------------------------------------------


def source_to_columns(row: SourceRow) -> dict[str, Any]:
    """Column values for `sources`; PostgreSQL text and jsonb cannot hold NUL, written as U+FFFD."""
    return {name: without_nul(getattr(row, name)) for name in SOURCE_COLUMNS}


def source_from_columns(values: Mapping[str, Any]) -> SourceRow:
    data: dict[str, Any] = {name: values.get(name) for name in SOURCE_COLUMNS}
    data["config"] = dict(data["config"] or {})
    return SourceRow(**data)


def job_to_columns(row: SyncJobRow) -> dict[str, Any]:
    values = {name: without_nul(getattr(row, name)) for name in JOB_COLUMNS}
    values["request_ids"] = list(values["request_ids"])
    return values


def job_to_json(row: SyncJobRow) -> dict[str, Any]:
    """The job as JSON values (times in ISO 8601): `syncs list --json`, `trace --json`, the console's API."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in job_to_columns(row).items()}


def job_from_columns(values: Mapping[str, Any]) -> SyncJobRow:
    data: dict[str, Any] = {name: values.get(name) for name in JOB_COLUMNS}
    data["request_ids"] = tuple(data["request_ids"] or ())
    return SyncJobRow(**data)


def answer_to_columns(answer: RequestAnswer) -> dict[str, Any]:
    return {name: without_nul(getattr(answer, name)) for name in REQUEST_COLUMNS}


def answer_from_columns(values: Mapping[str, Any]) -> RequestAnswer:
    data: dict[str, Any] = {name: values.get(name) for name in REQUEST_COLUMNS}
    return RequestAnswer(**data)


def without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(without_nul(v) for v in value)
    return value
