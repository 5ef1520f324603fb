"""Linear webhooks: `Linear-Signature` = hex HMAC-SHA256 of the raw body, `Linear-Delivery` as the id,
and the body's `webhookTimestamp` (ms since the epoch) within `tolerance_seconds` (default 60) of `now`.

Verification order, and why: signature header well-formed, then the HMAC over
the raw bytes (nothing is parsed before the bytes are known to be Linear's);
then the body is parsed: not a JSON object, or no numeric `webhookTimestamp`,
is `UnreadableDelivery` (400: authentic but unreadable); then the timestamp
window, inclusive on both sides (outside it is a replay: `VerificationError`,
401); then the delivery id.

Routing: an `Issue` or `Comment` delivery (any action: create, update, remove)
is an incremental `SyncRequested` for the source `linear:<organizationId>` (the
Linear source of that workspace, `hookstream sources connect --type linear`),
trigger `webhook`, request id the delivery id, with hints naming the changed
issue: its identifier and previous identifiers (a comment's: its issue's), or
its id when the payload has no identifier. The adapter lists what changed since
its last complete sync anyway; hints add what that window cannot see (a removed
issue, a deleted comment). `after` is the changed entity's `updatedAt`, so two
changes inside the idempotency TTL are two requests. Other types are ignored
under `linear.<Type>` (Linear's documented types; anything else `linear.other`),
and a comment on something that is not an issue under
`linear.Comment.not_on_issue`: counted, never silently dropped. A body that is
not a JSON object, or an Issue/Comment without a usable organization id or
data, is dead-lettered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from app.events import Delivery, DeliveryRef, SyncRequested
from app.instances import InstanceConfig
from app.plugins.base import Ignored, Routed, RoutingError, UnreadableDelivery, VerificationError, Verified
from app.plugins.delivery_ids import resolve_delivery_id
from app.plugins.options import duration_option
from app.plugins.payloads import json_object
from app.plugins.signatures import decode_hex, hmac_digest, matches_any, secret_keys

SIGNATURE_HEADER = "Linear-Signature"
DELIVERY_HEADER = "Linear-Delivery"
EVENT_HEADER = "Linear-Event"
KEPT_HEADERS = ("linear-delivery", "linear-event")
DEFAULT_TOLERANCE_SECONDS = 60.0
SYNCED_TYPES = ("Issue", "Comment")
# Linear's webhook types (its SDK's LinearWebhookEventType): bounded rule names, whatever a body says.
KNOWN_TYPES = frozenset(
    (
        "Attachment",
        "AuditEntry",
        "Comment",
        "Customer",
        "CustomerNeed",
        "Cycle",
        "Document",
        "Initiative",
        "InitiativeUpdate",
        "Issue",
        "IssueLabel",
        "Project",
        "ProjectUpdate",
        "Reaction",
        "User",
        "IssueSLA",
        "OAuthApp",
        "AppUserNotification",
        "PermissionChange",
        "AgentSessionEvent",
    )
)
_ORGANIZATION = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_HINT = re.compile(r"^[\x21-\x7e]{1,200}$")


def source_id_for(organization_id: str) -> str:
    """The id of a Linear workspace's source: what routing and `sources connect --type linear` agree on."""
    return f"linear:{organization_id}"


