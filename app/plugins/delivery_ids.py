"""Which delivery id a verified delivery gets: the provider's header when present, else the fallback.

Invariant: the id is 1 to 200 visible ASCII characters (it becomes part of the
Kafka key `plugin/instance/deliveryId` and of log lines). A header that is
present but not such a value makes the delivery `UnreadableDelivery` (400):
plugins check it only after the signature, so an unauthenticated caller never
learns more than "401", and an authentic sender learns exactly what to fix.
An absent header is not an error: the fallback sha256 is deterministic, so a
retried body gets the same id and dedups.
"""

from __future__ import annotations

import re

from app.plugins.base import UnreadableDelivery, fallback_delivery_id

MAX_DELIVERY_ID_LENGTH = 200
_USABLE = re.compile(rf"[\x21-\x7e]{{1,{MAX_DELIVERY_ID_LENGTH}}}")


def resolve_delivery_id(
    header_value: str | None, header: str, plugin: str, instance: str, route: str | None, raw: bytes
) -> str:
    """The provider's id from `header_value` (named `header` in errors), or the fallback when absent."""
    if header_value is None:
        return fallback_delivery_id(plugin, instance, route, raw)
    if not _USABLE.fullmatch(header_value):
        raise UnreadableDelivery(
            f"{header} is not a usable delivery id: it must be 1 to {MAX_DELIVERY_ID_LENGTH} visible ASCII characters"
        )
    return header_value
