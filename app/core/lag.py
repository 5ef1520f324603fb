"""Consumer lag per partition and per topic, from committed and true end offsets. Pure.

Lag is what the group has still to read: `end - resume_at`, where `resume_at`
is the committed offset, or the earliest when the group has none (hookstream's
workers reset to the earliest), so an uncommitted partition's backlog counts.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from app.core.replay import Position


def lag(position: Position) -> int:
    return max(position.end - position.resume_at, 0)


def by_topic(positions: list[Position]) -> dict[str, dict[str, int]]:
    """Per topic: partitions, summed end offsets, summed lag."""
    result: dict[str, dict[str, int]] = defaultdict(lambda: {"partitions": 0, "end": 0, "lag": 0})
    for p in positions:
        entry = result[p.topic]
        entry["partitions"] += 1
        entry["end"] += p.end
        entry["lag"] += lag(p)
    return dict(result)


HEADER = ("GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG")
NUMERIC = ("PARTITION", "COMMITTED", "END", "LAG")


def lag_rows(group: str, positions: list[Position]) -> list[tuple[str, ...]]:
    """The rows of the lag table under `HEADER` (`NUMERIC` columns right-aligned): one per
    partition, then a total row per topic and one for the group."""
    ordered = sorted(positions, key=lambda p: (p.topic, p.partition))
    rows: list[tuple[str, ...]] = [
        (group, p.topic, str(p.partition), "-" if p.committed is None else str(p.committed), str(p.end), str(lag(p)))
        for p in ordered
    ]
    topics = by_topic(ordered)
    for topic, entry in topics.items():
        rows.append((group, f"total {topic}", "", "", str(entry["end"]), str(entry["lag"])))
    if len(topics) > 1:
        rows.append((group, "total", "", "", "", str(sum(e["lag"] for e in topics.values()))))
    return rows


def as_json(group: str, state: str, members: int, positions: list[Position]) -> dict[str, Any]:
    ordered = sorted(positions, key=lambda p: (p.topic, p.partition))
    topics = by_topic(ordered)
    return {
        "group": group,
        "state": state,
        "members": members,
        "partitions": [
            {
                "topic": p.topic,
                "partition": p.partition,
                "committed": p.committed,
                "earliest": p.earliest,
                "end": p.end,
                "lag": lag(p),
            }
            for p in ordered
        ],
        "topics": topics,
        "lag": sum(e["lag"] for e in topics.values()),
    }
