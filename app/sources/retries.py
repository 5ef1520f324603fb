"""Bounded waiting for HTTP source adapters: backoff after failures, waits out rate limits.

One `Attempts` per logical request. Every wait goes through `SourceOptions.sleep`
(injectable, so tests wait no real time), and both bounds come from the options:
at most `max_retries` waits, none longer than `max_rate_limit_wait_seconds`.
Past either bound the request fails with a `SourceError` that says which, so a
job fails with a reason instead of hanging.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.sources.base import SourceError, SourceOptions

MAX_BACKOFF_SECONDS = 30.0


def backoff_seconds(attempt: int) -> float:
    """1, 2, 4, ... seconds, at most 30: after a 5xx or a connection error."""
    return min(2.0**attempt, MAX_BACKOFF_SECONDS)


@dataclass
class Attempts:
    """The waits of one request to `service` (named in errors) about `what`."""

    options: SourceOptions
    service: str
    what: str
    attempt: int = 0

    async def backoff(self, reason: str) -> None:
        """Wait before retrying after `reason` (a 5xx, an unreachable server)."""
        await self._wait(backoff_seconds(self.attempt), reason)

    async def rate_limited(self, seconds: float, reason: str) -> None:
        """Wait `seconds` for a rate limit to reset; refuse when that is longer than this worker waits."""
        limit = self.options.max_rate_limit_wait_seconds
        if seconds > limit:
            raise SourceError(
                f"{self.service} rate limit on {self.what}: it resets in {seconds:.0f}s, longer than the "
                f"{limit:.0f}s this worker waits ({reason}); the sync can be requested again later"
            )
        await self._wait(seconds, reason)

    async def _wait(self, seconds: float, reason: str) -> None:
        if self.attempt >= self.options.max_retries:
            raise SourceError(f"{self.service} is still {reason} on {self.what} after {self.attempt + 1} attempts")
        await self.options.sleep(max(0.0, seconds))
        self.attempt += 1
