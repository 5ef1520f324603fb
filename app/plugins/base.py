"""What every provider plugin is: verify raw bytes, name the delivery, sign (for producers), route.

`verify` and `route` are pure: headers, bytes, the instance's config and the
time (`now`, seconds since the epoch) come in as parameters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from app.events import ControlEvent, Delivery
from app.instances import InstanceConfig


class VerificationError(Exception):
    """The delivery is not authentic (401). `reason` is safe to show: it never holds a secret or signature."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnreadableDelivery(Exception):
    """The delivery is authentic but cannot be read (400), e.g. a body that is not the JSON the scheme needs."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Verified:
    """An authentic delivery: its id and the headers routing needs (lower-cased names)."""

    delivery_id: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Ignored:
    """A delivery that routes to nothing by an explicit rule (counted, never silent)."""

    rule: str


@dataclass(frozen=True)
class Routed:
    events: tuple[ControlEvent, ...] = ()
    ignored: Ignored | None = None


class RoutingError(Exception):
    """The delivery cannot be routed: it goes to the dead-letter topic with this reason."""


class Plugin(Protocol):
    name: str

    def verify(
        self, raw: bytes, headers: Mapping[str, str], instance: InstanceConfig, route: str | None, now: float
    ) -> Verified:
        """Check the signature over the raw bytes; `headers` have lower-cased names."""

    def sign(
        self, raw: bytes, instance: InstanceConfig, now: float, delivery_id: str | None = None, event: str | None = None
    ) -> dict[str, str]:
        """The headers a sender would attach (used by `hookstream send delivery` and tests)."""

    def route(self, delivery: Delivery, instance: InstanceConfig) -> Routed:
        """Domain events for a verified delivery; raises RoutingError for what cannot be routed."""

    def validate_options(self, instance: InstanceConfig) -> None:
        """Raise `app.instances.ConfigError` when the instance's options or secrets cannot work.

        Called by the ingress and worker at start, so a typo fails there and not on
        the first delivery. Verify and route raise the same error if never called.
        """


def fallback_delivery_id(plugin: str, instance: str, route: str | None, raw: bytes) -> str:
    """sha256(plugin · instance · route · rawBody): deterministic, no clock, so a retried body dedups.

    NUL separates the parts, so ("a", "bc") and ("ab", "c") never collide.
    """
    h = hashlib.sha256()
    for part in (plugin.encode(), instance.encode(), (route or "").encode()):
        h.update(part)
        h.update(b"\x00")
    h.update(raw)
    return h.hexdigest()
