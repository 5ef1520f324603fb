"""Linear's GraphQL API: one POST per query, rate limits waited out, failures retried (bounded).

What Linear answers, and what this client does with it:
- 200 with `data` (and no `errors`): the data, with the server's `Date`.
- HTTP 429, or a GraphQL error whose `extensions.code` is `RATELIMITED` (Linear
  answers those with HTTP 400; the SDK also reads `extensions.type` =
  `ratelimited`): wait until the limit that is exhausted resets
  (`Retry-After` seconds, else `X-RateLimit-Requests-Reset` /
  `X-RateLimit-Complexity-Reset`, epoch milliseconds, for the budget whose
  `-Remaining` is 0), then retry; without any header, a minute, doubling.
- 5xx and connection errors: retried with backoff.
- 401/403 or an authentication error: SourceError naming the key to check.
- Other GraphQL errors: SourceError with Linear's messages (a query or filter
  Linear rejects is a bug to fix, not something to retry).

Personal API keys are sent as `Authorization: <key>`, OAuth access tokens
(`lin_oauth_...`, or a value that already starts with `Bearer `) as
`Authorization: Bearer <token>`, as Linear's docs say.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from app.sources.base import SourceError, SourceOptions
from app.sources.retries import Attempts

_RETRYABLE_STATUS = (500, 502, 503, 504)
# Without any reset header, Linear is asked again after a minute, doubling (bounded by the options).
_UNHEADED_RATE_LIMIT_SECONDS = 60.0


@dataclass(frozen=True)
class Answer:
    data: dict[str, Any]
    # The server's clock when it answered (the `Date` header), None when absent or unreadable.
    server_time: datetime | None


def authorization(token: str) -> str:
    if token.lower().startswith("bearer "):
        return token
    return f"Bearer {token}" if token.startswith("lin_oauth_") else token


class LinearApi:
    """A session to one GraphQL endpoint with one credential."""

    def __init__(
        self, url: str, token: str, options: SourceOptions, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.url, self.options = url, options
        self._authorization = authorization(token)
        self._session = session
        self._owns_session = session is None

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.options.http_timeout_seconds),
                headers={"User-Agent": "hookstream", "Content-Type": "application/json"},
            )
        return self._session

    async def query(self, name: str, query: str, variables: dict[str, Any]) -> Answer:
        """Run the operation `name`; its data, or SourceError saying why not."""
        attempts = Attempts(self.options, "Linear", f"query {name}")
        body = orjson.dumps({"operationName": name, "query": query, "variables": variables})
        while True:
            try:
                async with self._http().post(self.url, data=body, headers={"Authorization": self._authorization}) as r:
                    raw, status, headers = await r.read(), r.status, r.headers
            except (TimeoutError, aiohttp.ClientError) as exc:
                await attempts.backoff(f"unreachable at {self.url} ({type(exc).__name__}: {exc})")
                continue
            payload = _json(raw)
            errors = payload.get("errors") if isinstance(payload, dict) else None
            codes = _error_codes(errors)
            if status == 429 or "RATELIMITED" in codes:
                await attempts.rate_limited(
                    _rate_limit_wait(headers, self.options.clock(), attempts.attempt), "rate limited"
                )
                continue
            if status in _RETRYABLE_STATUS:
                await attempts.backoff(f"answering HTTP {status}")
                continue
            if status in (401, 403) or "AUTHENTICATION_ERROR" in codes or "FORBIDDEN" in codes:
                raise SourceError(
                    f"Linear refused the API key (HTTP {status}: {_messages(errors, raw)}); check HOOKSTREAM_LINEAR_API_KEY or the source's token_env"
                )
            if errors:
                raise SourceError(f"Linear rejected query {name} (HTTP {status}): {_messages(errors, raw)}")
            data = payload.get("data") if isinstance(payload, dict) else None
            if status != 200 or not isinstance(data, dict):
                raise SourceError(f"Linear answered query {name} with HTTP {status} and no data: {raw[:200]!r}")
            return Answer(data, _server_time(headers.get("Date")))


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


def _error_codes(errors: Any) -> set[str]:
    codes: set[str] = set()
    for error in errors if isinstance(errors, list) else []:
        extensions = error.get("extensions") if isinstance(error, dict) else None
        if isinstance(extensions, dict):
            for key in ("code", "type"):
                if isinstance(extensions.get(key), str):
                    codes.add(extensions[key].upper().replace(" ", "_"))
    return codes


def _messages(errors: Any, raw: bytes) -> str:
    if isinstance(errors, list) and errors:
        return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors[:3])[:500]
    return raw[:200].decode("utf-8", errors="replace") or "no message"


def _number(headers: Any, name: str) -> float | None:
    try:
        return float(headers.get(name))
    except (TypeError, ValueError):
        return None


def _rate_limit_wait(headers: Any, now: float, attempt: int) -> float:
    """Seconds until the exhausted budget resets (+1 s for clock granularity)."""
    retry_after = _number(headers, "Retry-After")
    if retry_after is not None:
        return max(0.0, retry_after)
    resets = [
        reset
        for budget in ("Requests", "Complexity")
        if _number(headers, f"X-RateLimit-{budget}-Remaining") == 0
        and (reset := _number(headers, f"X-RateLimit-{budget}-Reset")) is not None
    ]
    if resets:
        return max(0.0, max(resets) / 1000.0 - now) + 1.0
    return _UNHEADED_RATE_LIMIT_SECONDS * 2**attempt


def _server_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
