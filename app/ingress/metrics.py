"""The ingress's Prometheus metrics, in a registry of its own per app (no global state at import).

With several ingress processes on one port (SO_REUSEPORT) each process has its
own registry and `/metrics` answers from whichever process took the connection:
scrape each process separately, or run one process per container.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

# Label used for a path whose plugin is not one we know: arbitrary URL text never becomes a label.
UNKNOWN_PLUGIN = "unknown"

PUBLISH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ResponseCounts(Collector):
    """Every answer by status, as a plain dict rendered at scrape time: it is counted on every
    request, and a Counter child's increment takes a lock (the ingress has one thread)."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "hookstream_ingress_responses",
            "Every answer the ingress gave, by HTTP status: every path, parser rejections, timeouts and 5xx.",
            labels=["status"],
        )
        for status, count in sorted(self.counts.items()):
            family.add_metric([str(status)], count)
        yield family


class IngressMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.deliveries = Counter(
            "hookstream_ingress_requests_total",
            "Requests to /hooks/{plugin}/{instance}, by plugin and HTTP status.",
            ["plugin", "status"],
            registry=self.registry,
        )
        self.events = Counter(
            "hookstream_ingress_events_requests_total",
            "Requests to POST /events, by HTTP status.",
            ["status"],
            registry=self.registry,
        )
        self.received_bytes = Counter(
            "hookstream_ingress_received_bytes_total",
            'Request body bytes read by the ingress, by plugin ("events" for POST /events).',
            ["plugin"],
            registry=self.registry,
        )
        self.responses = ResponseCounts()
        self.registry.register(self.responses)
        self.timeouts = Counter(
            "hookstream_ingress_timeouts_total",
            "Requests answered 408 because their head or their body did not arrive in time.",
            ["phase"],
            registry=self.registry,
        )
        self.disconnects = Counter(
            "hookstream_ingress_client_disconnects_total",
            "Requests whose client went away before the answer could be written (mid-body, or while waiting).",
            registry=self.registry,
        )
        self.publish_seconds = Histogram(
            "hookstream_ingress_publish_seconds",
            "Time from handing a record to the producer to the broker's acknowledgement (acks=all).",
            ["topic"],
            buckets=PUBLISH_BUCKETS,
            registry=self.registry,
        )

        # Labelled children, looked up once: `labels()` takes a lock and builds a tuple per call.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def count_delivery(self, plugin: str, status: int) -> None:
        self._child(self.deliveries, plugin, str(status)).inc()

    def count_event(self, status: int) -> None:
        self._child(self.events, str(status)).inc()

    def count_response(self, status: int) -> None:
        counts = self.responses.counts
        counts[status] = counts.get(status, 0) + 1

    def count_timeout(self, phase: str) -> None:
        self._child(self.timeouts, phase).inc()

    def count_disconnect(self) -> None:
        self.disconnects.inc()

    def count_bytes(self, plugin: str, size: int) -> None:
        self._child(self.received_bytes, plugin).inc(size)

    def observe_publish(self, logical_topic: str, seconds: float) -> None:
        self._child(self.publish_seconds, logical_topic).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
