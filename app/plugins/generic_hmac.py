"""Any sender that signs the raw body with an HMAC: one configurable header, or Stripe's or Slack's scheme.

Options (instance.options):
- `scheme`: `hmac` (default), `stripe` or `slack`.
- `hmac`: `header` (default `X-Signature`), `algorithm` (`sha256` default, `sha1`,
  `sha512`), `encoding` (`hex` default, `base64`, `base64url`), `prefix` written
  before the signature (e.g. `sha256=`, default none). The HMAC is over the raw body.
- `stripe`: `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]`, HMAC-SHA256
  of `<t>.<raw body>` keyed by the secret's UTF-8 bytes (a `whsec_...` secret is
  used as written, as Stripe's libraries do); any `v1` may match (rotation).
- `slack`: `X-Slack-Request-Timestamp: <unix seconds>` and `X-Slack-Signature:
  v0=<hex>`, HMAC-SHA256 of `v0:<timestamp>:<raw body>`.
- `tolerance_seconds` (stripe, slack; default 300, both providers' own default):
  the timestamp must be within it of now, on both sides.
- `id_header`: the header that carries the delivery id (default none: the
  fallback hash of the body is the id, so a retried body dedups).
- `rules`, `unmatched`: what a delivery routes to (`app.plugins.rules`); without
  rules the body is a hookstream producer event.

Verification order: options readable (else `ConfigError`, our fault, not the
sender's); signature header(s) present and well-formed; the timestamp window
(a cheap check that stops replays before any HMAC); one signature matching one
secret; then the delivery id.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from app.events import Delivery
from app.instances import ConfigError, InstanceConfig
from app.plugins.base import Routed, VerificationError, Verified
from app.plugins.delivery_ids import resolve_delivery_id
from app.plugins.options import choice_option, duration_option, text_option, where
from app.plugins.rules import kept_headers, route_by_rules, rule_set
from app.plugins.signatures import (
    ALGORITHMS,
    checked_timestamp,
    decode_hex,
    decode_signature,
    digest_size,
    encode_signature,
    hmac_digest,
    matches_any,
    secret_keys,
    stripe_elements,
)

ENCODINGS = ("hex", "base64", "base64url")
SCHEMES = ("hmac", "stripe", "slack")
DEFAULT_TOLERANCE_SECONDS = 300.0
STRIPE_HEADER = "Stripe-Signature"
SLACK_SIGNATURE_HEADER = "X-Slack-Signature"
SLACK_TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
# Options that only the `hmac` scheme reads: set with another scheme, they are a mistake.
_HMAC_ONLY = ("header", "algorithm", "encoding", "prefix")


@dataclass(frozen=True)
class SchemeOptions:
    scheme: str
    header: str
    algorithm: str
    encoding: str
    prefix: str
    id_header: str | None
    tolerance: float


def scheme_options(instance: InstanceConfig) -> SchemeOptions:
    """The instance's scheme, validated; raises ConfigError naming the bad option."""
    scheme = choice_option(instance, "scheme", "hmac", SCHEMES)
    if scheme != "hmac":
        for key in _HMAC_ONLY:
            if key in instance.options:
                raise ConfigError(
                    f"{where(instance, key)}: applies to scheme `hmac` only; scheme `{scheme}` fixes its own header and digest"
                )
    elif "tolerance_seconds" in instance.options:
        raise ConfigError(
            f"{where(instance, 'tolerance_seconds')}: scheme `hmac` signs no timestamp; use scheme `stripe` or `slack`"
        )
    return SchemeOptions(
        scheme=scheme,
        header={
            "hmac": text_option(instance, "header", "X-Signature") or "X-Signature",
            "stripe": STRIPE_HEADER,
            "slack": SLACK_SIGNATURE_HEADER,
        }[scheme],
        algorithm=choice_option(instance, "algorithm", "sha256", tuple(ALGORITHMS)),
        encoding=choice_option(instance, "encoding", "hex", ENCODINGS),
        prefix=text_option(instance, "prefix", "", allow_empty=True) or "",
        id_header=text_option(instance, "id_header", None),
        tolerance=duration_option(instance, "tolerance_seconds", DEFAULT_TOLERANCE_SECONDS),
    )


def stripe_signed_content(timestamp: str, raw: bytes) -> bytes:
    return timestamp.encode("ascii") + b"." + raw


def slack_signed_content(timestamp: str, raw: bytes) -> bytes:
    return b"v0:" + timestamp.encode("ascii") + b":" + raw


