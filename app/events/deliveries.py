"""`hookstream.deliveries`: a provider's webhook delivery, byte-exact, keyed plugin/instance/deliveryId."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.events.base import RawBytes, Record, Timestamp
from app.events.bounds import (
    DeliveryId,
    DeliveryKey,
    Identifier,
    InstanceName,
    KeptHeaders,
    Offset,
    PluginName,
    RouteName,
)


class Delivery(Record):
    """One verified delivery as the ingress received it.

    `body` is the raw request body, unchanged, so a replay can verify and route
    it again. `headers` holds only the (lower-cased) headers verification and
    routing need; never the signature headers' secrets, which are not secret
    anyway, but we keep what routing needs and nothing else.
    """

    type: Literal["delivery"] = "delivery"
    delivery_id: DeliveryId
    plugin: PluginName
    instance: InstanceName
    route: RouteName | None = None
    received_at: Timestamp
    # At most 32, lower-case names, values without control characters.
    headers: KeptHeaders = Field(default_factory=dict)
    body: RawBytes
    # Set when the delivery is a redrive of a dead letter (id of the dead letter).
    redrive_of: Identifier | None = None
    # Set when an operator re-submits a time range on purpose (hookstream replay deliveries).
    replay_epoch: Identifier | None = None

    @property
    def key(self) -> str:
        return delivery_key(self.plugin, self.instance, self.delivery_id)


def delivery_key(plugin: str, instance: str, delivery_id: str) -> str:
    """The Kafka key of a delivery: the plugin is part of it, two plugins may share an instance name."""
    return f"{plugin}/{instance}/{delivery_id}"


class DeliveryRef(Record):
    """Where a routed event came from: enough to find the delivery again."""

    type: Literal["delivery.ref"] = "delivery.ref"
    key: DeliveryKey
    partition: Offset | None = None
    offset: Offset | None = None
