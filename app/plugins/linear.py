"""Linear webhooks: `Linear-Signature` = hex HMAC-SHA256 of the raw body, `Linear-Delivery` as the id,
and the body's `webhookTimestamp` (ms since the epoch) within `tolerance_seconds` (default 60) of `now`.

Verification order, and why: signature header well-formed, then the HMAC over
the raw bytes (nothing is parsed before the bytes are known to be Linear's);
then the body is parsed: not a JSON object, or no numeric `webhookTimestamp`,
is `UnreadableDelivery` (400: authentic but unreadable); then the timestamp
window, inclusive on both sides (outside it is a replay: `VerificationError`,
401); then the delivery id.

Routing: hookstream has no Linear source yet, so every Linear delivery is
ignored by the explicit rule `linear.<type>` (e.g. `linear.Issue`), counted,
never silently dropped. A body that is not a JSON object is dead-lettered.
"""

from __future__ import annotations

from typing import Mapping

from app.events import Delivery
from app.plugins.base import Ignored, Routed, RoutingError, UnreadableDelivery, Verified, VerificationError
from app.plugins.delivery_ids import resolve_delivery_id
from app.plugins.options import duration_option
from app.plugins.payloads import json_object, rule_part
from app.plugins.signatures import decode_hex, hmac_digest, matches_any, secret_keys
from app.settings import InstanceConfig

SIGNATURE_HEADER = "Linear-Signature"
DELIVERY_HEADER = "Linear-Delivery"
EVENT_HEADER = "Linear-Event"
KEPT_HEADERS = ("linear-delivery", "linear-event")
DEFAULT_TOLERANCE_SECONDS = 60.0


class Linear:
    name = "linear"

    def validate_options(self, instance: InstanceConfig) -> None:
        duration_option(instance, "tolerance_seconds", DEFAULT_TOLERANCE_SECONDS)

    def verify(self, raw: bytes, headers: Mapping[str, str], instance: InstanceConfig, route: str | None, now: float) -> Verified:
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

        delivery_id = resolve_delivery_id(headers.get(DELIVERY_HEADER.lower()), DELIVERY_HEADER, self.name, instance.id, route, raw)
        return Verified(delivery_id=delivery_id, headers={k: headers[k] for k in KEPT_HEADERS if k in headers})

    def sign(self, raw: bytes, instance: InstanceConfig, now: float, delivery_id: str | None = None, event: str | None = None) -> dict[str, str]:
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
        return Routed(ignored=Ignored(f"linear.{rule_part(payload.get('type'))}"))


plugin = Linear()