class Linear:
    name = "linear"

    def validate_options(self, instance: InstanceConfig) -> None:
        duration_option(instance, "tolerance_seconds", DEFAULT_TOLERANCE_SECONDS)

    def verify(
        self, raw: bytes, headers: Mapping[str, str], instance: InstanceConfig, route: str | None, now: float
    ) -> Verified:
        value = headers.get(SIGNATURE_HEADER.lower())
        if value is None:
            raise VerificationError(f"missing {SIGNATURE_HEADER} header")
        signature = decode_hex(value.strip(), SIGNATURE_HEADER, 32)
        if not matches_any([signature], secret_keys(instance), raw):
            raise VerificationError(f"{SIGNATURE_HEADER} does not match the body under any configured secret")

        payload = json_object(raw)
        if payload is None:
            raise UnreadableDelivery("body is not a JSON object")
        sent_ms = payload.get("webhookTimestamp")
        if not isinstance(sent_ms, (int, float)) or isinstance(sent_ms, bool):
            raise UnreadableDelivery("body has no numeric webhookTimestamp")
        tolerance = duration_option(instance, "tolerance_seconds", DEFAULT_TOLERANCE_SECONDS)
        age_ms = now * 1000 - sent_ms
        if age_ms > tolerance * 1000:
            raise VerificationError(f"webhookTimestamp is older than the {tolerance:g} s tolerance")
        if -age_ms > tolerance * 1000:
            raise VerificationError(f"webhookTimestamp is further in the future than the {tolerance:g} s tolerance")

        delivery_id = resolve_delivery_id(
            headers.get(DELIVERY_HEADER.lower()), DELIVERY_HEADER, self.name, instance.id, route, raw
        )
        return Verified(delivery_id=delivery_id, headers={k: headers[k] for k in KEPT_HEADERS if k in headers})

    def sign(
        self, raw: bytes, instance: InstanceConfig, now: float, delivery_id: str | None = None, event: str | None = None
    ) -> dict[str, str]:
        """Signed with the first secret. The body must already carry `webhookTimestamp`: it is signed content."""
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: hmac_digest(secret_keys(instance)[0], raw).hex(),
        }
        if delivery_id is not None:
            headers[DELIVERY_HEADER] = delivery_id
        if event is not None:
            headers[EVENT_HEADER] = event
        return headers

    def route(self, delivery: Delivery, instance: InstanceConfig) -> Routed:
        payload = json_object(delivery.body)
        if payload is None:
            raise RoutingError("body is not a JSON object")
        kind = payload.get("type")
        if kind not in SYNCED_TYPES:
            return Routed(ignored=Ignored(f"linear.{kind if kind in KNOWN_TYPES else 'other'}"))
        organization = payload.get("organizationId")
        if not isinstance(organization, str) or not _ORGANIZATION.match(organization):
            raise RoutingError(f"a Linear {kind} delivery without a usable organizationId")
        data = payload.get("data")
        if not isinstance(data, dict):
            raise RoutingError(f"a Linear {kind} delivery without a data object")
        issue = data if kind == "Issue" else data.get("issue")
        hints = _hints(
            issue if isinstance(issue, dict) else {}, data.get("id") if kind == "Issue" else data.get("issueId")
        )
        if not hints:
            if kind == "Comment":
                return Routed(ignored=Ignored("linear.Comment.not_on_issue"))
            raise RoutingError("a Linear Issue delivery whose data has neither an identifier nor an id")
        updated = data.get("updatedAt")
        try:
            request = SyncRequested(
                source_id=source_id_for(organization),
                occurred_at=delivery.received_at,
                delivery=DeliveryRef(key=delivery.key),
                request_id=delivery.delivery_id,
                mode="incremental",
                trigger="webhook",
                paths=hints,
                after=updated if isinstance(updated, str) and _HINT.match(updated) else None,
            )
        except ValidationError as exc:
            raise RoutingError(
                f"a Linear {kind} delivery makes no valid sync request: {exc.errors()[0]['msg']}"
            ) from None
        return Routed(events=(request,))


def _hints(issue: dict[str, Any], issue_id: Any) -> list[str]:
    """The issue's identifier and previous identifiers, else its id: what the adapter looks up."""
    previous = issue.get("previousIdentifiers")
    named = [issue.get("identifier"), *(previous if isinstance(previous, list) else [])]
    hints = [h for h in named if isinstance(h, str) and _HINT.match(h)]
    if not hints and isinstance(issue_id, str) and _HINT.match(issue_id):
        hints = [issue_id]
    return list(dict.fromkeys(hints))


plugin = Linear()
