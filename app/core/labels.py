"""Metric label values from a bounded set, whatever a record holds. Pure.

A label value is a time series: a value anyone can choose would mint series without
end. Where the set of values is known (plugins, answers, statuses), `one_of` maps
anything else to `other`. Where it is open but meant to be small (ignore rules:
the plugins name them from bounded sets, an instance's own routing rules add a few),
`LabelSet` keeps the first `limit` distinct values and counts the rest as `other`:
whatever a plugin or a sender does, a counter has at most `limit + 1` series. The
full value is in the delivery ledger.
"""

from __future__ import annotations

from collections.abc import Collection

OTHER = "other"


def one_of(value: str | None, allowed: Collection[str]) -> str:
    """`value` when it is one of `allowed`, else `other`: for labels taken from records."""
    return value if value is not None and value in allowed else OTHER


class LabelSet:
    """At most `limit` distinct values of one label; later new values become `other`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        if len(self.seen) < self.limit:
            self.seen.add(value)
            return value
        return OTHER

    @property
    def full(self) -> bool:
        return len(self.seen) >= self.limit
