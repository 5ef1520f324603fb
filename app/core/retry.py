"""How long to wait before retrying a transient failure, and how many times: pure.

Exponential backoff with "equal jitter": before retry `n` (0-based) the wait is
`d/2 + u * d/2` with `d = min(max_seconds, base_seconds * 2**n)` and `u` in
[0, 1) drawn by the caller. Half of each wait is fixed, so the total wait of a
policy has a floor (a short outage is outlasted, whatever the draws); the other
half is random, so workers that failed together do not retry together.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """At most `attempts` retries after the first try (0: fail at once)."""

    attempts: int = 6
    base_seconds: float = 0.5
    max_seconds: float = 30.0

    def ceiling(self, retry: int) -> float:
        """The longest wait before retry `retry` (0-based)."""
        return min(self.max_seconds, self.base_seconds * 2.0 ** min(retry, 64))

    def delay(self, retry: int, draw: float) -> float:
        """The wait before retry `retry`, `draw` in [0, 1)."""
        ceiling = self.ceiling(retry)
        return ceiling / 2 + min(max(draw, 0.0), 1.0) * ceiling / 2

    def allows(self, retry: int) -> bool:
        """Whether retry `retry` (0-based) is still within the bound."""
        return retry < self.attempts

    def floor_total(self) -> float:
        """The least time all retries of this policy wait together (every draw 0)."""
        return sum(self.ceiling(n) / 2 for n in range(self.attempts))
