"""The worker's Prometheus counters (served at the worker's /metrics)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.received = Counter("hookstream_deliveries_received", "Deliveries consumed by the dedup stage", ["plugin"], registry=r)
        self.duplicates = Counter("hookstream_deliveries_duplicate", "Redeliveries dropped inside their window", ["plugin"], registry=r)
        self.routed = Counter("hookstream_deliveries_routed", "Deliveries routed to domain events", ["plugin"], registry=r)
        self.events = Counter("hookstream_routed_events", "Domain events emitted by routing", ["plugin", "type"], registry=r)
        self.ignored = Counter("hookstream_deliveries_ignored", "Deliveries ignored by an explicit rule", ["plugin", "rule"], registry=r)
        self.dead_lettered = Counter("hookstream_deliveries_dead_lettered", "Deliveries sent to the DLQ", ["plugin", "stage"], registry=r)
        self.control_ignored = Counter("hookstream_control_ignored", "Control events ignored by an explicit rule (late, duplicate)", ["rule"], registry=r)
        self.control_refused = Counter("hookstream_control_refused", "Control events the fold refused (a clock beyond the skew, the state bound)", ["type"], registry=r)
        self.dedup_entries = Gauge("hookstream_dedup_entries", "Dedup entries held by this worker at the last purge scan", registry=r)
        self.purged = Counter("hookstream_dedup_entries_purged", "Dedup entries purged past their window", registry=r)
        self.projected = Counter("hookstream_projection_records", "Records consumed by the PostgreSQL projections, by outcome",
                                 ["projection", "outcome"], registry=r)
