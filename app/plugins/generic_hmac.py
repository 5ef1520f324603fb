"""Any sender that signs the raw body with an HMAC in one header; the body is a hookstream producer event.

Options (instance.options): `header` (default `X-Signature`), `algorithm`
(`sha256` default, `sha1`, `sha512`), `encoding` (`hex` default, `base64`,
`base64url`), `prefix` written before the signature (e.g. `sha256=`, default
none), `id_header` naming the header that carries the delivery id (default
none: the fallback hash of the body is the id).

Verification order: options readable (else `ConfigError`, our fault, not the
sender's), signature header present, prefixed, decodable to a digest of the
algorithm's size, matching one secret; then the delivery id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from app.events import Delivery
from app.plugins.base import Routed, Verified, VerificationError
from app.plugins.delivery_ids import resolve_delivery_id
from app.plugins.options import choice_option, text_option
from app.plugins.producer_events import route_producer_event
from app.plugins.signatures import ALGORITHMS, decode_signature, digest_size, encode_signature, hmac_digest, matches_any, secret_keys
from app.settings import InstanceConfig

ENCODINGS = ("hex", "base64", "base64url")


@dataclass(frozen=True)
class SchemeOptions:
    header: str
    algorithm: str
    encoding: str
    prefix: str
    id_header: str | None


def scheme_options(instance: InstanceConfig) -> SchemeOptions:
    """The instance's scheme, validated; raises ConfigError naming the bad option."""
    return SchemeOptions(
        header=text_option(instance, "header", "X-Signature") or "X-Signature",
        algorithm=choice_option(instance, "algorithm", "sha256", tuple(ALGORITHMS)),
        encoding=choice_option(instance, "encoding", "hex", ENCODINGS),
        prefix=text_option(instance, "prefix", "", allow_empty=True) or "",
        id_header=text_option(instance, "id_header", None),
    )


class GenericHmac:
    name = "generic-hmac"

    def validate_options(self, instance: InstanceConfig) -> None:
        scheme_options(instance)

    def verify(self, raw: bytes, headers: Mapping[str, str], instance: InstanceConfig, route: str | None, now: float) -> Verified:
        scheme = scheme_options(instance)
        value = headers.get(scheme.header.lower())
        if value is None:
            raise VerificationError(f"missing {scheme.header} header")
        value = value.strip()
        if not value.startswith(scheme.prefix):
            raise VerificationError(f"{scheme.header} must start with {scheme.prefix!r}")
        signature = decode_signature(value[len(scheme.prefix) :], scheme.encoding, scheme.header, digest_size(scheme.algorithm))
        if not matches_any([signature], secret_keys(instance), raw, scheme.algorithm):
            raise VerificationError(f"{scheme.header} does not match the body under any configured secret")
        kept: dict[str, str] = {}
        delivery_header_value = None
        if scheme.id_header is not None:
            delivery_header_value = headers.get(scheme.id_header.lower())
            if delivery_header_value is not None:
                kept[scheme.id_header.lower()] = delivery_header_value
        delivery_id = resolve_delivery_id(delivery_header_value, scheme.id_header or "", self.name, instance.id, route, raw)
        return Verified(delivery_id=delivery_id, headers=kept)

    def sign(self, raw: bytes, instance: InstanceConfig, now: float, delivery_id: str | None = None, event: str | None = None) -> dict[str, str]:
        """Signed with the first secret; the id header is sent only when configured and `delivery_id` is given."""
        scheme = scheme_options(instance)
        digest = hmac_digest(secret_keys(instance)[0], raw, scheme.algorithm)
        headers = {"Content-Type": "application/json", scheme.header: scheme.prefix + encode_signature(digest, scheme.encoding)}
        if scheme.id_header is not None and delivery_id is not None:
            headers[scheme.id_header] = delivery_id
        return headers

    def route(self, delivery: Delivery, instance: InstanceConfig) -> Routed:
        return route_producer_event(delivery)


plugin = GenericHmac()
