"""Bounded waiting for sources: backoff after transient failures, waiting out rate limits.

Two loops, one policy (`SourceOptions.retry_policy`, from HOOKSTREAM_RETRY_*):

- `Attempts`: the waits of one HTTP request (GitHub, Linear). A 5xx, a timeout or
  an unreachable server waits `RetryPolicy.delay` (exponential, half of it random)
  and tries again; a rate limit waits until it resets. At most `max_retries` waits,
  none longer than `max_rate_limit_wait_seconds`; past either bound the request
  fails with a `SourceError` that says which. That error is final: the request was
  retried already, so the stages do not retry it again.
- `retry_transient`: a whole stage step (listing a plan, reading a batch) retried
  while it fails with a transient error (`SourceError.transient`, e.g. a git reader
  that died more often than it restarts by itself), then its last error is raised.

Every wait goes through `SourceOptions.sleep` and every draw through
`SourceOptions.random` (injectable, so tests wait no real time).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from app.sources.base import SourceError, SourceOptions

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Attempts:
    """The waits of one request to `service` (named in errors) about `what`."""

    options: SourceOptions
    service: str
    what: str
    attempt: int = 0

    async def backoff(self, reason: str) -> None:
        """Wait before retrying after `reason` (a 5xx, a timeout, an unreachable server)."""
        await self._wait(self.options.retry_policy.delay(self.attempt, self.options.random()), reason)

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
        if not self.options.retry_policy.allows(self.attempt):
            raise SourceError(f"{self.service} is still {reason} on {self.what} after {self.attempt + 1} attempts")
        await self.options.sleep(max(0.0, seconds))
        self.attempt += 1


async def retry_transient(
    work: Callable[[], Awaitable[T]],
    options: SourceOptions,
    what: str,
    on_retry: Callable[[SourceError], None] | None = None,
) -> T:
    """`await work()`, tried again while it raises a transient `SourceError`, at most
    `options.max_retries` times; then the last error is raised, its message saying how often."""
    retry = 0
    while True:
        try:
            return await work()
        except SourceError as exc:
            if not exc.transient:
                raise
            policy = options.retry_policy
            if not policy.allows(retry):
                raise SourceError(f"{exc} (still failing after {retry + 1} attempts)") from None
            delay = policy.delay(retry, options.random())
            log.warning("%s failed (%s); retry %d of %d in %.1fs", what, exc, retry + 1, policy.attempts, delay)
            if on_retry is not None:
                on_retry(exc)
            await options.sleep(delay)
            retry += 1
