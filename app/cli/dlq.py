"""`hookstream dlq list | show | redrive`: inspect dead letters and republish them after a fix.

The rows are the `dlq` projection (`project_dead_letters`). A redrive
republishes the original delivery to `hookstream.deliveries` with the same key,
marked `redrive_of`; a record of any other topic (a control record, a plan
request, a file batch, ...) is republished byte-exact to its topic with the
same key and the `hookstream-redrive-of` header. The row is retired only when
the stage has applied the redrive and its `RedriveAccepted` was projected,
never by this command.
"""

from __future__ import annotations

import argparse
import base64
import sys
from typing import Any

import orjson

from app.cli.common import CliError, load_settings, on_read_model, one_line, positive_int, run
from app.cli.text import format_table, format_time, parse_time
from app.core import dlq
from app.events import utcnow
from app.redrive import Redrive, not_redrivable_reason, publish, redrive, start_publisher
from app.redrive import redrive_of as redrive_of  # re-exported: the decision lives in app.redrive
from app.settings import Settings

PREVIEW_BYTES = 1024
ERROR_WIDTH = 60
STATUSES = ("open", "retired", "all")
# The stages a dead letter names: the dedup stage's (decode, dedup, validate, route: the record is a
# delivery), then the control and sync stages' (validate, fold, project, plan, batch: a record of another topic).
STAGES = ("decode", "dedup", "validate", "route", "fold", "project", "plan", "batch")

LIST_EPILOG = """\
examples:
  hookstream dlq list
      open dead letters, latest failure first
  hookstream dlq list --since 2h --stage route
      the ones that failed in the routing stage in the last two hours
  hookstream dlq list --status all --json
      every row, as a JSON array
"""

