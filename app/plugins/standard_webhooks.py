"""Standard Webhooks (standardwebhooks.com): `webhook-id`, `webhook-timestamp`, `webhook-signature`.

The signed content is `{id}.{timestamp}.` followed by the raw body bytes, never
a decoded string: a body that is not UTF-8 verifies like any other. The
signature header holds space-separated `version,base64` entries: `v1` entries
are HMAC-SHA256, `v1a` entries ed25519 signatures (the spec's asymmetric
scheme); other versions are skipped. A header that is not that shape is
rejected as a whole.

Secrets: `whsec_<base64>` is the standard form (the key is the decoded bytes,
padding optional). `whpk_<base64>` is an ed25519 public key (32 bytes): `v1a`
entries are verified with it (needs `cryptography`: the `ed25519` extra). Any
other secret is used as its raw UTF-8 bytes, which is what the
`standardwebhooks` library does with `Webhook(b"...")`. Entries of a version the
instance has no key for are skipped, as the spec says a consumer trusts only
the schemes it was configured with.

Verification order: the three headers present; the timestamp an integer within
`tolerance_seconds` (default 300) of `now`, inclusive, on both sides (a cheap
check that stops replays before any signature); the signature entries
well-formed; one entry matching one key; then the delivery id (`webhook-id`).

Routing: `options.rules` (`app.plugins.rules`); without rules the body is a
hookstream producer event.

Why not the `standardwebhooks` library at runtime: it decodes the body as
UTF-8, raises ValueError on a malformed entry, reads the wall clock itself and
takes one secret. The unit tests use it as an independent oracle.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping

from app.events import Delivery
from app.instances import ConfigError, InstanceConfig
from app.plugins.base import Routed, VerificationError, Verified
from app.plugins.delivery_ids import resolve_delivery_id
from app.plugins.options import duration_option
from app.plugins.rules import kept_headers, route_by_rules, rule_set
from app.plugins.signatures import (
    checked_timestamp,
    decode_base64,
    ed25519_matches_any,
    ed25519_public_key,
    hmac_digest,
    matches_any,
)

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
PUBLIC_KEY_PREFIX = "whpk_"
DEFAULT_TOLERANCE_SECONDS = 300.0


def _prefixed_base64(instance: InstanceConfig, index: int, value: str, prefix: str) -> bytes:
    encoded = value[len(prefix) :].rstrip("=")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise ConfigError(
            f"instance {instance.plugin}/{instance.id} secrets[{index}]: starts with {prefix} but the rest is not non-empty base64"
        )
    return key


def signing_keys(instance: InstanceConfig) -> list[bytes]:
    """The HMAC key of each configured secret that is not a public key, in order; a bad `whsec_` secret is a ConfigError."""
    keys = []
    for index, secret in enumerate(instance.secrets):
        value = secret.get_secret_value()
        if value.startswith(PUBLIC_KEY_PREFIX):
            continue
        keys.append(
            _prefixed_base64(instance, index, value, SECRET_PREFIX)
            if value.startswith(SECRET_PREFIX)
            else value.encode("utf-8")
        )
    return keys


def public_keys(instance: InstanceConfig) -> list[object]:
    """The ed25519 verifying key of each `whpk_` secret, in order; ConfigError when one is unusable."""
    keys = []
    for index, secret in enumerate(instance.secrets):
        value = secret.get_secret_value()
        if not value.startswith(PUBLIC_KEY_PREFIX):
            continue
        raw = _prefixed_base64(instance, index, value, PUBLIC_KEY_PREFIX)
        where = f"instance {instance.plugin}/{instance.id} secrets[{index}]"
        if len(raw) != 32:
            raise ConfigError(f"{where}: an ed25519 public key is 32 bytes, this one decodes to {len(raw)}")
        try:
            keys.append(ed25519_public_key(raw))
        except ImportError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return keys


def signed_content(msg_id: str, timestamp: str, raw: bytes) -> bytes:
    # surrogatepass never raises: an odd header value fails the comparison or the id check instead.
    return f"{msg_id}.{timestamp}.".encode("utf-8", "surrogatepass") + raw


def _signatures(value: str, versions: dict[str, int]) -> dict[str, list[bytes]]:
    """The decoded entries of each version in `versions` (version -> signature size); others skipped."""
    entries = value.split()  # runs of spaces are one separator
    if not entries:
        raise VerificationError(f"{SIGNATURE_HEADER} has no entries")
    found: dict[str, list[bytes]] = {version: [] for version in versions}
    for number, entry in enumerate(entries, start=1):
        version, comma, signature = entry.partition(",")
        if not comma or not version or not signature:
            raise VerificationError(f"{SIGNATURE_HEADER} entry {number} is not 'version,signature'")
        if version in versions:
            found[version].append(decode_base64(signature, f"{SIGNATURE_HEADER} entry {number}", versions[version]))
    if not any(found.values()):
        raise VerificationError(f"{SIGNATURE_HEADER} has no {' or '.join(versions)} signature")
    return found


class StandardWebhooks:
    name = "standard-webhooks"

    def validate_options(self, instance: InstanceConfig) -> None:
        duration_option(instance, "tolerance_seconds", DEFAULT_TOLERANCE_SECONDS)
        signing_keys(instance)
        public_keys(instance)
        rule_set(instance)

    def verify(
        self, raw: bytes, headers: Mapping[str, str], instance: InstanceConfig, route: str | None, now: float
    ) -> Verified:
        msg_id = headers.get(ID_HEADER)
        timestamp = headers.get(TIMESTAMP_HEADER)
        signature = headers.get(SIGNATURE_HEADER)
        if not msg_id:
            raise VerificationError(f"missing {ID_HEADER} header")
        if not timestamp:
            raise VerificationError(f"missing {TIMESTAMP_HEADER} header")
        if not signature:
            raise VerificationError(f"missing {SIGNATURE_HEADER} header")
        checked_timestamp(
            timestamp, TIMESTAMP_HEADER, now, duration_option(instance, "tolerance_seconds", DEFAULT_TOLERANCE_SECONDS)
        )
        hmac_keys, verifying_keys = signing_keys(instance), public_keys(instance)
        versions = {**({"v1": 32} if hmac_keys else {}), **({"v1a": 64} if verifying_keys else {})}
        found = _signatures(signature, versions)
        content = signed_content(msg_id, timestamp, raw)
        if not (
            matches_any(found.get("v1", []), hmac_keys, content)
            or (found.get("v1a") and ed25519_matches_any(found["v1a"], verifying_keys, content))
        ):
            raise VerificationError(f"no {SIGNATURE_HEADER} entry matches under any configured secret or public key")
        delivery_id = resolve_delivery_id(msg_id, ID_HEADER, self.name, instance.id, route, raw)
        kept = {**kept_headers(instance, headers), ID_HEADER: msg_id, TIMESTAMP_HEADER: timestamp}
        return Verified(delivery_id=delivery_id, headers=kept)

    def sign(
        self, raw: bytes, instance: InstanceConfig, now: float, delivery_id: str | None = None, event: str | None = None
    ) -> dict[str, str]:
        """Signed (v1) with the first HMAC secret. Without `delivery_id` the id is the fallback hash of the
        body, so re-sending the same body is the same message (it dedups), as it would at the ingress.
        A public key cannot sign: an instance with only `whpk_` keys raises ConfigError."""
        msg_id = (
            delivery_id
            if delivery_id is not None
            else resolve_delivery_id(None, ID_HEADER, self.name, instance.id, None, raw)
        )
        timestamp = str(math.floor(now))
        keys = signing_keys(instance)
        if not keys:
            raise ConfigError(
                f"instance {instance.plugin}/{instance.id} has only public keys (whpk_): it verifies v1a signatures but cannot sign"
            )
        digest = hmac_digest(keys[0], signed_content(msg_id, timestamp, raw))
        return {
            "Content-Type": "application/json",
            ID_HEADER: msg_id,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: "v1," + base64.b64encode(digest).decode("ascii"),
        }

    def route(self, delivery: Delivery, instance: InstanceConfig) -> Routed:
        return route_by_rules(delivery, instance)


plugin = StandardWebhooks()
