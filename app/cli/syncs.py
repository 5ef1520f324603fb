"""`hookstream syncs list | show` and `hookstream sync request`: see sync jobs, ask for one.

`syncs` reads the `sync_jobs` and `sync_requests` projections (what the
worker's `project_sync_jobs` made of the lifecycle events and completions).
`sync request` sends a `SyncRequested` with a fresh request id to
`hookstream.sync.control` (Kafka by default, or the ingress's `POST /events`)
and prints the id: `hookstream syncs show REQUEST_ID` then tells how it was
answered and how its job went.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

import orjson
from pydantic import ValidationError

from app.cli.common import CliError, load_settings, on_read_model, one_line, positive_int, run
from app.cli.sources import (
    add_transport_arguments,
    describe_sent,
    first_error,
    send_producer_event,
)
from app.cli.text import format_table, format_time
from app.core import read_model
from app.events import SyncRequested, utcnow
from app.events.counts import COUNT_FIELDS

ACTIVE = "active"  # queued or running
STATUS_CHOICES = (*read_model.JOB_STATUSES, ACTIVE)
ERROR_WIDTH = 50


LIST_EPILOG = """\
examples:
  hookstream syncs list
      the latest 20 jobs of every source
  hookstream syncs list --source git:app --status failed --limit 100
      one source's failed jobs
  hookstream syncs list --status active --json
      jobs queued or running, as JSON
"""

REQUEST_EPILOG = """\
The request id is printed on stdout (details on stderr), so a script can keep it:
  id=$(hookstream sync request git:app --full) && hookstream syncs show "$id"