REDRIVE_EPILOG = """\
A redrive republishes the original delivery (same key, byte-exact body and
headers) marked as a redrive, so the dedup window does not drop it; a record
of another topic (a control record that failed validate, or stages fold,
project, plan, batch) goes back to that topic byte-exact with its key, marked
by a record header. The row stays
open until the stage has applied the redrive; a redrive that fails again
comes back as the same dead letter with one more attempt. A redriven plan or
batch of a job that has finished writes what it can (write fences keep newer
documents), and the source's next sync converges anyway. Dead letters whose
record did not decode, or was too large to keep whole, cannot be redriven.

examples:
  hookstream dlq redrive 3f2a91c0e6b1
      one dead letter (a unique id prefix is enough)
  hookstream dlq redrive --all --dry-run
      what would be republished, without publishing
  hookstream dlq redrive --all --plugin github
      every open github dead letter
  hookstream dlq redrive --all --stage batch
      every file batch that failed (after the source or PostgreSQL is back)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dlq",
        help="inspect and redrive dead letters",
        description="Dead letters: records an agent could not apply (deliveries it could not decode or "
        "route, control records it could not fold or project, plans and file batches that still failed "
        "after their retries), projected into PostgreSQL from hookstream.dlq.",
    )
    dsub = p.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)

    ls = dsub.add_parser(
        "list",
        help="list dead letters (open ones by default)",
        description="List dead letters, latest failure first, as a table (or JSON with --json).",
        epilog=LIST_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ls.add_argument("--status", choices=STATUSES, default="open", help="open (default), retired, or all")
    ls.add_argument("--stage", help=f"only failures in this stage ({', '.join(STAGES)})")
    ls.add_argument("--plugin", help="only this plugin (github, generic-hmac, ...; 'unknown' for undecodable records)")
    ls.add_argument(
        "--since",
        metavar="ISO|DURATION",
        help="only rows that last failed at or after this time: an ISO 8601 time "
        "(UTC unless it has an offset) or a duration back from now (30m, 2h, 7d)",
    )
    ls.add_argument("--limit", type=positive_int, default=100, metavar="N", help="at most N rows (default 100)")
    ls.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    ls.set_defaults(func=cmd_list)

    sh = dsub.add_parser(
        "show",
        help="show one dead letter in full",
        description="Show one dead letter: status, attempts, the latest stage and error in full, where it "
        "was consumed, and the original delivery's headers with a preview of its body.",
    )
    sh.add_argument("id", metavar="ID", help="the dead letter id (a unique prefix of at least 6 characters is enough)")
    sh.add_argument("--json", action="store_true", help="print the row as JSON, the delivery in its wire form")
    sh.set_defaults(func=cmd_show)

    rd = dsub.add_parser(
        "redrive",
        help="republish dead-lettered records after a fix",
        description="Republish the record of each named open dead letter (or of every open one with\n"
        "--all) to the topic it was consumed from: a delivery to hookstream.deliveries, any other\n"
        "record (control, plan, batch) back to its own topic.",
        epilog=REDRIVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rd.add_argument("ids", nargs="*", metavar="ID", help="dead letter ids (or unique prefixes)")
    rd.add_argument("--all", action="store_true", help="every open dead letter (narrow with --plugin / --stage)")
    rd.add_argument("--plugin", help="with --all: only this plugin")
    rd.add_argument("--stage", help=f"with --all: only failures in this stage ({', '.join(STAGES)})")
    rd.add_argument("--dry-run", action="store_true", help="list what would be republished, publish nothing")
    rd.set_defaults(func=cmd_redrive)


def body_preview(body: bytes, limit: int = PREVIEW_BYTES) -> str:
    """The first `limit` bytes as text (undecodable bytes shown as U+FFFD), with a note when cut."""
    shown = body[:limit].decode("utf-8", "replace")
    if len(body) > limit:
        shown += f"\n… ({len(body) - limit} more bytes)"
    return shown


# --- database -------------------------------------------------------------------------------


async def _find(conn, settings: Settings, ident: str) -> dlq.DeadLetterRow:
    """The row with this id, or the one row whose id starts with it (at least 6 characters)."""
    from app.store import dead_letters

    ident = ident.strip()
    found = await dead_letters.by_id(conn, ident)
    rows = [found] if found is not None else []
    if not rows and len(ident) >= 6:
        rows = await dead_letters.by_prefix(conn, ident, limit=6)
    if not rows:
        raise CliError(
            f"no dead letter {ident!r} in schema {settings.database_schema} (see `hookstream dlq list --status all`)"
        )
    if len(rows) > 1:
        ids = ", ".join(r.dead_letter_id for r in rows[:5])
        raise CliError(
            f"{ident!r} matches several dead letters ({ids}{', …' if len(rows) > 5 else ''}): give more of the id"
        )
    return rows[0]


# --- list -------------------------------------------------------------------------------------


def _summary(row: dlq.DeadLetterRow) -> dict[str, Any]:
    return {
        "dead_letter_id": row.dead_letter_id,
        "status": row.status,
        "attempts": row.attempts,
        "stage": row.stage,
        "plugin": row.plugin,
        "instance": row.instance,
        "key": row.key,
        "error": row.error,
        "first_failed_at": row.first_failed_at.isoformat(),
        "last_failed_at": row.last_failed_at.isoformat(),
        "retired_at": row.retired_at.isoformat() if row.retired_at else None,
        "redrivable": row.redrivable,
    }


def origin(row: dlq.DeadLetterRow) -> str:
    """Where a dead letter came from: plugin/instance for a delivery, else the topic it was consumed from."""
    if row.of_delivery:
        return f"{row.plugin}/{row.instance}"
    return one_line(row.source_topic or "-", 40)


def dead_letter_table(rows: list[dlq.DeadLetterRow]) -> str:
    header = ("ID", "STATUS", "ATTEMPTS", "STAGE", "FROM", "LAST FAILED", "ERROR")
    lines = [
        (
            r.dead_letter_id,
            r.status,
            str(r.attempts),
            r.stage,
            origin(r),
            format_time(r.last_failed_at),
            one_line(r.error, ERROR_WIDTH),
        )
        for r in rows
    ]
    return format_table(header, lines)


def cmd_list(args: argparse.Namespace) -> int:
    from app.store import dead_letters

    settings = load_settings()
    since = parse_time(args.since, utcnow(), "--since") if args.since else None
    status = None if args.status == "all" else args.status
    rows = run(
        on_read_model(
            settings,
            lambda conn: dead_letters.listing(
                conn, status, args.stage or None, args.plugin or None, since, limit=args.limit
            ),
        )
    )
    if args.json:
        print(orjson.dumps([_summary(r) for r in rows], option=orjson.OPT_INDENT_2).decode())
        return 0
    if not rows:
        print(f"no {'' if args.status == 'all' else args.status + ' '}dead letters match")
        return 0
    print(dead_letter_table(rows))
    if len(rows) == args.limit:
        print(f"(first {args.limit} shown: raise --limit or narrow with --since/--stage/--plugin)", file=sys.stderr)
    return 0


# --- show -------------------------------------------------------------------------------------


def format_row(row: dlq.DeadLetterRow) -> str:
    where = f"{row.source_topic}[{row.source_partition}]@{row.source_offset}" if row.source_topic is not None else "-"
    lines = [
        f"dead letter    {row.dead_letter_id}",
        f"status         {row.status}" + (f" (retired {format_time(row.retired_at)})" if row.retired_at else ""),
        f"attempts       {row.attempts}",
        f"stage          {row.stage}",
        f"plugin         {row.plugin}",
        f"instance       {row.instance}",
        f"key            {row.key}",
        f"first failed   {format_time(row.first_failed_at)}",
        f"last failed    {format_time(row.last_failed_at)}",
        f"consumed from  {where}",
        "error",
        *("  " + line for line in row.error.splitlines() or [""]),
    ]
    if row.original is not None:
        d = row.original
        lines += [
            "original delivery",
            f"  delivery id  {d.delivery_id}",
            f"  route        {d.route or '-'}",
            f"  received at  {format_time(d.received_at)}",
        ]
        if d.redrive_of:
            lines.append(f"  redrive of   {d.redrive_of}")
        if d.replay_epoch:
            lines.append(f"  replay epoch {d.replay_epoch}")
        lines.append("  headers" + ("" if d.headers else "      (none)"))
        lines += [f"    {name}: {value}" for name, value in sorted(d.headers.items())]
        lines.append(f"  body ({len(d.body)} bytes)")
        lines += ["    " + line for line in body_preview(d.body).splitlines()]
    else:
        raw = row.raw or b""
        if row.truncated:
            what = "  its first bytes only (the record was too large to keep whole), so it cannot be redriven:"
        elif row.redrivable:
            what = f"  the record as consumed; a redrive republishes it to {row.source_topic}:"
        else:
            what = "  none: the record did not decode, so it cannot be redriven; its raw value:"
        lines += [
            "original delivery" if row.of_delivery else "original record",
            what,
            f"  value ({len(raw)} bytes)",
            *("    " + line for line in body_preview(raw).splitlines()),
        ]
    return "\n".join(lines)


def cmd_show(args: argparse.Namespace) -> int:
    settings = load_settings()
    row = run(on_read_model(settings, lambda conn: _find(conn, settings, args.id)))
    if args.json:
        values = dlq.to_columns(row)
        values["raw"] = None if row.raw is None else base64.b64encode(row.raw).decode("ascii")
        values["redrivable"] = row.redrivable
        print(orjson.dumps(values, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(format_row(row))
    return 0


# --- redrive ----------------------------------------------------------------------------------


async def _publish(settings: Settings, redrives: list[Redrive]) -> list[tuple[Redrive, Any]]:
    from aiokafka.errors import KafkaError

    from app.ingress.publisher import PublishUnavailable
    from app.topology import MissingTopics

    try:
        publisher = await start_publisher(settings, redrives, "hookstream-dlq-redrive")
    except MissingTopics as exc:
        raise CliError(str(exc), 2) from None
    except (PublishUnavailable, KafkaError, OSError) as exc:
        raise CliError(f"cannot reach the Kafka broker at {settings.kafka_bootstrap_servers}: {exc}") from None
    published: list[tuple[Redrive, Any]] = []
    try:
        for redrive in redrives:
            try:
                metadata = await publish(publisher, settings, redrive)
            except PublishUnavailable as exc:
                done = ", ".join(r.row.dead_letter_id for r, _ in published) or "none"
                raise CliError(
                    f"redrive of {redrive.row.dead_letter_id} not published: {exc} (published before it: {done})"
                ) from None
            published.append((redrive, metadata))
            print(
                f"redriven  {redrive.row.dead_letter_id}  {redrive.key}  -> "
                f"{metadata.topic}[{metadata.partition}]@{metadata.offset}"
            )
    finally:
        await publisher.stop()
    return published


def cmd_redrive(args: argparse.Namespace) -> int:
    if args.all == bool(args.ids):
        raise CliError("name the dead letters to redrive (ID …) or pass --all, not both", 2)
    if (args.plugin or args.stage) and not args.all:
        raise CliError("--plugin and --stage narrow --all; with IDs, name only the ones you mean", 2)
    settings = load_settings()

    async def select(conn) -> tuple[list[dlq.DeadLetterRow], list[tuple[dlq.DeadLetterRow, str]]]:
        from app.store import dead_letters

        if args.all:
            rows = await dead_letters.listing(conn, "open", args.stage or None, args.plugin or None, oldest_first=True)
        else:
            # Every id must exist before anything is published.
            rows = []
            for ident in dict.fromkeys(args.ids):
                row = await _find(conn, settings, ident)
                if row.dead_letter_id not in {r.dead_letter_id for r in rows}:
                    rows.append(row)
        ready = [r for r in rows if not_redrivable_reason(r) is None]
        refused = [(r, reason) for r in rows if (reason := not_redrivable_reason(r)) is not None]
        return ready, refused

    ready, refused = run(on_read_model(settings, select))
    for row, reason in refused:
        print(f"not redriven  {row.dead_letter_id}  {row.key}: {reason}", file=sys.stderr)
    if not ready:
        print("nothing to redrive" + ("" if refused else ": no open dead letters match"))
        return 1 if refused and not args.all else 0
    now = utcnow()
    redrives = [redrive(row, now) for row in ready]
    if args.dry_run:
        for r in redrives:
            where = r.topic(settings)
            print(
                f"would redrive  {r.row.dead_letter_id}  {r.key}  -> {where}  (attempts {r.row.attempts}, "
                f"stage {r.row.stage}: {one_line(r.row.error, ERROR_WIDTH)})"
            )
        print(f"dry run: {len(redrives)} records would be republished")
    else:
        run(_publish(settings, redrives))
        print(
            f"{len(redrives)} redriven; each row is retired once its stage has applied the redrive "
            "(`hookstream dlq show ID`), or stays open with one more attempt if it fails again"
        )
    return 1 if refused and not args.all else 0
