"""Where `hookstream replay` moves a consumer group's offsets, and what that does downstream. Pure.

Invariants of `plan`:
- every new offset lies in [earliest, end] of its partition, `end` being the
  true end (the offset the next record will get);
- a time past the end of a partition leaves it at its end, never at its start;
- `Move.reprocessed` counts from where the group would resume now (its
  committed offset, or the earliest when it has none: hookstream's workers
  reset to the earliest), so the table says what the move changes.
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ToEarliest:
    def describe(self) -> str:
        return "the earliest offset of each partition"


@dataclass(frozen=True)
class ToLatest:
    def describe(self) -> str:
        return "the end of each partition (skip everything not yet consumed)"


@dataclass(frozen=True)
class ToOffset:
    offset: int

    def describe(self) -> str:
        return f"offset {self.offset} in each partition"


@dataclass(frozen=True)
class ToDatetime:
    at: datetime

    def describe(self) -> str:
        return f"the first record at or after {self.at.isoformat()} in each partition"


@dataclass(frozen=True)
class ShiftBy:
    delta: int

    def describe(self) -> str:
        return f"{'forward' if self.delta >= 0 else 'back'} {abs(self.delta)} record(s) from the committed offset"


Target = ToEarliest | ToLatest | ToOffset | ToDatetime | ShiftBy


@dataclass(frozen=True)
class Position:
    """What the cluster says about one partition, for one group."""

    topic: str
    partition: int
    committed: int | None  # None: the group has no offset for this partition
    earliest: int
    end: int  # the true end: the offset the next record will get
    # For ToDatetime: the first offset at or after the time; None when the time is past the end.
    at_time: int | None = None

    @property
    def resume_at(self) -> int:
        """Where the group would start reading now."""
        if self.committed is None:
            return self.earliest
        return min(max(self.committed, self.earliest), self.end)


@dataclass(frozen=True)
class Move:
    topic: str
    partition: int
    current: int | None
    new: int
    earliest: int
    end: int
    resume_at: int
    note: str = ""

    @property
    def reprocessed(self) -> int:
        """Records read again (positive) or skipped for good (negative)."""
        return self.resume_at - self.new

    @property
    def changes(self) -> bool:
        return self.current != self.new


def clamp(offset: int, earliest: int, end: int) -> tuple[int, str]:
    if offset < earliest:
        return earliest, f"clamped to earliest ({offset})"
    if offset > end:
        return end, f"clamped to end ({offset})"
    return offset, ""


def move(position: Position, target: Target) -> Move:
    """The new offset of one partition for `target`."""
    p = position
    note = ""
    if isinstance(target, ToEarliest):
        new = p.earliest
    elif isinstance(target, ToLatest):
        new = p.end
    elif isinstance(target, ToOffset):
        new, note = clamp(target.offset, p.earliest, p.end)
    elif isinstance(target, ToDatetime):
        if p.at_time is None:
            new, note = p.end, "time past the last record: left at end"
        else:
            new, note = clamp(p.at_time, p.earliest, p.end)
    elif isinstance(target, ShiftBy):
        new, note = clamp(p.resume_at + target.delta, p.earliest, p.end)
    else:  # pragma: no cover - the CLI builds only the targets above
        raise TypeError(f"not a replay target: {target!r}")
    if p.committed is None:
        note = "; ".join(filter(None, ["no commit (starts at earliest)", note]))
    return Move(p.topic, p.partition, p.committed, new, p.earliest, p.end, p.resume_at, note)


def plan(positions: Iterable[Position], target: Target) -> list[Move]:
    return sorted((move(p, target) for p in positions), key=lambda m: (m.topic, m.partition))


# -- the table ------------------------------------------------------------------------------

WIDTH = 100  # prose is wrapped to this; tables are not

HEADER = ("TOPIC", "PARTITION", "CURRENT", "NEW", "EARLIEST", "END", "REPROCESS", "NOTE")


def _offset(value: int | None) -> str:
    return "-" if value is None else str(value)


def format_moves(moves: list[Move]) -> str:
    """One row per partition, a total row per topic; REPROCESS < 0 means records skipped."""
    rows: list[tuple[str, ...]] = []
    by_topic: dict[str, list[Move]] = defaultdict(list)
    for m in moves:
        by_topic[m.topic].append(m)
    for topic, group in by_topic.items():
        for m in group:
            rows.append(
                (
                    m.topic,
                    str(m.partition),
                    _offset(m.current),
                    str(m.new),
                    str(m.earliest),
                    str(m.end),
                    f"{m.reprocessed:+d}" if m.reprocessed else "0",
                    m.note,
                )
            )
        if len(group) > 1:
            total = sum(m.reprocessed for m in group)
            rows.append((f"  total {topic}", "", "", "", "", "", f"{total:+d}" if total else "0", ""))
    return format_table(HEADER, rows)


def format_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(len(header))]
    numeric = {i for i, h in enumerate(header) if h not in ("TOPIC", "NOTE", "GROUP")}
    out = []
    for row in (header, *rows):
        cells = [
            cell.rjust(w) if i in numeric else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def totals(moves: list[Move]) -> dict[str, int]:
    """Records reprocessed (or, negative, skipped) per topic."""
    result: dict[str, int] = defaultdict(int)
    for m in moves:
        result[m.topic] += m.reprocessed
    return dict(result)


# -- what a replay does downstream ------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    consumer: str
    on_replay: str


DEDUP_NOTE = (
    "a delivery read again at the offset its dedup entry was made at is "
    "routed again (the same message, as after a crash); a copy at another offset inside its window "
    "is dropped as a duplicate; one whose window ended is routed as new. Routed events reach "
    "orchestrate_syncs, which starts nothing for a request id it remembers (24 h) and answers a "
    "live idempotency key (5 min) with the job that holds it."
)

STAGES: dict[str, Stage] = {
    "hookstream.deliveries": Stage("deduplicate_deliveries", DEDUP_NOTE),
    "hookstream.sync.control": Stage(
        "orchestrate_syncs, project_sources, project_sync_progress",
        "all skip what they applied (each source's state keeps its partition's last applied offset; "
        "the projections keep their applied offsets in PostgreSQL): reading again changes nothing. "
        "Skipping control records loses them: requests never answered, batches never counted "
        "(their jobs end timed_out).",
    ),
    "hookstream.sync.plans": Stage(
        "plan_syncs",
        "each job is listed and cut into batches again (the source adapter is called again); batches "
        "are deterministic and the fold takes one plan per job: nothing is counted twice.",
    ),
    "hookstream.files.batches": Stage(
        "process_file_batches",
        "each batch is fetched and upserted again: documents converge on the same rows; its "
        "BatchCompleted counts once per batch index and is ignored for a finished job.",
    ),
    "hookstream.sync.events": Stage(
        "project_sync_jobs", "offset-fenced in PostgreSQL: records already applied are skipped."
    ),
    "hookstream.sync.completed": Stage(
        "project_sync_jobs", "offset-fenced in PostgreSQL: records already applied are skipped."
    ),
    "hookstream.dlq": Stage(
        "project_dead_letters",
        "offset-fenced in PostgreSQL: records already applied are skipped (attempts count failures, not reads).",
    ),
    "hookstream.deliveries.outcomes": Stage(
        "project_delivery_ledger",
        "offset-fenced in PostgreSQL: records already applied are skipped; "
        "a copy is one ledger row however often its outcome is read.",
    ),
    "hookstream.dedup.changelog": Stage(
        "(table recovery)", "a changelog is read from its start to rebuild a table; committed offsets are not used."
    ),
    "hookstream.sources.changelog": Stage(
        "(table recovery)", "a changelog is read from its start to rebuild a table; committed offsets are not used."
    ),
    "hookstream.sync.cancellations": Stage(
        "(every worker, without a group)", "read whole by each worker; the group's offsets are not used."
    ),
}

# The topics the worker group consumes through a committed offset (lag reports them even uncommitted).
CONSUMED_TOPICS = (
    "hookstream.deliveries",
    "hookstream.sync.control",
    "hookstream.sync.plans",
    "hookstream.files.batches",
    "hookstream.sync.events",
    "hookstream.sync.completed",
    "hookstream.dlq",
    "hookstream.deliveries.outcomes",
)

SEEN_STATE = (
    "State that treats replayed records as already seen (rewinding offsets does not roll it back):",
    "  - dedup window (RocksDB table `dedup`, per instance, 24 h by default): redeliveries dropped;",
    "  - the orchestrator's request memory (request id = delivery id, 24 h) and idempotency keys "
    "(source + mode + trigger + commit, HOOKSTREAM_IDEMPOTENCY_TTL_SECONDS, 300 s by default);",
    "  - each source's last applied control offset, and the projections' applied offsets in PostgreSQL;",
    "  - the fan-in of each job: a batch index counts once.",
    "To route deliveries again on purpose (e.g. after fixing a routing bug), do not move offsets: run",
    "  hookstream replay deliveries --from-datetime T [--to-datetime T] --execute",
    "which re-submits them with a fresh replay epoch that the dedup stage lets through once.",
)


def logical_name(topic: str, prefix: str) -> str | None:
    """The declared name of a cluster topic (`prefix` removed), or None when it is not one of ours."""
    if prefix:
        if not topic.startswith(prefix):
            return None
        topic = topic[len(prefix) :]
    return topic if topic in STAGES else None


def downstream(moves: list[Move], prefix: str) -> list[str]:
    """The closing explanation: per topic, who consumes it and what a replay does there."""
    lines = ["What this does downstream:"]
    again: dict[str, int] = defaultdict(int)
    skipped: dict[str, int] = defaultdict(int)
    for m in moves:
        again[m.topic] += max(m.reprocessed, 0)
        skipped[m.topic] += max(-m.reprocessed, 0)
    for topic in sorted(again):
        name = logical_name(topic, prefix)
        parts = [f"{again[topic]} record(s) read again"] if again[topic] or not skipped[topic] else []
        if skipped[topic]:
            parts.append(f"{skipped[topic]} record(s) SKIPPED, never processed")
        verb = ", ".join(parts)
        if name is None:
            lines.append(f"  {topic} ({verb}): not a hookstream topic; nothing is known about its consumers.")
            continue
        stage = STAGES[name]
        lines.append(f"  {topic} ({verb}) -> {stage.consumer}: {stage.on_replay}")
    lines.extend(SEEN_STATE)
    return [wrapped for line in lines for wrapped in wrap(line)]


def wrap(line: str, width: int = WIDTH) -> list[str]:
    """A long line as several, continued four columns deeper than it starts."""
    indent = line[: len(line) - len(line.lstrip())]
    return textwrap.wrap(line, width, initial_indent="", subsequent_indent=indent + "    ", break_on_hyphens=False) or [
        ""
    ]
