"""`hookstream trace ID`: the chain of a delivery, request or job across every topic."""

from __future__ import annotations

import argparse
import sys

import orjson

from app.cli.common import CliError, load_settings, on_read_model, run
from app.cli.syncs import batches_text
from app.cli.text import format_time
from app.core.trace import gaps_ms

DESCRIPTION = """\
The chain of one delivery, request or job across every topic: each copy of the
delivery (partition, offset, when received) -> what the dedup stage made of it
(routed, duplicate, ignored by a rule, dead-lettered) -> the control events it
produced -> how each request was answered (started, queued, coalesced into a
job, deduplicated by a job, rejected) -> the job's plan -> each batch's
completion -> sync.completed, with the time between hops.

ID is a delivery id, a delivery key (plugin/instance/deliveryId), a request id
or a job id. A job lists every request it served (a coalesced job has several)
and their deliveries; a deduplicated request leads to the job holding its key.

The trace reads the PostgreSQL read model first (the delivery ledger, the sync
projections: each row names the topic, partition and offset of its record) and
then Kafka at exactly those offsets, for the time each record was written: it
never scans a topic. --no-kafka leaves Kafka out.
"""

EPILOG = """\
exit status: 0 when the id was found, 1 when nothing matches (the message says
what was searched), 2 on a usage or configuration error.

examples:
  hookstream trace 72d3162e-cc78-11e3-81ab-4c9367dc0958
  hookstream trace github/main/72d3162e-cc78-11e3-81ab-4c9367dc0958 --json
  hookstream trace git:app:1234
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trace",
        help="the chain of a delivery, request or job across every topic",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("ident", metavar="ID", help="a delivery id or key, a request id or a job id")
    p.add_argument(
        "--json",
        action="store_true",
        help='print one object: {"id", "hops": [{"stage", "topic", "partition", "offset", "timestamp", '
        '"type", ...}], "job": {...} | null, ...}',
    )
    p.add_argument("--no-kafka", action="store_true", help="the read model only: no record is read back from Kafka")
    p.set_defaults(func=cmd_trace)


def cmd_trace(args: argparse.Namespace) -> int:
    from app.trace import SEARCHED, TraceError, trace

    settings = load_settings()
    ident = args.ident.strip()
    if not ident:
        raise CliError("ID is empty", 2)

    async def work(conn):
        try:
            return await trace(conn, settings, ident, kafka=not args.no_kafka)
        except TraceError as exc:
            raise CliError(str(exc)) from None

    found = run(on_read_model(settings, work))
    if found is None:
        print(
            f"hookstream: nothing matches {ident!r} in schema {settings.database_schema}: searched {SEARCHED}",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(orjson.dumps(found.as_json(), option=orjson.OPT_INDENT_2).decode())
        return 0
    print(format_trace(found))
    return 0


def format_trace(found) -> str:
    lines = [f"trace {found.ident}"]
    for d in found.deliveries:
        lines.append(
            f"  delivery {d.key}: {d.outcome}"
            + (f" ({d.rule})" if d.rule else "")
            + f", {d.copies} cop{'y' if d.copies == 1 else 'ies'}, first {format_time(d.first_received_at)}, "
            f"last {format_time(d.last_received_at)}" + (f", event {d.event}" if d.event else "")
        )
    lines.append("")
    for hop, gap in zip(found.hops, gaps_ms(found.hops), strict=False):
        where = f"{hop.topic}[{hop.partition}]@{hop.offset}"
        missing = "  (not in Kafka: deleted by retention?)" if hop.found is False else ""
        lines.append(
            f"  {'' if gap is None else f'{gap:+d}ms':>10}  {format_time(hop.at)}  {hop.stage:<9} {where}  "
            f"{hop.detail}{missing}"
        )
    if found.job is not None:
        j = found.job
        lines += [
            "",
            f"job {j.job_id} ({j.source_id}): {j.status}, {j.mode or '-'} by {j.trigger or '-'}, "
            f"requests {', '.join(j.request_ids) or '-'}",
            f"  files listed {j.files_listed}, processed {j.processed}, failed {j.failed}, deleted {j.deleted}, "
            f"skipped {j.skipped}, written {j.documents_written}; batches {batches_text(j)}",
        ]
        if j.error:
            lines.append(f"  error: {j.error}")
    others = [j.job_id for j in found.jobs if found.job is None or j.job_id != found.job.job_id]
    if others:
        lines.append(f"other jobs: {', '.join(others)}")
    return "\n".join(lines)
