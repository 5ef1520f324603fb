"""GitHub App authentication: the app's JWT (RS256) and cached installation tokens.

A GitHub App proves itself with a JWT signed by its private key (at most ten
minutes long) and trades it at `POST /app/installations/{id}/access_tokens`
for an installation token that lives an hour. Tokens are cached per
(API, app, installation) in `SourceOptions.token_cache` and refreshed five
minutes before they expire, so a worker mints about one token an hour per
installation, not one per batch.

`cryptography` is an optional dependency (the `github` extra): it is imported
only when a JWT is signed, and its absence raises an error naming the cure.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from app.sources.base import MissingExtraError, SourceError

# GitHub allows a JWT at most ten minutes long; iat is back-dated to absorb clock drift.
JWT_BACKDATE_SECONDS = 60
JWT_LIFETIME_SECONDS = 540
REFRESH_MARGIN_SECONDS = 300

INSTALL_HINT = "pip install 'hookstream[github]'"


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError:
        raise MissingExtraError(f"GitHub App authentication needs the `cryptography` package: {INSTALL_HINT}") from None
    return hashes, serialization, padding, rsa


def app_jwt(app_id: str, private_key_pem: str, now: float) -> str:
    """The app's JWT: header {alg: RS256}, claims {iat: now-60, exp: now+540, iss: app id}."""
    hashes, serialization, padding, rsa = _crypto()
    try:
        key = serialization.load_pem_private_key(private_key_pem.encode("utf-8"), password=None)
    except (ValueError, TypeError) as exc:
        raise SourceError(f"the GitHub App private key is not a usable unencrypted PEM key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SourceError("the GitHub App private key must be an RSA key (GitHub signs apps with RS256)")
    issued = int(now) - JWT_BACKDATE_SECONDS
    header = _b64url(orjson.dumps({"alg": "RS256", "typ": "JWT"}))
    claims = _b64url(orjson.dumps({"iat": issued, "exp": int(now) + JWT_LIFETIME_SECONDS, "iss": str(app_id)}))
    signing_input = header + b"." + claims
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return (signing_input + b"." + _b64url(signature)).decode("ascii")


def parse_expiry(value: Any) -> float:
    """`expires_at` of a token response ("2016-07-11T22:14:10Z") as epoch seconds."""
    if not isinstance(value, str):
        raise SourceError(f"GitHub's token response has no usable expires_at: {value!r}")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise SourceError(f"GitHub's token response has an unreadable expires_at: {value!r}") from None


@dataclass
class CachedToken:
    token: str
    expires_at: float

    def fresh(self, now: float) -> bool:
        return now < self.expires_at - REFRESH_MARGIN_SECONDS


def token_lock(cache: dict[Any, Any], key: tuple) -> asyncio.Lock:
    """One lock per installation, so concurrent fetches mint one token, not many."""
    lock = cache.get(("lock", key))
    if lock is None:
        lock = cache[("lock", key)] = asyncio.Lock()
    return lock
