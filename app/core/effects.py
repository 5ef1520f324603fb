"""What a fold asks the world to do, and where each wire effect goes.

Most effects are wire records themselves (`PlanRequested`, the lifecycle events,
`SyncCompleted`, `JobCancelled`); two are not records:

- `EnsureSource`: make the source's document namespace and `sources` row exist
  (idempotent). The agent performs it before any effect that follows it.
- `Ignored`: an event that changed nothing by an explicit rule; the agent counts it
  (docs/architecture.md, invariant 7).

Effects are to be carried out in list order. `destination(effect)` names the
logical topic (without the settings prefix) and the key of each wire effect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from app.events.control import SourceType
from app.events.sync import (
    JobCancelled,
    Lifecycle,
    PlanRequested,
    SyncCancelled,
    SyncCoalesced,
    SyncCompleted,
    SyncDeduplicated,
    SyncIgnored,
    SyncQueued,
    SyncRejected,
    SyncStarted,
)

SYNC_PLANS = "hookstream.sync.plans"
SYNC_EVENTS = "hookstream.sync.events"
SYNC_COMPLETED = "hookstream.sync.completed"
SYNC_CANCELLATIONS = "hookstream.sync.cancellations"

IgnoreReason = Literal[
    "duplicate_request",  # a request id already seen (a redelivered SyncRequested at another offset)
    "late_plan",  # SyncPlanned for a job that is not the active one
    "duplicate_plan",  # SyncPlanned again for the active job
    "late_plan_failure",  # PlanFailed for a job that is not the active one
    "late_batch",  # BatchCompleted for a job that is not the active one
    "duplicate_batch",  # a batch index already counted
    "batch_out_of_range",  # a batch index the plan does not have
    "late_deadline",  # DeadlineReached for a job that is not the active one
    "deadline_not_reached",  # DeadlineReached stamped before the job's deadline
    "untracked_branch",  # a push to a branch the source does not track (answered sync.ignored)
    "config_claim_superseded",  # a SourceConfigChanged of an earlier version: the planner reads the file
]


@dataclass(frozen=True)
class EnsureSource:
    """The source's document namespace and `sources` row must exist before its first plan."""

    source_id: str
    source_type: SourceType
    config: dict[str, Any] = field(default_factory=dict)
    name: str | None = None


@dataclass(frozen=True)
class Refused:
    """A record the fold would not apply (its clock, or the state bound): counted and dead-lettered
    with `reason`; a refused request is also answered `sync.rejected`."""

    event_type: str
    reason: str


@dataclass(frozen=True)
class Ignored:
    """An event ignored by the rule `reason`: counted, never silent."""

    reason: IgnoreReason
    event_type: str
    job_id: str | None = None
    request_id: str | None = None


Effect = (
    PlanRequested
    | SyncQueued
    | SyncCoalesced
    | SyncDeduplicated
    | SyncStarted
    | SyncCancelled
    | SyncRejected
    | SyncIgnored
    | SyncCompleted
    | JobCancelled
    | EnsureSource
    | Ignored
    | Refused
)


class Destination(NamedTuple):
    topic: str  # logical name, as declared in topics/; the agent adds the prefix
    key: str


def destination(effect: Effect) -> Destination | None:
    """Where a wire effect is sent; None for `EnsureSource`, `Ignored` and `Refused`, which are not records."""
    if isinstance(effect, PlanRequested):
        return Destination(SYNC_PLANS, effect.job_id)
    if isinstance(effect, Lifecycle):
        return Destination(SYNC_EVENTS, effect.source_id)
    if isinstance(effect, SyncCompleted):
        return Destination(SYNC_COMPLETED, effect.source_id)
    if isinstance(effect, JobCancelled):
        return Destination(SYNC_CANCELLATIONS, effect.job_id)
    if isinstance(effect, (EnsureSource, Ignored, Refused)):
        return None
    raise TypeError(f"not an orchestration effect: {type(effect).__name__}")
