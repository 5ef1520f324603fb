"""GitHub webhooks: `X-Hub-Signature-256: sha256=<hex>` over the raw body, `X-GitHub-Delivery` as the id.

Verification order: signature header present and well-formed, then the HMAC
(any configured secret), then the delivery id. `X-GitHub-Event` is not
required here: the ingress does not interpret deliveries, and routing
dead-letters one that lacks it.

Options (all optional): `tracked_branch` (default: the repository's default
branch from each push), `config_files` (default `.hookstream.yml`,
`.hookstream.yaml`: a push naming one asks for a full sync, and the names go
into the config of the sources the instance connects, for the planner to read).
Routing rules live in `github_routing`.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.events import Delivery
from app.instances import InstanceConfig
from app.plugins.base import Routed, VerificationError, Verified
from app.plugins.delivery_ids import resolve_delivery_id
from app.plugins.github_routing import config_file_names, route_github
from app.plugins.options import text_option
from app.plugins.signatures import decode_hex, hmac_digest, matches_any, secret_keys

SIGNATURE_HEADER = "X-Hub-Signature-256"
SIGNATURE_PREFIX = "sha256="
DELIVERY_HEADER = "X-GitHub-Delivery"
EVENT_HEADER = "X-GitHub-Event"
# What routing needs, and what an operator wants to see on a dead letter.
KEPT_HEADERS = ("x-github-event", "x-github-delivery", "x-github-hook-id")


class GitHub:
    name = "github"

    def validate_options(self, instance: InstanceConfig) -> None:
        text_option(instance, "tracked_branch", None)
        config_file_names(instance)

    def verify(
        self, raw: bytes, headers: Mapping[str, str], instance: InstanceConfig, route: str | None, now: float
    ) -> Verified:
        value = headers.get(SIGNATURE_HEADER.lower())
        if value is None:
            raise VerificationError(f"missing {SIGNATURE_HEADER} header")
        value = value.strip()
        if not value.startswith(SIGNATURE_PREFIX):
            raise VerificationError(f"{SIGNATURE_HEADER} must start with {SIGNATURE_PREFIX!r}")
        signature = decode_hex(value[len(SIGNATURE_PREFIX) :], SIGNATURE_HEADER, 32)
        if not matches_any([signature], secret_keys(instance), raw):
            raise VerificationError(f"{SIGNATURE_HEADER} does not match the body under any configured secret")
        delivery_id = resolve_delivery_id(
            headers.get(DELIVERY_HEADER.lower()), DELIVERY_HEADER, self.name, instance.id, route, raw
        )
        return Verified(delivery_id=delivery_id, headers={k: headers[k] for k in KEPT_HEADERS if k in headers})

    def sign(
        self, raw: bytes, instance: InstanceConfig, now: float, delivery_id: str | None = None, event: str | None = None
    ) -> dict[str, str]:
        """Signed with the first configured secret, as GitHub would; no id header unless given."""
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: SIGNATURE_PREFIX + hmac_digest(secret_keys(instance)[0], raw).hex(),
        }
        if event is not None:
            headers[EVENT_HEADER] = event
        if delivery_id is not None:
            headers[DELIVERY_HEADER] = delivery_id
        return headers

    def route(self, delivery: Delivery, instance: InstanceConfig) -> Routed:
        return route_github(delivery, instance)


plugin = GitHub()
