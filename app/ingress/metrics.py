"""The ingress's Prometheus metrics, in a registry of its own per app (no global state at import).

With several ingress processes on one port (SO_REUSEPORT) each process has its
own registry and `/metrics` answers from whichever process took the connection:
scrape each process separately, or run one process per container.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Label used for a path whose plugin is not one we know: arbitrary URL text never becomes a label.
UNKNOWN_PLUGIN = "unknown"

PUBLISH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


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
            "Request body bytes read by the ingress, by plugin (\"events\" for POST /events).",
            ["plugin"],
            registry=self.registry,
        )
        self.publish_seconds = Histogram(
            "hookstream_ingress_publish_seconds",
            "Time from handing a record to the producer to the broker's acknowledgement (acks=all).",
            ["topic"],
            buckets=PUBLISH_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
