"""What `hookstream replay deliveries` re-submits, and the checks each delivery passes first. Pure.

Re-verification, honestly: the ingress keeps only the headers routing needs
(`Verified.headers`), never a signature header, so no stored delivery can have
its signature checked again:

  github             x-github-event, x-github-delivery, x-github-hook-id
  linear             linear-delivery, linear-event
  standard-webhooks  webhook-id, webhook-timestamp
  generic-hmac       the instance's id header, when it has one

(Linear and Standard Webhooks sign a timestamp that a replay would be outside
the tolerance of anyway.) What `check` does instead, for each delivery:
- blocking: the record's key is the delivery's key, the plugin exists, the
  instance is still configured and its options are valid (otherwise the worker
  would dead-letter it, so it is not re-submitted);
- reported: where the delivery id came from (the provider's id header, or the
  ingress's hash of plugin/instance/route/body, which re-checks the body too;
  anything else was written to Kafka directly, not through the ingress), and
  what routing does with it now (events, an ignore rule, or a dead letter).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from app.events import Delivery
from app.instances import ConfigError, InstanceConfig
from app.plugins import UnknownPlugin, get_plugin
from app.plugins.base import Plugin, fallback_delivery_id
from app.plugins.generic_hmac import scheme_options

# The header each plugin takes the provider's delivery id from (generic-hmac: per instance).
ID_HEADERS = {"github": "x-github-delivery", "linear": "linear-delivery", "standard-webhooks": "webhook-id"}

ID_FROM_HEADER = "provider id header"
ID_FROM_BODY = "hash of the body (body unchanged)"
ID_OTHER = "other (written to Kafka directly, not through the ingress)"


@dataclass(frozen=True)
class Selection:
    """The deliveries to re-submit: received in [start, end), optionally one plugin / instance."""

    start: datetime
    end: datetime
    plugin: str | None = None
    instance: str | None = None

    def in_range(self, delivery: Delivery) -> bool:
        return self.start <= delivery.received_at < self.end

    def matches(self, delivery: Delivery) -> bool:
        return (self.plugin is None or delivery.plugin == self.plugin) and (
            self.instance is None or delivery.instance == self.instance
        )


@dataclass(frozen=True)
class Verdict:
    resubmit: bool
    reason: str = ""  # why it is not re-submitted
    id_origin: str = ""
    routing: str = ""  # what routing does with it now


def id_origin(delivery: Delivery, instance: InstanceConfig) -> str:
    header = ID_HEADERS.get(delivery.plugin)
    if delivery.plugin == "generic-hmac":
        configured = scheme_options(instance).id_header
        header = configured.lower() if configured else None
    if header is not None and delivery.headers.get(header) == delivery.delivery_id:
        return ID_FROM_HEADER
    if fallback_delivery_id(delivery.plugin, delivery.instance, delivery.route, delivery.body) == delivery.delivery_id:
        return ID_FROM_BODY
    return ID_OTHER


def routing_preview(plugin: Plugin, delivery: Delivery, instance: InstanceConfig) -> str:
    """What the dedup/routing stage would do with the delivery now (routing is pure)."""
    try:
        routed = plugin.route(delivery, instance)
    except Exception as exc:  # noqa: BLE001 — as in core.intake: a routing failure is a dead letter, reported here
        return f"dead letter: {type(exc).__name__}: {exc}"[:200]
    if routed.ignored is not None:
        return f"ignored by rule {routed.ignored.rule}"
    kinds = Counter(type(event).__name__ for event in routed.events)
    return "routes to " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))


def check(key: str | None, delivery: Delivery, instances: Mapping[tuple[str, str], InstanceConfig]) -> Verdict:
    """Whether `delivery` (consumed with `key`) may be re-submitted, and what is known about it."""
    if key != delivery.key:
        return Verdict(False, f"record key {key!r} is not the delivery's key")
    try:
        plugin = get_plugin(delivery.plugin)
    except UnknownPlugin:
        return Verdict(False, f"unknown plugin {delivery.plugin}")
    instance = instances.get((delivery.plugin, delivery.instance))
    if instance is None:
        return Verdict(False, f"instance {delivery.plugin}/{delivery.instance} is not configured")
    try:
        plugin.validate_options(instance)
    except ConfigError as exc:
        return Verdict(False, f"instance {delivery.plugin}/{delivery.instance} has invalid options: {exc}")
    return Verdict(True, "", id_origin(delivery, instance), routing_preview(plugin, delivery, instance))


def new_epoch(now: datetime, token: str) -> str:
    """One replay epoch per command run: readable in logs and dead letters, unique by `token`."""
    return f"replay-{now.strftime('%Y%m%dT%H%M%SZ')}-{token}"


def resubmission(delivery: Delivery, epoch: str, now: datetime) -> Delivery:
    """The delivery to publish: same key, byte-exact body and headers, a fresh replay epoch.

    `received_at` becomes the replay's time, as for a dead-letter redrive: routed
    events occur at it and the orchestrator folds with event time, so an old time
    would start jobs already past their deadline. `redrive_of` is cleared: the
    replay epoch, not a redrive, is what lets the delivery through dedup once.
    """
    return delivery.model_copy(update={"replay_epoch": epoch, "redrive_of": None, "received_at": now})


@dataclass
class Tally:
    """What one run saw and did; printed as the summary."""

    read: int = 0
    undecodable: int = 0
    outside_range: int = 0
    other_plugin_or_instance: int = 0
    repeated_key: int = 0
    selected: int = 0
    eligible: int = 0
    resubmitted: int = 0
    not_resubmitted: Counter[str] = field(default_factory=Counter)
    id_origins: Counter[str] = field(default_factory=Counter)
    routing: Counter[str] = field(default_factory=Counter)

    def count(self, verdict: Verdict) -> None:
        self.selected += 1
        if not verdict.resubmit:
            self.not_resubmitted[verdict.reason] += 1
            return
        self.eligible += 1
        self.id_origins[verdict.id_origin] += 1
        self.routing[verdict.routing.split(":")[0]] += 1

    def lines(self, executed: bool) -> list[str]:
        done = "re-submitted" if executed else "would be re-submitted"
        out = [
            f"records read            {self.read}",
            f"  undecodable           {self.undecodable} (the worker dead-lettered them at stage decode)",
            f"  received outside      {self.outside_range}",
            f"  other plugin/instance {self.other_plugin_or_instance}",
            f"  repeated key          {self.repeated_key} (redeliveries or earlier replays: each key goes once)",
            f"deliveries selected     {self.selected}",
            f"  {done:<21} {self.resubmitted if executed else self.eligible}",
        ]
        for reason, n in sorted(self.not_resubmitted.items()):
            out.append(f"  not re-submitted      {n}: {reason}")
        for origin, n in sorted(self.id_origins.items()):
            out.append(f"  delivery id from      {n}: {origin}")
        for outcome, n in sorted(self.routing.items()):
            out.append(f"  routing now           {n}: {outcome}")
        return out


VERIFICATION_NOTE = (
    "Signatures are not re-checked: the ingress stores no signature header (it keeps only what routing "
    "needs), so a stored delivery cannot be verified again. Checked instead: the record decodes, its key "
    "is the delivery's, its plugin exists and its instance is still configured with valid options; "
    "reported: where its delivery id came from, and what routing does with it now."
)

DOWNSTREAM_NOTE = (
    "Downstream: deduplicate_deliveries routes each re-submitted delivery once for this epoch (another "
    "copy of it is dropped; the same record re-read after a crash is routed again). Syncs stay "
    "idempotent: a SyncRequested's request id is its delivery id, so orchestrate_syncs starts nothing "
    "for a request id it still remembers (24 h, at most 1,000 per source) and answers a live "
    "idempotency key (source + mode + trigger + commit, 5 min) with the job holding it; batches upsert "
    "documents by (source, path), so a sync that does run writes the same rows. A replay therefore "
    "starts syncs only where the earlier routing asked that source for none (dead-lettered, ignored, "
    "routed to another source) or where the orchestrator has forgotten the request."
)
