"""`hookstream`: the entry point. Each command group lives in its own module and registers itself."""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from app.cli.common import CliError, expected_failure
from app.instances import ConfigError

# Command modules, each with `register(subparsers)`.
COMMAND_MODULES = (
    "app.cli.dev",
    "app.cli.ingress",
    "app.cli.worker",
    "app.cli.topics",
    "app.cli.db",
    "app.cli.schemas",
    "app.cli.send",
    "app.cli.sources",
    "app.cli.syncs",
    "app.cli.dlq",
    "app.cli.replay",
    "app.cli.lag",
    "app.cli.projections",
    "app.cli.trace",
    "app.cli.console",
)

DESCRIPTION = """\
hookstream: webhook deliveries and producer events into serialized, measured syncs on Kafka.

Everything is configured by HOOKSTREAM_* environment variables (see README.md);
plugin instances come from the TOML file named by HOOKSTREAM_INSTANCES_FILE.
`hookstream dev` runs the whole thing on an embedded broker and PostgreSQL.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hookstream", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an expected failure (a broker or database unreachable), print the traceback too",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except CliError as exc:
        print(f"hookstream: error: {exc}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        print(f"hookstream: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        failure = expected_failure(exc)
        if failure is None:
            raise  # a bug: its traceback is what a report needs
        if args.debug:
            traceback.print_exc()
        print(f"hookstream: error: {failure}", file=sys.stderr)
        return failure.code
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
