"""`hookstream projections list | rebuild | rollback`: rebuild a PostgreSQL projection from its topics.

The work is in `app.stream.rebuild` (Kafka and the steps), `app.store.rebuild`
(the SQL) and `app.core.rebuild` (the decisions); this module parses, prints
and sets the exit status.
"""

from __future__ import annotations

import argparse
import sys

from app.cli.common import CliError, load_settings, run
from app.settings import Settings
from app.stream.projection_registry import NAMES as PROJECTION_NAMES  # names only: no Faust import

EXIT_DIFFERENCES = 1
EXIT_FAILED = 3

PROJECTIONS_TABLE = """\
  sources     hookstream.sync.control -> sources
  sync_jobs   hookstream.sync.events + hookstream.sync.completed + hookstream.sync.control (job records)
              -> sync_jobs, sync_requests, sync_batches, sync_records
  dlq         hookstream.dlq -> dlq
  ledger      hookstream.deliveries.outcomes -> delivery_copies, deliveries"""

REBUILD_DESCRIPTION = f"""\
Rebuild PostgreSQL projections from their Kafka topics: replay each topic from
its first record into a fresh schema (<schema>_rebuild_<time>) through the same
code the workers run, check the replay reached the end of every partition, then
swap the rebuilt tables in, in one transaction. For rows that are wrong (a fixed
projection bug, rows edited by hand, a restored backup); with --dry-run --verify,
to check that the live rows are right without changing anything.

projections (--projection NAME, repeatable; default all of them, one after the other):
{PROJECTIONS_TABLE}

THE WORKERS MAY KEEP RUNNING. The rebuild reads with a consumer of its own (no
group: the workers' offsets are not touched). Records arriving meanwhile are
applied by the workers to the live tables as usual. For the swap the rebuild
takes a lock that pauses the projection agents of this schema, re-reads and
applies to the rebuilt tables what the agents applied since it started,
compares (--verify), swaps, and lets them go: usually well under a second
(longer with --verify on big tables). After the swap the agents continue on
the new tables from the fence the rebuild left (applied_offsets): a record the
rebuild applied is skipped, a newer one applied. Nothing is lost or applied twice.
If the lock is not granted within 5 s (a long transaction holds the tables) it
tries again, six times in all, then stops without swapping. Interrupting the
rebuild (Ctrl-C) before the swap changes nothing live.
"""

REBUILD_EPILOG = """\
how long: every record is applied in its own transaction, as the workers do it,
  four partitions at a time: measured 700 records/s on a busy 2-core machine, so
  10,000 syncs (20,000 records) take about 30 s. Control-topic records the sources
  projection does not use (most of them) are skipped at tens of thousands a second.
  A progress line every 5 s (stderr) gives each topic's progress and records/s;
  the summary says how long each projection took.

--verify: compares the rebuilt tables with the live ones at the same point (under
  the lock, both sides at the same offsets): per table the row counts, then the
  rows only on one side and the rows whose values differ, keyed by primary key,
  over every column (all of them come from the records: even sources.updated_at is
  the event's time, not the clock). Prints up to --show N rows per table. It first
  waits up to --verify-wait seconds for workers that are behind the rebuild; rows
  they have not applied yet (workers stopped, or slow) show as differences, and
  the output names those partitions. With a swap, the differences shown are what
  the swap replaced.

--dry-run: everything but the swap; the fresh schema is dropped at the end
  (--keep-rebuild keeps it for a look with psql).

rolling back: a swap keeps the tables it replaced in schema <schema>_old_<time>,
  with their fence rows (its applied_offsets), until you drop them.
  `hookstream projections list` shows them.
    hookstream projections rollback --from <schema>_old_<time>
        puts them back, the same way (workers may keep running): what the workers
        applied since the swap is applied to them first
    psql -c 'DROP SCHEMA <schema>_old_<time> CASCADE'
        when satisfied (or run the rebuild with --drop-old)

retention: the topics keep 14 days (dlq: 30). When a partition's first records
  were deleted, the rebuild refuses: rows made by deleted records (a source that
  connected a month ago) would be missing. --dry-run --verify --allow-truncated
  shows what would go; --allow-truncated rebuilds anyway.

at 3 a.m.:
  1. what differs?    hookstream projections rebuild --projection sync_jobs --dry-run --verify
  2. rebuild:         hookstream projections rebuild --projection sync_jobs --verify
  3. check:           hookstream syncs list
  4. undo, if worse:  hookstream projections rollback --from hookstream_old_20261101031500
  5. tidy up:         hookstream projections list, then DROP SCHEMA ... CASCADE

exit status: 0 done (with --verify: no difference), 1 --verify found differences
  (the swap still happened unless --dry-run), 2 usage or configuration,
  3 failed: nothing of the projection named in the error was swapped.
"""

