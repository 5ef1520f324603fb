"""The commands' one way of printing tables and times (app/cli/text.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.cli.common import CliError
from app.cli.text import format_table, format_time, parse_time

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def test_numbers_align_right_and_a_table_without_rows_is_its_header():
    assert format_table(("NAME", "N"), [("a", "7"), ("bb", "120")], right_aligned=("N",)).splitlines() == [
        "NAME    N",
        "a       7",
        "bb    120",
    ]
    assert format_table(("NAME", "N"), []) == "NAME  N"


def test_times_print_in_utc_to_the_second():
    assert format_time(datetime(2026, 11, 1, 14, 0, 5, 999, tzinfo=timezone(timedelta(hours=2)))) == (
        "2026-11-01 12:00:05Z"
    )
    assert format_time(None) == "-"


def test_an_unreadable_time_names_its_option_and_both_forms():
    with pytest.raises(CliError) as exc:
        parse_time("soon", NOW, "--to-datetime")
    assert exc.value.code == 2 and "--to-datetime 'soon'" in str(exc.value) and "90m" in str(exc.value)
    with pytest.raises(CliError, match="before the year 1"):
        parse_time("9999999d", NOW, "--since")
