"""`hookstream db migrate | prune`: apply the SQL migrations in order, once; delete old history."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta

from app.cli.common import CliError, load_settings, on_read_model, run
from app.instances import parse_duration
from app.settings import Settings
from app.store.db import migrate

PRUNE_EPILOG = """\
What goes, when older than the cutoff: finished jobs (except each source's
latest planned one), the requests they answered, dead letters retired by an
accepted redrive, and the delivery ledger. What stays, whatever its age: open
jobs (queued, running) and their requests, open dead letters, every source's
live fences (its kept plan, its document write fence), the projections'
offsets, sources and documents. The worker prunes the same way every
HOOKSTREAM_PRUNE_INTERVAL_SECONDS.

examples:
  hookstream db prune --dry-run
      what would go with the default age (HOOKSTREAM_RETENTION_DAYS)
  hookstream db prune --older-than 7d
      delete history older than a week
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="database schema and retention")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    m = dsub.add_parser(
        "migrate",
        help="apply pending migrations",
        description="Apply pending SQL migrations to HOOKSTREAM_DATABASE_SCHEMA in order; each is "
        "recorded in schema_migrations and never applied twice. Safe to run from several processes.",
    )
    m.set_defaults(func=cmd_migrate)
    pr = dsub.add_parser(
        "prune",
        help="delete history past its age (jobs, requests, retired dead letters, the ledger)",
        description="Delete history older than --older-than (HOOKSTREAM_RETENTION_DAYS by default) from "
        "HOOKSTREAM_DATABASE_SCHEMA, in one transaction, and print the rows deleted per table.",
        epilog=PRUNE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pr.add_argument(
        "--older-than",
        metavar="DURATION",
        help="the age past which history goes: 30d, 12h, 90m (default: HOOKSTREAM_RETENTION_DAYS days)",
    )
    pr.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
    pr.set_defaults(func=cmd_prune)


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = load_settings()
    applied = run(migrate(settings))
    for name in applied:
        print(f"applied {name}")
    print(f"schema {settings.database_schema} is up to date")
    return 0


def cutoff_of(older_than: str | None, retention_days: float, now: datetime) -> datetime:
    """The time before which history goes: `now` minus `--older-than`, or minus the retention days."""
    if older_than is None:
        return now - timedelta(days=retention_days)
    try:
        return now - timedelta(seconds=parse_duration(older_than))
    except (ValueError, OverflowError) as exc:
        raise CliError(f"--older-than {older_than!r}: {exc}", 2) from None


async def prune(settings: Settings, older_than: datetime, dry_run: bool) -> dict[str, int]:
    from app.store import retention

    async def work(conn) -> dict[str, int]:
        async with conn.transaction(force_rollback=dry_run):
            return await retention.prune(conn, settings.database_schema, older_than)

    return await on_read_model(settings, work)


def cmd_prune(args: argparse.Namespace) -> int:
    from app.events import utcnow

    settings = load_settings()
    cutoff = cutoff_of(args.older_than, settings.retention_days, utcnow())
    counts = run(prune(settings, cutoff, args.dry_run))
    verb = "would delete" if args.dry_run else "deleted"
    for table, n in counts.items():
        print(f"{verb} {n:>8}  {table}")
    total = sum(counts.values())
    print(
        f"{'dry run: ' if args.dry_run else ''}{total} rows older than {cutoff.isoformat(timespec='seconds')} "
        f"{verb} from schema {settings.database_schema}"
    )
    return 0