A request is answered by the worker: started, queued behind the running job,
coalesced into the queued job, deduplicated (the same source, mode and trigger
inside the idempotency TTL: answered by the job holding the key), or rejected
(an unknown or disconnected source), or ignored (a push to a branch the source
does not track). A job whose documents were at the head already completes as
"already synced" (listing: unchanged) and writes nothing.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "syncs",
        help="list and show sync jobs",
        description="Sync jobs as projected into PostgreSQL from hookstream.sync.events, hookstream.sync.completed "
        "and hookstream.sync.control (the job and request records on it).",
    )
    ssub = p.add_subparsers(dest="syncs_command", metavar="ACTION", required=True)

    ls = ssub.add_parser(
        "list",
        help="list sync jobs, latest first",
        description="List sync jobs, latest first (by start, else queue time), as a table or JSON.",
        epilog=LIST_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ls.add_argument("--source", metavar="SOURCE", help="only this source's jobs")
    ls.add_argument(
        "--status",
        choices=STATUS_CHOICES,
        metavar="STATUS",
        help=f"only jobs in this status: {', '.join(STATUS_CHOICES)} ({ACTIVE}: queued or running)",
    )
    ls.add_argument("--limit", type=positive_int, default=20, metavar="N", help="at most N jobs (default 20)")
    ls.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    ls.set_defaults(func=cmd_list)

    sh = ssub.add_parser(
        "show",
        help="show one sync job in full (by job id or request id)",
        description="Show every field of a sync job: status, mode, trigger, the requests it served, times, "
        "duration, counts and error. Given a request id, show how the request was answered and its job.",
    )
    sh.add_argument("ident", metavar="JOB", help="a job id (see `hookstream syncs list`) or a request id")
    sh.add_argument("--json", action="store_true", help="print the job (and the request's answer) as JSON")
    sh.set_defaults(func=cmd_show)

    r = sub.add_parser(
        "sync",
        help="request a sync of a source",
        description="Ask the worker for a sync; `hookstream syncs` shows how it went.",
    )
    rsub = r.add_subparsers(dest="sync_command", metavar="ACTION", required=True)
    rq = rsub.add_parser(
        "request",
        help="request a sync of a source (prints the request id)",
        description="Send a SyncRequested for SOURCE with a fresh request id. A request asks the\n"
        "worker to look again: it writes what brings the source's documents to the head\n"
        "of the source's tracked branch (the difference from the commit they were last\n"
        "written to completely, or every file when that is unknown, after a failed job or a\n"
        "force push). --full lists and writes every file whatever the documents hold.\n"
        "A repeat of the same request (same source, mode and trigger) within the\n"
        "idempotency TTL (HOOKSTREAM_IDEMPOTENCY_TTL_SECONDS, 5 minutes) is answered by the\n"
        "job that holds its key and starts nothing; --force bypasses that key.",
        epilog=REQUEST_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rq.add_argument("source_id", metavar="SOURCE", help="the source id (see `hookstream sources list`)")
    rq.add_argument("--full", action="store_true", help="list and sync every file, not only the changes")
    rq.add_argument(
        "--force",
        action="store_true",
        help="start a job even when a live idempotency key holds this request (a repeated manual sync)",
    )
    rq.add_argument("--paths", nargs="+", default=[], metavar="P", help="incremental: the paths that changed (hints)")
    rq.add_argument("--before", metavar="COMMIT", help="incremental: the commit the sender saw before (informational)")
    rq.add_argument(
        "--after",
        metavar="COMMIT",
        help="a commit the sync must reach at least (a lower bound; the target is always the branch head)",
    )
    rq.add_argument(
        "--trigger", default="manual", help="what asked for it (default: manual); part of the idempotency key"
    )
    rq.add_argument("--request-id", help="the request id (default: a fresh one); sending it again is a duplicate")
    add_transport_arguments(rq)
    rq.set_defaults(func=cmd_request)


# --- formatting --------------------------------------------------------------------------------


def format_duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def job_summary(job: read_model.SyncJobRow) -> dict[str, Any]:
    return read_model.job_to_json(job)


def jobs_table(jobs: list[read_model.SyncJobRow]) -> str:
    header = (
        "JOB",
        "SOURCE",
        "STATUS",
        "MODE",
        "TRIGGER",
        "STARTED",
        "DURATION",
        "BATCHES",
        "LISTED",
        "PROCESSED",
        "WRITTEN",
        "FAILED",
        "REQUESTS",
        "ERROR",
    )
    lines = [
        (
            j.job_id,
            j.source_id,
            j.status,
            j.mode or "-",
            j.trigger or "-",
            format_time(j.started_at)
            if j.started_at
            else (f"queued {format_time(j.queued_at)}" if j.queued_at else "-"),
            format_duration(j.duration_ms),
            batches_text(j),
            str(j.files_listed),
            str(j.processed),
            str(j.documents_written),
            str(j.failed),
            str(len(j.request_ids)),
            one_line(j.error or j.cancel_reason, ERROR_WIDTH),
        )
        for j in jobs
    ]
    return format_table(header, lines)


def count_values(job: read_model.SyncJobRow) -> list[tuple[str, str]]:
    """(name, value) of each of the job's file counts, bytes also in KiB/MiB/GiB."""
    values = [(name, str(getattr(job, name))) for name in COUNT_FIELDS]
    return [(name, f"{value} ({format_bytes(job.bytes)})" if name == "bytes" else value) for name, value in values]


def batches_text(job: read_model.SyncJobRow) -> str:
    """`done/planned` (`done/?` before the plan is known)."""
    return f"{job.batches}/{job.batches_planned if job.batches_planned is not None else '?'}"


def job_details(job: read_model.SyncJobRow, answers: list[read_model.RequestAnswer]) -> str:
    if job.is_final:
        state = f"{job.status} (final)"
    elif job.status == "running":
        state = f"running: {batches_text(job)} batches done, the counts below so far"
    else:
        state = job.status
    lines = [
        f"job            {job.job_id}",
        f"source         {job.source_id}",
        f"status         {state}",
        f"mode           {job.mode or '-'}",
        f"trigger        {job.trigger or '-'}",
        f"commit         {job.commit or '-'}",
        f"requests       {', '.join(job.request_ids) or '-'}",
        f"queued         {format_time(job.queued_at)}",
        f"started        {format_time(job.started_at)}",
        f"deadline       {format_time(job.deadline)}",
        f"finished       {format_time(job.finished_at)}",
        f"duration       {format_duration(job.duration_ms)}" + (f" ({job.duration_ms} ms)" if job.duration_ms else ""),
    ]
    if job.cancelled_at is not None:
        lines.append(f"cancelled      {format_time(job.cancelled_at)}: {job.cancel_reason or '-'}")
    lines += [
        "counts",
        f"  files listed       {job.files_listed}",
        *(f"  {name.replace('_', ' '):<19}{value}" for name, value in count_values(job)),
        f"  batches            {job.batches}"
        + (f" of {job.batches_planned} planned" if job.batches_planned is not None else ""),
        "error" + ("          -" if not job.error else ""),
        *("  " + line for line in (job.error or "").splitlines()),
    ]
    if answers:
        lines.append("answered requests")
        width = max(len(a.request_id) for a in answers)
        lines += [f"  {a.request_id:<{width}}  {a.answer:<12}  {format_time(a.answered_at)}" for a in answers]
    return "\n".join(lines)


def answer_line(answer: read_model.RequestAnswer) -> str:
    text = (
        f"request {answer.request_id} for {answer.source_id} was {answer.answer} at {format_time(answer.answered_at)}"
    )
    if answer.reason:
        text += f": {answer.reason}"
    return text


# --- list / show -------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from app.store import views

    settings = load_settings()
    jobs = run(
        on_read_model(settings, lambda conn: views.jobs(conn, args.status or None, args.source or None, args.limit))
    )
    if args.json:
        print(orjson.dumps([job_summary(j) for j in jobs], option=orjson.OPT_INDENT_2).decode())
        return 0
    if not jobs:
        print(
            "no sync jobs"
            + (" match" if args.status or args.source else " yet (request one with `hookstream sync request SOURCE`)")
        )
        return 0
    print(jobs_table(jobs))
    if len(jobs) == args.limit:
        print(f"(latest {args.limit} shown: raise --limit or narrow with --source/--status)", file=sys.stderr)
    return 0


async def _find(
    conn, ident: str
) -> tuple[read_model.SyncJobRow | None, read_model.RequestAnswer | None, list[read_model.RequestAnswer]]:
    """The job with this id, or the answer of the request with this id and its job."""
    from app.store import sync_records

    answer = None
    jobs = await sync_records.jobs(conn, [ident])
    if not jobs:
        answers = await sync_records.answers(conn, [ident])
        answer = answers[0] if answers else None
        if answer is not None and answer.job_id is not None:
            jobs = await sync_records.jobs(conn, [answer.job_id])
        elif answer is None:
            # A job that served the request, should its answer not be projected (yet).
            jobs = await sync_records.jobs_serving(conn, ident)
    job = jobs[0] if jobs else None
    served = await sync_records.answers_of_job(conn, job.job_id) if job is not None else []
    return job, answer, served


def cmd_show(args: argparse.Namespace) -> int:
    settings = load_settings()
    ident = args.ident.strip()
    job, answer, served = run(on_read_model(settings, lambda conn: _find(conn, ident)))
    if job is None and answer is None:
        raise CliError(
            f"no sync job or request {ident!r} in schema {settings.database_schema}"
            + run(on_read_model(settings, lambda conn: _what_the_ledger_says(conn, ident)))
        )
    if args.json:
        out: dict[str, Any] = {"job": job_summary(job) if job else None}
        if answer is not None:
            out["request"] = {**read_model.answer_to_columns(answer), "answered_at": answer.answered_at.isoformat()}
        out["answered_requests"] = [
            {**read_model.answer_to_columns(a), "answered_at": a.answered_at.isoformat()} for a in served
        ]
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return 0
    if answer is not None:
        print(answer_line(answer))
        if job is None:
            print("no job" + (f" row for {answer.job_id} yet" if answer.job_id else " was started for it"))
            return 0
        print()
    if job is not None:  # else the request alone was found, and printed above
        print(job_details(job, served))
    return 0


async def _what_the_ledger_says(conn, ident: str) -> str:
    """Why a delivery id has no job: what the dedup stage made of the delivery, if the ledger has it."""
    from app.core.trace import outcome_text
    from app.store import ledger as ledger_store

    rows = await ledger_store.named(conn, ident, limit=3)
    if not rows:
        return (
            " nor a delivery in the ledger (see `hookstream syncs list`; a request shows once the worker has "
            "answered it; `hookstream trace ID` searches everything)"
        )
    said = "; ".join(
        f"delivery {r.key}: " + outcome_text(r.outcome, r.rule, r.reason, (), r.source_ids, r.request_ids) for r in rows
    )
    return f": {said} (`hookstream trace {ident}` shows the whole chain)"


# --- request -----------------------------------------------------------------------------------


def requested_event(args: argparse.Namespace) -> SyncRequested:
    if args.full and (args.paths or args.before):
        raise CliError("--paths and --before describe an incremental sync: leave out --full, or them", 2)
    try:
        return SyncRequested(
            source_id=args.source_id,
            occurred_at=utcnow(),
            request_id=args.request_id or f"cli-{uuid.uuid4().hex}",
            mode="full" if args.full else "incremental",
            trigger=args.trigger,
            paths=list(args.paths),
            before=args.before,
            after=args.after,
            force=args.force,
        )
    except ValidationError as exc:
        raise CliError(f"not a valid request: {first_error(exc)}", 2) from None


def cmd_request(args: argparse.Namespace) -> int:
    event = requested_event(args)
    settings = load_settings()
    answer = send_producer_event(settings, event, args)
    if args.json:
        print(
            orjson.dumps(
                {**answer, "request_id": event.request_id, "source_id": event.source_id, "mode": event.mode}
            ).decode()
        )
        return 0
    print(event.request_id)
    print(
        f"{event.mode} sync of {event.source_id} requested: {describe_sent(answer)}; "
        f"follow it with `hookstream syncs show {event.request_id}`",
        file=sys.stderr,
    )
    return 0
