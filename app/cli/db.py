"""`hookstream db migrate`: apply the SQL migrations in app/store/migrations, in order, once."""

from __future__ import annotations

import argparse

from app.cli.common import load_settings, run
from app.store.db import migrate


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="database schema")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    m = dsub.add_parser(
        "migrate",
        help="apply pending migrations",
        description="Apply pending SQL migrations to HOOKSTREAM_DATABASE_SCHEMA in order; each is "
        "recorded in schema_migrations and never applied twice. Safe to run from several processes.",
    )
    m.set_defaults(func=cmd_migrate)


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = load_settings()
    applied = run(migrate(settings))
    for name in applied:
        print(f"applied {name}")
    print(f"schema {settings.database_schema} is up to date")
    return 0
