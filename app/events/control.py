"""`hookstream.sync.control`, keyed by sourceId: everything that changes a source's state.

One partition sees every event of a source in one order: that order serializes
syncs per source.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.events.base import Record, Timestamp
from app.events.bounds import Config, ConfigPath, Identifier, Name, PathHints, Revision, Text, Trigger
from app.events.config import ConfigFound
from app.events.counts import FileCounts
from app.events.deliveries import DeliveryRef

SyncMode = Literal["full", "incremental"]
SourceType = Literal["git", "github", "linear"]


class ControlEvent(Record):
    source_id: Identifier
    occurred_at: Timestamp
    delivery: DeliveryRef | None = None


class SyncRequested(ControlEvent):
    """A request to look at a source again. `request_id` is unique per request (the delivery id for webhooks).

    Syncs are level-triggered: the planner compares the commit the source's documents
    were last written to completely with the head of the source's tracked branch, so
    `before`, `after` and `paths` are what the sender saw, never the target. `branch`
    is the branch a push was to: a push to a branch the source does not track is
    answered `sync.ignored`. `force` bypasses a live idempotency key (a manual
    `sync request --full --force`).
    """

    type: Literal["sync.requested"] = "sync.requested"
    request_id: Identifier
    mode: SyncMode
    trigger: Trigger
    # Hints: paths the request knows changed (at most 2048, 128 KiB in total).
    paths: PathHints = Field(default_factory=list)
    before: Revision | None = None
    after: Revision | None = None
    branch: Revision | None = None
    force: bool = False


class SourceConnected(ControlEvent):
    type: Literal["source.connected"] = "source.connected"
    source_type: SourceType
    name: Name | None = None
    # Adapter configuration: for git {"path": ...}; for github {"repository": "owner/name",
    # "installation_id": ..., "default_branch": ...}; for linear {"organization_id": ...,
    # "teams": [team keys], "token_env": ...}. Never a secret: configs travel on Kafka.
    # At most 16 KiB of JSON.
    config: Config = Field(default_factory=dict)


class SourceDisconnected(ControlEvent):
    type: Literal["source.disconnected"] = "source.disconnected"
    reason: Text = "disconnected"


class SourceConfigChanged(ControlEvent):
    """Superseded: a source's config file status is what the planner finds at the synced commit
    (`SyncPlanned.config`). Records of this type from earlier versions still decode; the
    orchestrator ignores them by a counted rule and the `sources` projection skips them."""

    type: Literal["source.config_changed"] = "source.config_changed"
    config_path: ConfigPath
    commit: Revision | None = None


class SourceUpdated(ControlEvent):
    """A source's metadata changed (a repository renamed or transferred): ids survive, names do not."""

    type: Literal["source.updated"] = "source.updated"
    name: Name | None = None
    config: Config = Field(default_factory=dict)


# How a planner listed a job's changes: every file at the head (`full`), the difference
# from the commit the documents are at (`diff`), or nothing, since they are at the head
# already (`unchanged`: the request is answered "already synced").
ListingKind = Literal["full", "diff", "unchanged"]


class SyncPlanned(ControlEvent):
    """A job's plan. `config` is the source's config file as the planner found it at `commit`, and
    the path rules it applied; None when it was not read (a diff that touches no config file,
    the documents already at the head, or a source without config files)."""

    type: Literal["sync.planned"] = "sync.planned"
    job_id: str
    batch_count: int = Field(ge=0)
    file_count: int = Field(ge=0)
    commit: str | None = None
    listing: ListingKind | None = None
    config: ConfigFound | None = None


class PlanFailed(ControlEvent):
    type: Literal["sync.plan_failed"] = "sync.plan_failed"
    job_id: str
    error: str


class BatchCompleted(FileCounts, ControlEvent):  # the counts are FileCounts' (app/events/counts.py)
    type: Literal["batch.completed"] = "batch.completed"
    job_id: str
    batch_index: int = Field(ge=0)
    errors: list[str] = Field(default_factory=list)
    # True when the batch was not processed because its job had been cancelled.
    cancelled: bool = False


class DeadlineReached(ControlEvent):
    type: Literal["sync.deadline_reached"] = "sync.deadline_reached"
    job_id: str


CONTROL_EVENTS = (
    SyncRequested,
    SourceConnected,
    SourceDisconnected,
    SourceConfigChanged,
    SourceUpdated,
    SyncPlanned,
    PlanFailed,
    BatchCompleted,
    DeadlineReached,
)