class GenericHmac:
    name = "generic-hmac"

    def validate_options(self, instance: InstanceConfig) -> None:
        scheme_options(instance)
        rule_set(instance)

    def verify(
        self, raw: bytes, headers: Mapping[str, str], instance: InstanceConfig, route: str | None, now: float
    ) -> Verified:
        scheme = scheme_options(instance)
        value = headers.get(scheme.header.lower())
        if value is None:
            raise VerificationError(f"missing {scheme.header} header")
        value = value.strip()
        if scheme.scheme == "stripe":
            self._verify_stripe(raw, value, instance, scheme, now)
        elif scheme.scheme == "slack":
            self._verify_slack(raw, value, headers, instance, scheme, now)
        else:
            self._verify_hmac(raw, value, instance, scheme)
        kept = kept_headers(instance, headers)
        delivery_header_value = None
        if scheme.id_header is not None:
            delivery_header_value = headers.get(scheme.id_header.lower())
            if delivery_header_value is not None:
                kept[scheme.id_header.lower()] = delivery_header_value
        delivery_id = resolve_delivery_id(
            delivery_header_value, scheme.id_header or "", self.name, instance.id, route, raw
        )
        return Verified(delivery_id=delivery_id, headers=kept)

    def _verify_hmac(self, raw: bytes, value: str, instance: InstanceConfig, scheme: SchemeOptions) -> None:
        if not value.startswith(scheme.prefix):
            raise VerificationError(f"{scheme.header} must start with {scheme.prefix!r}")
        signature = decode_signature(
            value[len(scheme.prefix) :], scheme.encoding, scheme.header, digest_size(scheme.algorithm)
        )
        if not matches_any([signature], secret_keys(instance), raw, scheme.algorithm):
            raise VerificationError(f"{scheme.header} does not match the body under any configured secret")

    def _verify_stripe(
        self, raw: bytes, value: str, instance: InstanceConfig, scheme: SchemeOptions, now: float
    ) -> None:
        timestamp, v1 = stripe_elements(value, scheme.header)
        checked_timestamp(timestamp, f"{scheme.header} t=", now, scheme.tolerance)
        signatures = [decode_hex(s, f"{scheme.header} v1 signature {n}", 32) for n, s in enumerate(v1, start=1)]
        if not matches_any(signatures, secret_keys(instance), stripe_signed_content(timestamp, raw)):
            raise VerificationError(f"no {scheme.header} v1 signature matches under any configured secret")

    def _verify_slack(
        self,
        raw: bytes,
        value: str,
        headers: Mapping[str, str],
        instance: InstanceConfig,
        scheme: SchemeOptions,
        now: float,
    ) -> None:
        timestamp = headers.get(SLACK_TIMESTAMP_HEADER.lower())
        if timestamp is None:
            raise VerificationError(f"missing {SLACK_TIMESTAMP_HEADER} header")
        timestamp = timestamp.strip()
        if not value.startswith("v0="):
            raise VerificationError(f"{scheme.header} must start with 'v0='")
        signature = decode_hex(value[3:], scheme.header, 32)
        checked_timestamp(timestamp, SLACK_TIMESTAMP_HEADER, now, scheme.tolerance)
        if not matches_any([signature], secret_keys(instance), slack_signed_content(timestamp, raw)):
            raise VerificationError(f"{scheme.header} does not match under any configured secret")

    def sign(
        self, raw: bytes, instance: InstanceConfig, now: float, delivery_id: str | None = None, event: str | None = None
    ) -> dict[str, str]:
        """Signed with the first secret; the id header is sent only when configured and `delivery_id` is given."""
        scheme = scheme_options(instance)
        key = secret_keys(instance)[0]
        headers = {"Content-Type": "application/json"}
        timestamp = str(math.floor(now))
        if scheme.scheme == "stripe":
            headers[scheme.header] = f"t={timestamp},v1={hmac_digest(key, stripe_signed_content(timestamp, raw)).hex()}"
        elif scheme.scheme == "slack":
            headers[SLACK_TIMESTAMP_HEADER] = timestamp
            headers[scheme.header] = "v0=" + hmac_digest(key, slack_signed_content(timestamp, raw)).hex()
        else:
            headers[scheme.header] = scheme.prefix + encode_signature(
                hmac_digest(key, raw, scheme.algorithm), scheme.encoding
            )
        if scheme.id_header is not None and delivery_id is not None:
            headers[scheme.id_header] = delivery_id
        return headers

    def route(self, delivery: Delivery, instance: InstanceConfig) -> Routed:
        return route_by_rules(delivery, instance)


plugin = GenericHmac()
