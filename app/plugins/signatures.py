"""Signatures over raw bytes: HMACs, timestamped HMAC schemes (Stripe's, Slack's) and ed25519.

Compute them, decode what a sender wrote, compare in constant time.

Invariants:
- A malformed signature value becomes a `VerificationError` naming the header
  and what is wrong, never a `ValueError` from `fromhex`/`b64decode`, and never
  quoting the value (it is a signature).
- Comparison is `hmac.compare_digest` on the decoded bytes; a signature matching
  any configured secret is accepted (rotation).
- A timestamp is checked against `now` (a parameter, never the clock) before any
  HMAC or signature: stale or future beyond the tolerance is rejected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable
from typing import Any

from app.instances import InstanceConfig
from app.plugins.base import VerificationError

# hashlib's constructors, typed by the standard library's stubs (one signature for the three).
ALGORITHMS = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
}

_HEX = re.compile(r"[0-9a-fA-F]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


def secret_keys(instance: InstanceConfig) -> list[bytes]:
    """The instance's secrets as HMAC keys (UTF-8), in configured order: the first one signs."""
    return [secret.get_secret_value().encode("utf-8") for secret in instance.secrets]


def digest_size(algorithm: str) -> int:
    return ALGORITHMS[algorithm]().digest_size


def hmac_digest(key: bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(key, message, ALGORITHMS[algorithm]).digest()


def matches_any(signatures: Iterable[bytes], keys: Iterable[bytes], message: bytes, algorithm: str = "sha256") -> bool:
    """True when one of `signatures` is the HMAC of `message` under one of `keys`.

    Each comparison is constant-time. Stopping at the first match only reveals
    which configured secret matched, which is no secret.
    """
    candidates = list(signatures)
    for key in keys:
        expected = hmac_digest(key, message, algorithm)
        for candidate in candidates:
            if hmac.compare_digest(expected, candidate):
                return True
    return False


def decode_hex(value: str, what: str, size: int) -> bytes:
    """`size` bytes from exactly 2*size hex digits (either case); anything else is a VerificationError."""
    # The regex, not bytes.fromhex alone: fromhex accepts spaces between bytes.
    if len(value) != 2 * size or not _HEX.fullmatch(value):
        raise VerificationError(f"{what} is not a {2 * size}-digit hex digest")
    return bytes.fromhex(value)


def decode_base64(value: str, what: str, size: int, urlsafe: bool = False) -> bytes:
    """`size` bytes from standard (or URL-safe) base64; missing padding is tolerated, nothing else is."""
    alphabet = "base64url" if urlsafe else "base64"
    if not (_BASE64URL if urlsafe else _BASE64).fullmatch(value):
        raise VerificationError(f"{what} is not valid {alphabet}")
    padded = value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4)
    try:
        decoded = base64.urlsafe_b64decode(padded) if urlsafe else base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        # e.g. a length that no padding can fix (4n+1 characters)
        raise VerificationError(f"{what} is not valid {alphabet}") from None
    if len(decoded) != size:
        raise VerificationError(f"{what} decodes to {len(decoded)} bytes, expected a {size}-byte digest")
    return decoded


def encode_signature(digest: bytes, encoding: str) -> str:
    """The text form a sender writes: `hex`, `base64` or `base64url` (padded)."""
    if encoding == "hex":
        return digest.hex()
    if encoding == "base64":
        return base64.b64encode(digest).decode("ascii")
    return base64.urlsafe_b64encode(digest).decode("ascii")


def decode_signature(value: str, encoding: str, what: str, size: int) -> bytes:
    if encoding == "hex":
        return decode_hex(value, what, size)
    return decode_base64(value, what, size, urlsafe=encoding == "base64url")


# --- timestamped schemes ---------------------------------------------------------

_TIMESTAMP = re.compile(r"[0-9]{1,15}")


def checked_timestamp(value: str, what: str, now: float, tolerance: float) -> int:
    """Whole seconds since the epoch from `value`, within `tolerance` of `now` (inclusive) on both
    sides: older is a replay, newer a forged or broken clock. Checked before any HMAC (cheap)."""
    if not _TIMESTAMP.fullmatch(value):
        raise VerificationError(f"{what} is not an integer number of seconds")
    seconds = int(value)
    if seconds < now - tolerance:
        raise VerificationError(f"{what} is older than the {tolerance:g} s tolerance")
    if seconds > now + tolerance:
        raise VerificationError(f"{what} is further in the future than the {tolerance:g} s tolerance")
    return seconds


def stripe_elements(value: str, header: str) -> tuple[str, list[str]]:
    """(`t`, every `v1` value) of a Stripe-style `t=...,v1=...[,v1=...][,v0=...]` header.

    Elements are `key=value`, comma-separated, spaces around them ignored; exactly one
    `t`; other schemes (`v0`, Stripe's test-mode signature) are skipped, as Stripe's own
    libraries do. Several `v1` appear while a secret is rotated.
    """
    timestamps: list[str] = []
    v1: list[str] = []
    for number, element in enumerate(value.split(","), start=1):
        key, equals, item = element.strip().partition("=")
        if not equals or not key or not item:
            raise VerificationError(f"{header} element {number} is not 'key=value'")
        if key == "t":
            timestamps.append(item)
        elif key == "v1":
            v1.append(item)
    if len(timestamps) != 1:
        raise VerificationError(f"{header} must hold exactly one t= timestamp, it holds {len(timestamps)}")
    if not v1:
        raise VerificationError(f"{header} has no v1 signature")
    return timestamps[0], v1


# --- ed25519 (Standard Webhooks v1a) ---------------------------------------------

ED25519_INSTALL_HINT = "pip install 'hookstream[ed25519]'"


def ed25519_public_key(raw: bytes) -> Any:
    """A verifying key from 32 raw bytes. `cryptography` is imported only here: instances
    that configure no public key never need it, and its absence names the cure."""
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        raise ImportError(f"ed25519 public keys need the `cryptography` package: {ED25519_INSTALL_HINT}") from None
    return Ed25519PublicKey.from_public_bytes(raw)


def ed25519_matches_any(signatures: Iterable[bytes], public_keys: Iterable[Any], message: bytes) -> bool:
    """True when one of `signatures` is a valid ed25519 signature of `message` by one of `public_keys`."""
    from cryptography.exceptions import InvalidSignature

    candidates = list(signatures)
    for key in public_keys:
        for candidate in candidates:
            try:
                key.verify(candidate, message)
            except InvalidSignature:
                continue
            return True
    return False
