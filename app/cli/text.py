"""How the commands read times and print times and tables: one way for every command.

- `parse_time`: an option's time, an ISO 8601 time (naive means UTC) or a duration
  back from now (`30m`, `2h`, `7d`); anything else is a usage error (exit 2) that
  names the option and both forms.
- `format_time`: a time as the tables show it, UTC to the second (`-` for none).
- `format_table`: columns two spaces apart, left-aligned unless named right-aligned
  (numbers), no trailing blanks, so the last column is ragged.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta

from app.cli.common import CliError
from app.instances import parse_duration


def parse_time(text: str, now: datetime, option: str) -> datetime:
    """`text` as a time: ISO 8601 (naive means UTC) or a duration back from `now` (30m, 2h, 7d)."""
    try:
        return now - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass  # not a duration: read it as a time
    except OverflowError:
        raise CliError(
            f"{option} {text!r}: reaches back before the year 1; give a shorter duration or an ISO 8601 time", 2
        ) from None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(
            f"{option} {text!r}: not an ISO 8601 time (2026-11-01T02:00Z) nor a duration back from now (90m, 2h, 7d)", 2
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def format_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], right_aligned: Collection[str] = ()) -> str:
    """One line per row under the header; the columns whose header is in `right_aligned` are
    right-aligned, the others left-aligned; trailing blanks are cut."""
    widths = [max([len(header[i]), *(len(row[i]) for row in rows)]) for i in range(len(header))]
    right = {i for i, name in enumerate(header) if name in right_aligned}
    lines = []
    for row in (header, *rows):
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