ROLLBACK_DESCRIPTION = """\
Put back the tables a `projections rebuild` replaced, kept in <schema>_old_<time>.
Works like the rebuild with those tables as the rebuilt ones: it applies to them
what the workers applied since they were replaced (from their fence rows on),
then swaps them in, in one transaction; the workers may keep running. The tables
they replace are kept in a new <schema>_old_<time>, so a rollback can be rolled
back. Default: every projection whose tables the schema holds.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "projections",
        help="rebuild PostgreSQL projections from their topics (and roll back)",
        description=f"The PostgreSQL projections: {', '.join(PROJECTION_NAMES)}.",
    )
    psub = p.add_subparsers(dest="projections_command", metavar="ACTION", required=True)

    ls = psub.add_parser(
        "list",
        help="the projections, and old tables kept by rebuilds",
        description="Each projection's topics, agents and tables, then every "
        "<schema>_old_* and <schema>_rebuild_* schema left by a rebuild.",
    )
    ls.set_defaults(func=cmd_list)

    rb = psub.add_parser(
        "rebuild",
        help="replay a projection's topics into a fresh schema and swap it in",
        description=REBUILD_DESCRIPTION,
        epilog=REBUILD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _projection_argument(rb)
    rb.add_argument(
        "--verify", action="store_true", help="compare the rebuilt tables with the live ones; exit 1 when they differ"
    )
    rb.add_argument("--dry-run", action="store_true", help="rebuild and report (and --verify), swap nothing")
    rb.add_argument("--show", type=int, default=20, metavar="N", help="differing rows printed per table (default 20)")
    rb.add_argument(
        "--verify-wait",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds --verify waits for workers behind the rebuild (default 30)",
    )
    rb.add_argument(
        "--drop-old", action="store_true", help="drop the replaced tables after the swap (no rollback then)"
    )
    rb.add_argument("--keep-rebuild", action="store_true", help="with --dry-run: keep the fresh schema")
    rb.add_argument(
        "--allow-truncated", action="store_true", help="rebuild even when retention deleted a topic's first records"
    )
    rb.set_defaults(func=cmd_rebuild)

    rl = psub.add_parser(
        "rollback",
        help="put back the tables a rebuild replaced",
        description=ROLLBACK_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rl.add_argument("--from", dest="source", required=True, metavar="SCHEMA", help="the <schema>_old_<time> schema")
    _projection_argument(rl)
    rl.set_defaults(func=cmd_rollback)


def _projection_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--projection",
        action="append",
        choices=PROJECTION_NAMES,
        metavar="NAME",
        help=f"{', '.join(PROJECTION_NAMES)} (repeatable; default: all)",
    )


# -- commands ---------------------------------------------------------------------------------------


def cmd_rebuild(args: argparse.Namespace) -> int:
    from app.stream.rebuild import Options, RebuildError, rebuild

    settings = load_settings()
    if args.keep_rebuild and not args.dry_run:
        raise CliError("--keep-rebuild goes with --dry-run (a swap moves the rebuilt tables into the live schema)", 2)
    if args.drop_old and args.dry_run:
        raise CliError("--drop-old does nothing with --dry-run", 2)
    options = Options(
        swap=not args.dry_run,
        verify=args.verify,
        show=max(args.show, 0),
        verify_wait=max(args.verify_wait, 0.0),
        allow_truncated=args.allow_truncated,
        keep_candidate=args.keep_rebuild,
        drop_old=args.drop_old,
    )
    names = _unique(args.projection or PROJECTION_NAMES)
    try:
        results = run(rebuild(settings, names, options, _progress))
    except RebuildError as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    return _report(settings, results, options)


def cmd_rollback(args: argparse.Namespace) -> int:
    from app.stream.rebuild import Options, RebuildError, rollback

    settings = load_settings()
    options = Options(swap=True)
    try:
        results = run(
            rollback(settings, args.source, _unique(args.projection) if args.projection else None, options, _progress)
        )
    except RebuildError as exc:
        raise CliError(str(exc), EXIT_FAILED) from None
    return _report(settings, results, options, rolled_back_from=args.source)


def cmd_list(args: argparse.Namespace) -> int:
    import psycopg

    from app.store import rebuild as store
    from app.stream.projection_registry import projections

    settings = load_settings()
    for p in projections().values():
        topics = " + ".join(settings.topic(t) for t in p.topics)
        print(
            f"{p.name:<10} {topics} -> {', '.join(t.name for t in p.tables)}  (agents: {', '.join(p.consumer_names)})"
        )

    async def kept() -> list:
        async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
            return await store.leftovers(conn, settings.database_schema)

    try:
        found = run(kept())
    except psycopg.OperationalError as exc:
        raise CliError(f"cannot reach PostgreSQL at HOOKSTREAM_DATABASE_URL: {str(exc).strip()}") from None
    print()
    if not found:
        print(f"no old or rebuild schemas next to {settings.database_schema}")
        return 0
    print(f"kept next to {settings.database_schema} (drop with: DROP SCHEMA <name> CASCADE):")
    for name, comment, tables in found:
        print(f"  {name}: {', '.join(tables) or 'no tables'}" + (f"  -- {comment}" if comment else ""))
    return 0


# -- output ---------------------------------------------------------------------------------------


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _unique(names) -> list[str]:
    return list(dict.fromkeys(names))


def _report(settings: Settings, results: list, options, rolled_back_from: str | None = None) -> int:
    from app.core.rebuild import format_table_diff

    differs = False
    for r in results:
        start = "from its fences" if rolled_back_from else "from the start"
        rate = f", {r.replayed / r.seconds:,.0f} records/s" if r.seconds >= 1 else ""
        print(
            f"{r.projection}: read {r.replayed} records {start} to the end captured at the start "
            f"({len(r.ends)} partitions) in {r.seconds:.1f} s{rate}, "
            f"then {r.caught_up} more the live agents applied meanwhile"
        )
        outcomes = ", ".join(f"{n} {k}" for k, n in sorted(r.outcomes.items()))
        print(f"  records: {outcomes or 'none'}")
        print(f"  rows: {', '.join(f'{t} {n}' for t, n in r.rows.items())}")
        for (topic, partition), (fence, end) in sorted(r.fences_past_end.items()):
            print(
                f"  note: the live fence of {topic}[{partition}] is at {fence}, past the partition's end {end} "
                "(topic made again?): the rebuilt fence replaces it"
            )
        if r.live_behind:
            where = ", ".join(f"{t}[{p}] at {live} of {mine}" for (t, p), (live, mine) in sorted(r.live_behind.items()))
            print(
                f"  note: the live agents had not yet applied records the rebuild did ({where}): "
                "workers stopped or behind" + ("; differences below may be just that" if options.verify else "")
            )
        for diff in r.diffs:
            differs = differs or diff.differs
            first, *rows = format_table_diff(diff)
            print(f"  verify {first}")
            for line in rows:
                print(f"      {line}")
        if r.swapped:
            what = f"the tables from {rolled_back_from}" if rolled_back_from else "the rebuilt tables"
            kept = (
                f"the replaced ones are kept in schema {r.old_schema} "
                f"(`hookstream projections rollback --from {r.old_schema}` puts them back)"
                if r.old_schema
                else "the replaced ones were dropped (--drop-old)"
            )
            print(f"  swapped: {what} are live in {settings.database_schema}; {kept}")
        else:
            kept = f"kept in schema {r.candidate}" if options.keep_candidate else "dropped"
            print(f"  dry run: nothing swapped; the rebuilt tables were {kept}")
    if options.verify:
        print("verify: differences found" if differs else "verify: the rebuilt tables equal the live ones")
    return EXIT_DIFFERENCES if differs else 0
