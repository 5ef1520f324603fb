"""HMAC signatures over raw bytes: compute them, decode what a sender wrote, compare in constant time.

Invariants:
- A malformed signature value becomes a `VerificationError` naming the header
  and what is wrong, never a `ValueError` from `fromhex`/`b64decode`, and never
  quoting the value (it is a signature).
- Comparison is `hmac.compare_digest` on the decoded bytes; a signature matching
  any configured secret is accepted (rotation).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import Any, Callable, Iterable

from app.plugins.base import VerificationError
from app.settings import InstanceConfig

ALGORITHMS: dict[str, Callable[..., Any]] = {
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
