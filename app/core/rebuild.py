"""What `hookstream projections rebuild` decides, pure: names, what is left to read, lag, differences.

A rebuild fills a *candidate* schema by replaying a projection's topics through
the live agents' own offset-fenced functions, then swaps the candidate's tables
in. Positions and fences are keyed by (topic, partition):

- a *position* is the next offset the rebuild reads (what it has consumed);
- a *fence* is the highest offset a side has applied (`applied_offsets`).

The invariant the swap relies on: before the tables change places, the candidate
has applied every record the live fences say the live tables hold
(`reads_to_catch_up` is empty), so no record the live agent applied is missing
from the tables that replace them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

TopicPartition = tuple[str, int]

MAX_IDENTIFIER = 63  # PostgreSQL truncates longer names: a truncated schema name would be another schema


def schema_names(live: str, at: datetime) -> tuple[str, str]:
    """(candidate, old) schema names for a run started at `at`: `<live>_rebuild_<ts>`, `<live>_old_<ts>`."""
    stamp = at.strftime("%Y%m%d%H%M%S")
    candidate, old = f"{live}_rebuild_{stamp}", f"{live}_old_{stamp}"
    if len(candidate) > MAX_IDENTIFIER:
        raise ValueError(
            f"schema name {candidate!r} is longer than PostgreSQL's {MAX_IDENTIFIER} characters: "
            f"use a shorter HOOKSTREAM_DATABASE_SCHEMA than {live!r}"
        )
    return candidate, old


def deleted_before_start(
    earliest: Mapping[TopicPartition, int], starts: Mapping[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """The earliest offset of each partition whose records from `starts` on are not all there any more
    (retention deleted them): the rows those records made cannot be rebuilt."""
    return {tp: earliest[tp] for tp, start in starts.items() if earliest.get(tp, 0) > start}


def reads_to_catch_up(
    positions: Mapping[TopicPartition, int],
    live_fences: Mapping[TopicPartition, int],
    ends: Mapping[TopicPartition, int],
) -> dict[TopicPartition, tuple[int, int]]:
    """[start, stop) per partition the candidate must still read to hold what the live fences say.

    A live fence past the partition's end (a topic deleted and made again while its
    fence rows stayed) cannot be read up to: it is read to the end, and the
    candidate's fence, which matches the topic, replaces it at the swap.
    """
    reads = {}
    for tp, fence in live_fences.items():
        stop = min(fence + 1, ends[tp]) if tp in ends else fence + 1
        start = positions.get(tp, 0)
        if stop > start:
            reads[tp] = (start, stop)
    return reads


def fences_past_the_end(
    live_fences: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]
) -> dict[TopicPartition, tuple[int, int]]:
    """(fence, end) of each live fence at or past its partition's end: the offsets it names do not exist."""
    return {tp: (fence, ends[tp]) for tp, fence in live_fences.items() if tp in ends and fence >= ends[tp]}


def live_behind(
    candidate_fences: Mapping[TopicPartition, int], live_fences: Mapping[TopicPartition, int]
) -> dict[TopicPartition, tuple[int, int]]:
    """(live fence, candidate fence) where the candidate applied a record the live agent has not yet: lag.

    Both sides apply the same records through the same function, so equal fences
    mean equal inputs; a candidate ahead means the live tables are missing that
    partition's newest records (the workers are behind, or stopped).
    """
    return {
        tp: (live_fences.get(tp, -1), fence)
        for tp, fence in candidate_fences.items()
        if fence > live_fences.get(tp, -1)
    }


# --- differences --------------------------------------------------------------------------------

LIVE = "live"
REBUILT = "rebuilt"


@dataclass(frozen=True)
class RowDiff:
    key: Any
    only_in: str | None  # LIVE | REBUILT | None when the row is on both sides and differs
    columns: tuple[tuple[str, Any, Any], ...] = ()  # (column, live value, rebuilt value)


@dataclass(frozen=True)
class TableDiff:
    table: str
    key: str
    live_rows: int
    rebuilt_rows: int
    only_live: int
    only_rebuilt: int
    differing: int
    shown: tuple[RowDiff, ...]

    @property
    def differs(self) -> bool:
        return bool(self.only_live or self.only_rebuilt or self.differing)


def row_diff(
    key: Any, live: Mapping[str, Any] | None, rebuilt: Mapping[str, Any] | None, columns: tuple[str, ...]
) -> RowDiff:
    """How one row differs between the sides, over `columns` (the key and ignored columns left out)."""
    if live is None:
        return RowDiff(key, REBUILT)
    if rebuilt is None:
        return RowDiff(key, LIVE)
    return RowDiff(key, None, tuple((c, live.get(c), rebuilt.get(c)) for c in columns if live.get(c) != rebuilt.get(c)))


def format_table_diff(diff: TableDiff, width: int = 60) -> list[str]:
    """A summary line, then one line per shown row."""
    head = f"{diff.table}: live {diff.live_rows} rows, rebuilt {diff.rebuilt_rows} rows"
    if not diff.differs:
        return [f"{head}: identical"]
    lines = [f"{head}: {diff.only_live} only live, {diff.only_rebuilt} only rebuilt, {diff.differing} differ"]
    for row in diff.shown:
        where = f"  {diff.key}={row.key}"
        if row.only_in == LIVE:
            lines.append(f"{where}: only in the live table (the topics do not make this row)")
        elif row.only_in == REBUILT:
            lines.append(f"{where}: only in the rebuilt table (missing from the live one)")
        else:
            changes = "; ".join(f"{c}: live {_short(a, width)} | rebuilt {_short(b, width)}" for c, a, b in row.columns)
            lines.append(f"{where}: {changes}")
    hidden = diff.only_live + diff.only_rebuilt + diff.differing - len(diff.shown)
    if hidden > 0:
        lines.append(f"  ... and {hidden} more (--show N prints more)")
    return lines


def _short(value: Any, width: int) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


# --- progress ----------------------------------------------------------------------------------


def format_progress(label: str, done: Mapping[str, int], totals: Mapping[str, int], rate: float) -> str:
    """`label: topic 1200/5000 (24%), topic 80/80 (100%); 950 records/s`."""
    parts = []
    for topic in sorted(totals):
        total, n = totals[topic], done.get(topic, 0)
        percent = 100 if total == 0 else min(100, 100 * n // total)
        parts.append(f"{topic} {n}/{total} ({percent}%)")
    return f"{label}: {', '.join(parts)}; {rate:,.0f} records/s"
