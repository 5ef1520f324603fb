"""The worker's Prometheus metrics (served at the worker's /metrics), one registry per worker.

Every label value comes from a bounded set: plugins (the known ones), ignore
rules (the first `IGNORE_RULE_LABELS` distinct ones, then `other`: the plugins
name rules from bounded sets, and this bounds whatever they do), dead-letter
stages, job statuses, request answers, agent names.

The dedup stage's counters are `LoopCounter`s: incremented on the hot path of
every delivery, they are plain numbers read at scrape time, without the lock and
the value object a `prometheus_client.Counter` child takes per increment (about a
microsecond per delivery and counter, measured in bench/dedup.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily

from app.core.labels import OTHER, LabelSet

log = logging.getLogger(__name__)

# Distinct ignore rules counted under their own label; later new ones count as `other`.
IGNORE_RULE_LABELS = 200

# Sync durations run from a second to an hour (the default deadline); batches from ms to minutes.
SYNC_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
BATCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, float("inf"))


class _Child:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class LoopCounter:
    """A counter whose children are plain numbers: incremented from the worker's event loop only.

    `labels(...)` returns the child for those values (keep it: a lookup per increment
    costs what the plain number saves). A scrape runs in the same loop, and a reader in
    another thread copies the children under the GIL: no torn values.
    """

    def __init__(
        self, name: str, documentation: str, labelnames: tuple[str, ...] | list[str], registry: CollectorRegistry
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._children: dict[tuple[str, ...], _Child] = {}
        registry.register(self)

    def labels(self, *values: str) -> _Child:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values!r}")
            child = self._children[values] = _Child()
        return child

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value)
        yield family

    def describe(self) -> list[CounterMetricFamily]:
        return [CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)]


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        # The dedup stage (per delivery).
        self.received = LoopCounter(
            "hookstream_deliveries_received", "Deliveries consumed by the dedup stage", ["plugin"], r
        )
        self.duplicates = LoopCounter(
            "hookstream_deliveries_duplicate", "Redeliveries dropped inside their window", ["plugin"], r
        )
        self.routed = LoopCounter("hookstream_deliveries_routed", "Deliveries routed to domain events", ["plugin"], r)
        self.events = LoopCounter("hookstream_routed_events", "Domain events emitted by routing", ["plugin", "type"], r)
        self._ignore_rules = LabelSet(IGNORE_RULE_LABELS)
        self._capped = False
        self.ignored = LoopCounter(
            "hookstream_deliveries_ignored",
            f"Deliveries ignored by an explicit rule (the first {IGNORE_RULE_LABELS} distinct rules, then "
            "rule=other; the delivery ledger keeps every rule)",
            ["plugin", "rule"],
            r,
        )
        self.dead_lettered = LoopCounter(
            "hookstream_deliveries_dead_lettered", "Deliveries sent to the DLQ", ["plugin", "stage"], r
        )
        self.dedup_entries = Gauge(
            "hookstream_dedup_entries", "Dedup entries held by this worker at the last purge scan", registry=r
        )
        self.purged = Counter("hookstream_dedup_entries_purged", "Dedup entries purged past their window", registry=r)
        # Orchestration and syncs.
        self.control_ignored = Counter(
            "hookstream_control_ignored",
            "Control events ignored by an explicit rule (late, duplicate)",
            ["rule"],
            registry=r,
        )
        self.control_refused = Counter(
            "hookstream_control_refused",
            "Control events the fold refused (a clock beyond the skew, the state bound)",
            ["type"],
            registry=r,
        )
        self.syncs_completed = Counter(
            "hookstream_syncs_completed", "Sync jobs completed, by status", ["status"], registry=r
        )
        self.sync_seconds = Histogram(
            "hookstream_sync_duration_seconds",
            "Duration of completed sync jobs (event time), by status",
            ["status"],
            buckets=SYNC_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "hookstream_batch_duration_seconds",
            "Time this worker took to fetch, transform and write one file batch",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.files = Counter(
            "hookstream_sync_files",
            "Files of sync jobs as their batches reported them, by outcome "
            "(processed, failed, deleted, skipped); counted once per batch",
            ["outcome"],
            registry=r,
        )
        self.requests_answered = Counter(
            "hookstream_sync_requests_answered", "Sync requests answered, by answer", ["answer"], registry=r
        )
        self.syncs_running = Gauge(
            "hookstream_syncs_running", "Sources of this worker's partitions with a running job", registry=r
        )
        self.requests_queued = Gauge(
            "hookstream_syncs_queued",
            "Sources of this worker's partitions with a queued job (its requests coalesce into it)",
            registry=r,
        )
        self.running_batches = Gauge(
            "hookstream_sync_running_batches",
            "Batches of the running jobs of this worker's partitions: planned, and done so far",
            ["state"],
            registry=r,
        )
        # Health.
        self.consumer_lag = Gauge(
            "hookstream_consumer_lag",
            "Records of this worker's partitions not yet processed (high watermark minus position), by stage",
            ["stage"],
            registry=r,
        )
        self.dead_letters_open = Gauge(
            "hookstream_dead_letters_open",
            "Open dead letters in PostgreSQL (the same figure on every worker: take the max)",
            registry=r,
        )
        self.records_dead_lettered = Counter(
            "hookstream_records_dead_lettered",
            "Records an agent could not apply, sent to hookstream.dlq with their stage",
            ["agent", "stage"],
            registry=r,
        )
        self.retries = Counter(
            "hookstream_transient_retries", "Transient failures retried before they would count", ["stage"], registry=r
        )
        self.pruned = Counter(
            "hookstream_pruned_rows", "History rows the retention timer deleted", ["table"], registry=r
        )
        self.projected = Counter(
            "hookstream_projection_records",
            "Records consumed by the PostgreSQL projections, by outcome",
            ["projection", "outcome"],
            registry=r,
        )

    def ignore_rule(self, rule: str) -> str:
        """The label of an ignore rule: itself among the first `IGNORE_RULE_LABELS`, then `other`."""
        label = self._ignore_rules(rule)
        if label == OTHER and rule != OTHER and not self._capped:
            self._capped = True
            log.warning(
                "more than %d distinct ignore rules: later ones are counted under rule=other "
                "(the delivery ledger keeps every rule)",
                IGNORE_RULE_LABELS,
            )
        return label
