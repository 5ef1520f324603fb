"""Routing for plugins whose body is a hookstream producer event (standard-webhooks, generic-hmac).

Invariant: the routed event is exactly what the producer sent, validated
against the same models `POST /events` uses, plus a reference to the delivery
when the producer did not set one.
"""

from __future__ import annotations

from app.codec import DecodeError, decode_producer_event
from app.events import Delivery, DeliveryRef
from app.plugins.base import Routed, RoutingError


def route_producer_event(delivery: Delivery) -> Routed:
    try:
        event = decode_producer_event(delivery.body)
    except DecodeError as exc:
        raise RoutingError(f"body is not a hookstream producer event: {exc}") from None
    if getattr(event, "delivery", None) is None:
        # Models are frozen; model_copy keeps every field the producer validated.
        event = event.model_copy(update={"delivery": DeliveryRef(key=delivery.key)})
    return Routed(events=(event,))
