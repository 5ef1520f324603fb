"""The --help texts name what the code has: every projection, every dead-letter stage, every topic read."""

from __future__ import annotations

import argparse

from app.cli.main import build_parser
from app.stream.projection_registry import NAMES


def help_of(*path: str) -> str:
    parser = build_parser()
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return " ".join(parser.format_help().split())


def test_projections_help_names_every_projection():
    assert all(name in help_of("projections") for name in NAMES)


def test_dlq_stage_help_names_the_dedup_stages():
    for path in (("dlq", "list"), ("dlq", "redrive")):
        text = help_of(*path)
        assert "decode, dedup, validate, route, fold, project, plan, batch" in text, path
    assert "back to its own topic" in help_of("dlq", "redrive")


def test_syncs_help_names_the_control_topic():
    assert "hookstream.sync.control" in help_of("syncs")
