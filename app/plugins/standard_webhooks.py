"""Standard Webhooks (standardwebhooks.com): `webhook-id`, `webhook-timestamp`, `webhook-signature`.

The signed content is `{id}.{timestamp}.` followed by the raw body bytes, never
a decoded string: a body that is not UTF-8 verifies like any other. The
signature header holds space-separated `version,base64` entries; `v1` entries
are HMAC-SHA256 and are checked, other versions (e.g. `v1a`, asymmetric) are
skipped. A header that is not that shape is rejected as a whole.

Secrets: `whsec_<base64>` is the standard form (the key is the decoded bytes,
padding optional). A secret without the prefix is used as its raw UTF-8 bytes,
which is what the `standardwebhooks` library does with `Webhook(b"...")`.

Verification order: the three headers present; the timestamp an integer within
`tolerance_seconds` (default 300) of `now`, inclusive, on both sides (a cheap
check that stops replays before any HMAC); the signature entries well-formed;
one v1 entry matching one secret; then the delivery id (`webhook-id`) usable.

Why not the `standardwebhooks` library at runtime: it decodes the body as
UTF-8, raises ValueError on a malformed entry, reads the wall clock itself and
takes one secret. The unit tests use it as an independent oracle.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Mapping

from app.events import Delivery
from app.plugins.base import Routed, Verified, VerificationError
from app.plugins.delivery_ids import resolve_delivery_id
from app.plugins.options import duration_option
from app.plugins.producer_events import route_producer_event
from app.plugins.signatures import decode_base64, hmac_digest, matches_any
from app.settings import ConfigError, InstanceConfig

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_SECONDS = 300.0
_TIMESTAMP = re.compile(r"[0-9]{1,15}")


def signing_keys(instance: InstanceConfig) -> list[bytes]:
    """The HMAC key of each configured secret, in order; a bad `whsec_` secret is a ConfigError."""
    keys = []
    for index, secret in enumerate(instance.secrets):
        value = secret.get_secret_value()
        if not value.startswith(SECRET_PREFIX):
            keys.append(value.encode("utf-8"))
            continue
        encoded = value[len(SECRET_PREFIX) :].rstrip("=")
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if not key:
            raise ConfigError(
                f"instance {instance.plugin}/{instance.id} secrets[{index}]: starts with {SECRET_PREFIX} but the rest is not non-empty base64"
            )
        keys.append(key)
    return keys


def signed_content(msg_id: str, timestamp: str, raw: bytes) -> bytes:
    # surrogatepass never raises: an odd header value fails the comparison or the id check instead.
    return f"{msg_id}.{timestamp}.".encode("utf-8", "surrogatepass") + raw


def _v1_signatures(value: str) -> list[bytes]:
    entries = value.split()  # runs of spaces are one separator
    if not entries:
        raise VerificationError(f"{SIGNATURE_HEADER} has no entries")
    signatures = []
    for number, entry in enumerate(entries, start=1):
        version, comma, signature = entry.partition(",")
        if not comma or not version or not signature:
            raise VerificationError(f"{SIGNATURE_HEADER} entry {number} is not 'version,signature'")
        if version == "v1":
            signatures.append(decode_base64(signature, f"{SIGNATURE_HEADER} entry {number}", 32))
    if not signatures:
        raise VerificationError(f"{SIGNATURE_HEADER} has no v1 signature")
    return signatures


class StandardWebhooks:
    name = "standard-webhooks"

    def validate_options(self, instance: InstanceConfig) -> None:
        duration_option(instance, "tolerance_seconds", DEFAULT_TOLERANCE_SECONDS)
        signing_keys(instance)

    def verify(self, raw: bytes, headers: Mapping[str, str], instance: InstanceConfig, route: str | None, now: float) -> Verified:
        msg_id = headers.get(ID_HEADER)
        timestamp = headers.get(TIMESTAMP_HEADER)
        signature = headers.get(SIGNATURE_HEADER)
        if not msg_id:
            raise VerificationError(f"missing {ID_HEADER} header")
        if not timestamp:
            raise VerificationError(f"missing {TIMESTAMP_HEADER} header")
        if not signature:
            raise VerificationError(f"missing {SIGNATURE_HEADER} header")
        if not _TIMESTAMP.fullmatch(timestamp):
            raise VerificationError(f"{TIMESTAMP_HEADER} is not an integer number of seconds")
        tolerance = duration_option(instance, "tolerance_seconds", DEFAULT_TOLERANCE_SECONDS)
        if int(timestamp) < now - tolerance:
            raise VerificationError(f"{TIMESTAMP_HEADER} is older than the {tolerance:g} s tolerance")
        if int(timestamp) > now + tolerance:
            raise VerificationError(f"{TIMESTAMP_HEADER} is further in the future than the {tolerance:g} s tolerance")
        signatures = _v1_signatures(signature)
        if not matches_any(signatures, signing_keys(instance), signed_content(msg_id, timestamp, raw)):
            raise VerificationError(f"no {SIGNATURE_HEADER} entry matches under any configured secret")
        delivery_id = resolve_delivery_id(msg_id, ID_HEADER, self.name, instance.id, route, raw)
        return Verified(delivery_id=delivery_id, headers={ID_HEADER: msg_id, TIMESTAMP_HEADER: timestamp})

    def sign(self, raw: bytes, instance: InstanceConfig, now: float, delivery_id: str | None = None, event: str | None = None) -> dict[str, str]:
        """Signed with the first secret. Without `delivery_id` the id is the fallback hash of the body,
        so re-sending the same body is the same message (it dedups), as it would at the ingress."""
        msg_id = delivery_id if delivery_id is not None else resolve_delivery_id(None, ID_HEADER, self.name, instance.id, None, raw)
        timestamp = str(math.floor(now))
        digest = hmac_digest(signing_keys(instance)[0], signed_content(msg_id, timestamp, raw))
        return {
            "Content-Type": "application/json",
            ID_HEADER: msg_id,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: "v1," + base64.b64encode(digest).decode("ascii"),
        }

    def route(self, delivery: Delivery, instance: InstanceConfig) -> Routed:
        return route_producer_event(delivery)


plugin = StandardWebhooks()
