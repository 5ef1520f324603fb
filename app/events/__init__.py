"""Frozen pydantic wire models for every record on every hookstream topic.

`TOPIC_RECORDS` names, per logical topic, the union of records it carries; the
codec decodes with it and `hookstream schemas export` writes one JSON Schema per
model. Producer-facing events (`PRODUCER_EVENTS`) are the ones `POST /events`
and `hookstream send event` accept.
"""

from __future__ import annotations

from typing import Annotated, TypeAlias

from pydantic import Field

from app.events.base import RawBytes, Record, utcnow
from app.events.config import ConfigFound, ConfigStatus, PathRules
from app.events.control import (
    CONTROL_EVENTS,
    BatchCompleted,
    ControlEvent,
    DeadlineReached,
    ListingKind,
    PlanFailed,
    SourceConfigChanged,
    SourceConnected,
    SourceDisconnected,
    SourceUpdated,
    SyncMode,
    SyncPlanned,
    SyncRequested,
)
from app.events.deliveries import Delivery, DeliveryRef, delivery_key
from app.events.dlq import DeadLettered, RedriveAccepted
from app.events.ledger import DeliveryOutcome
from app.events.sync import (
    LIFECYCLE_EVENTS,
    FileBatch,
    FileChange,
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
    SyncStatus,
)

# Each topic's union, discriminated by `type`, written out so that the type checker knows
# every member (tests/unit/test_event_unions.py checks them against CONTROL_EVENTS, LIFECYCLE_EVENTS
# and PRODUCER_EVENTS, the tuples the rest of the code iterates).
ControlRecord: TypeAlias = Annotated[
    SyncRequested
    | SourceConnected
    | SourceDisconnected
    | SourceConfigChanged
    | SourceUpdated
    | SyncPlanned
    | PlanFailed
    | BatchCompleted
    | DeadlineReached,
    Field(discriminator="type"),
]
LifecycleRecord: TypeAlias = Annotated[
    SyncQueued | SyncCoalesced | SyncDeduplicated | SyncStarted | SyncCancelled | SyncRejected | SyncIgnored,
    Field(discriminator="type"),
]
DlqRecord: TypeAlias = Annotated[DeadLettered | RedriveAccepted, Field(discriminator="type")]

# Logical topic name (without prefix) -> the record type(s) it carries.
TOPIC_RECORDS: dict[str, object] = {
    "hookstream.deliveries": Delivery,
    "hookstream.sync.control": ControlRecord,
    "hookstream.sync.plans": PlanRequested,
    "hookstream.sync.events": LifecycleRecord,
    "hookstream.sync.completed": SyncCompleted,
    "hookstream.sync.cancellations": JobCancelled,
    "hookstream.files.batches": FileBatch,
    "hookstream.dlq": DlqRecord,
    "hookstream.deliveries.outcomes": DeliveryOutcome,
}

# Events a producer may send through POST /events (or `hookstream send event --kafka`):
# the control events that describe intent from outside, never a stage's internal fact.
# (Not `SourceConfigChanged`: a config file's status is what the worker reads in it.)
PRODUCER_EVENTS: tuple[type[ControlEvent], ...] = (
    SyncRequested,
    SourceConnected,
    SourceDisconnected,
    SourceUpdated,
)
ProducerEvent: TypeAlias = Annotated[
    SyncRequested | SourceConnected | SourceDisconnected | SourceUpdated, Field(discriminator="type")
]

ALL_MODELS: tuple[type[Record], ...] = (
    Delivery,
    *CONTROL_EVENTS,
    PlanRequested,
    FileBatch,
    JobCancelled,
    *LIFECYCLE_EVENTS,
    SyncCompleted,
    DeadLettered,
    RedriveAccepted,
    DeliveryOutcome,
)

__all__ = [
    "ALL_MODELS",
    "BatchCompleted",
    "ConfigFound",
    "ConfigStatus",
    "ControlEvent",
    "ControlRecord",
    "DeadLettered",
    "DeadlineReached",
    "Delivery",
    "DeliveryOutcome",
    "DeliveryRef",
    "DlqRecord",
    "FileBatch",
    "FileChange",
    "JobCancelled",
    "ListingKind",
    "Lifecycle",
    "LifecycleRecord",
    "PRODUCER_EVENTS",
    "PathRules",
    "PlanFailed",
    "PlanRequested",
    "ProducerEvent",
    "RawBytes",
    "Record",
    "RedriveAccepted",
    "SourceConfigChanged",
    "SourceConnected",
    "SourceDisconnected",
    "SourceUpdated",
    "SyncCancelled",
    "SyncCoalesced",
    "SyncCompleted",
    "SyncDeduplicated",
    "SyncIgnored",
    "SyncMode",
    "SyncPlanned",
    "SyncQueued",
    "SyncRejected",
    "SyncRequested",
    "SyncStarted",
    "SyncStatus",
    "TOPIC_RECORDS",
    "delivery_key",
    "utcnow",
]
