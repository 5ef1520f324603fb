"""The console's pages: server-rendered HTML from the same dicts the JSON API answers with.

Every value is escaped (`esc`); links are relative to the console's root. A page
that shows something still moving (a running job, the overview) carries
`data-refresh`: static/refresh.js then reloads its `<main>` every two seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

NAV = (
    ("/", "Overview"),
    ("/sources", "Sources"),
    ("/jobs", "Jobs"),
    ("/deliveries", "Deliveries"),
    ("/dlq", "Dead letters"),
)
JOB_STATUSES = ("", "active", "queued", "running", "succeeded", "failed", "cancelled", "timed_out")
OUTCOMES = ("", "routed", "duplicate", "ignored", "dead_lettered")


def esc(value: Any) -> str:
    return "-" if value is None or value == "" else escape(str(value))


def link(path: str, text: Any) -> str:
    return f'<a href="{escape(path)}">{esc(text)}</a>'


def job_link(job_id: str) -> str:
    return link(f"/jobs/{quote(job_id, safe=':')}", job_id)


def trace_link(ident: str, text: Any = None) -> str:
    return link(f"/deliveries/{quote(ident, safe='/:')}", ident if text is None else text)


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], empty: str = "nothing here yet") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body or f'<tr><td colspan=99 class=empty>{esc(empty)}</td></tr>'}</tbody></table>"


def facts(rows: Iterable[tuple[str, str]]) -> str:
    """A two-column table of named values (the name escaped here, the value already HTML)."""
    body = "".join(f"<tr><th>{esc(name)}</th><td>{value}</td></tr>" for name, value in rows)
    return f"<table class=facts><tbody>{body}</tbody></table>"


def clock(value: str | None) -> str:
    """An ISO time as its time of day (to the millisecond), the whole value on hover."""
    if not value:
        return "-"
    return f'<time datetime="{escape(value)}" title="{escape(value)}">{esc(value[11:23])}</time>'


def layout(title: str, body: str, active: str, refresh: bool = False) -> str:
    nav = "".join(f'<a href="{p}"{" class=active" if p == active else ""}>{esc(t)}</a>' for p, t in NAV)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{esc(title)} · hookstream</title>"
        '<link rel=stylesheet href="/static/console.css"><script src="/static/refresh.js" defer></script></head>'
        f"<body{' data-refresh=2000' if refresh else ''}><header><strong>hookstream</strong><nav>{nav}</nav></header>"
        f"<main><h1>{esc(title)}</h1>{body}</main></body></html>"
    )


def progress(job: Mapping[str, Any]) -> str:
    planned, done = job.get("batches_planned"), job.get("batches") or 0
    if planned:
        return f'<progress max="{planned}" value="{done}"></progress> {done}/{planned} batches'
    return f"{done}/? batches"


def counts(job: Mapping[str, Any]) -> str:
    return (
        f'<span class=counts data-job="{escape(job["job_id"])}">listed {esc(job["files_listed"])} · '
        f"processed <b class=processed>{esc(job['processed'])}</b> · failed {esc(job['failed'])} · "
        f"deleted {esc(job['deleted'])} · skipped {esc(job['skipped'])} · written {esc(job['documents_written'])}</span>"
    )


def status(value: str) -> str:
    return f'<span class="status {escape(value)}">{esc(value)}</span>'


# --- pages -------------------------------------------------------------------------------------


def overview_page(data: Mapping[str, Any]) -> str:
    d, lag = data["deliveries"], data["lag"]
    cards = "".join(
        f'<div class=card><div class=n id="deliveries-{k}">{esc(v)}</div>{esc(k.replace("_", "-"))}</div>'
        for k, v in d.items()
    )
    syncs = data["syncs"]
    lag_rows = [(esc(stage), esc(n)) for stage, n in sorted(lag.get("stages", {}).items())]
    lag_note = (
        f"<p class=warn>lag unavailable: {esc(lag['error'])}</p>"
        if lag.get("error")
        else f"<p>group {esc(lag.get('group'))}: {esc(lag.get('state'))}, {esc(lag.get('members'))} member(s)</p>"
    )
    body = (
        f"<h2>Deliveries, last 15 minutes</h2><div class=cards>{cards}</div>"
        f"<h2>Syncs</h2><div class=cards><div class=card><div class=n id=syncs-running>{esc(syncs['running'])}</div>running</div>"
        f"<div class=card><div class=n id=syncs-queued>{esc(syncs['queued'])}</div>queued</div>"
        f"<div class=card><div class=n id=dead-letters-open>{esc(data['dead_letters_open'])}</div>"
        f"{link('/dlq', 'open dead letters')}</div></div>"
        f"<h2>Consumer lag per stage</h2>{lag_note}{table(('stage', 'records behind'), lag_rows, 'no committed offsets yet')}"
    )
    return layout("Overview", body, "/", refresh=True)


def sources_page(sources: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for s in sources:
        active = s["running"]
        rows.append(
            (
                esc(s["source_id"]),
                esc(s["type"]),
                esc(s["status"]),
                status(s["state"]),
                (job_link(active["job_id"]) + " " + progress(active)) if active else "-",
                (job_link(s["queued"]["job_id"]) if s["queued"] else "-"),
                (job_link(s["last"]["job_id"]) + " " + status(s["last"]["status"])) if s["last"] else "-",
            )
        )
    body = table(
        ("source", "type", "connection", "state", "running job", "queued job", "last result"),
        rows,
        "no sources yet: hookstream sources connect ...",
    )
    return layout("Sources", body, "/sources", refresh=True)


def jobs_page(jobs: Sequence[Mapping[str, Any]], filters: Mapping[str, str]) -> str:
    options = "".join(
        f"<option{' selected' if filters.get('status') == s else ''}>{esc(s) if s else ''}</option>"
        for s in JOB_STATUSES
    )
    form = (
        f"<form class=filters><label>status <select name=status>{options}</select></label>"
        f'<label>source <input name=source value="{escape(filters.get("source", ""))}"></label>'
        "<button>filter</button></form>"
    )
    rows = [
        (
            job_link(j["job_id"]),
            esc(j["source_id"]),
            status(j["status"]),
            esc(j["mode"]),
            esc(j["trigger"]),
            esc(j["started_at"] or j["queued_at"]),
            progress(j),
            esc(j["processed"]),
            esc(j["failed"]),
            esc(len(j["request_ids"])),
        )
        for j in jobs
    ]
    body = form + table(
        ("job", "source", "status", "mode", "trigger", "started", "progress", "processed", "failed", "requests"),
        rows,
        "no jobs match",
    )
    return layout("Jobs", body, "/jobs", refresh=any(not j["final"] for j in jobs))


def job_page(data: Mapping[str, Any]) -> str:
    j = data["job"]
    summary = facts(
        [
            ("status", status(j["status"]) + ("" if j["final"] else " (live: the counts so far)")),
            ("source", esc(j["source_id"])),
            ("mode / trigger", f"{esc(j['mode'])} / {esc(j['trigger'])}"),
            ("commit", esc(j["commit"])),
            ("progress", progress(j)),
            ("counts", counts(j)),
            ("started", esc(j["started_at"])),
            ("finished", esc(j["finished_at"])),
            ("duration", esc(j["duration_ms"]) + " ms" if j["duration_ms"] is not None else "-"),
            ("error", esc(j["error"] or j["cancel_reason"])),
            ("trace", trace_link(j["job_id"], "the whole chain")),
        ]
    )
    requests = table(
        ("request", "answer", "answered", "reason"),
        [
            (trace_link(r["request_id"]), esc(r.get("answer")), esc(r.get("answered_at")), esc(r.get("reason")))
            for r in data["requests"]
        ],
        "no request answered yet",
    )
    batches = table(
        ("batch", "processed", "failed", "deleted", "skipped", "written", "completed", "position"),
        [
            (
                esc(b["batch_index"]) + (" (skipped)" if b["cancelled"] else ""),
                esc(b["processed"]),
                esc(b["failed"]),
                esc(b["deleted"]),
                esc(b["skipped"]),
                esc(b["documents_written"]),
                clock(b["completed_at"]),
                esc(f"{b['topic']}[{b['partition']}]@{b['offset']}"),
            )
            for b in data["batches"]
        ],
        "no batch reported yet",
    )
    body = f"{summary}<h2>Requests</h2>{requests}<h2>Batches</h2>{batches}"
    return layout(f"Job {j['job_id']}", body, "/jobs", refresh=not j["final"])


def deliveries_page(rows: Sequence[Mapping[str, Any]], filters: Mapping[str, str]) -> str:
    options = "".join(
        f"<option{' selected' if filters.get('outcome') == o else ''}>{esc(o) if o else ''}</option>" for o in OUTCOMES
    )
    form = (
        f'<form class=filters><label>id <input name=q value="{escape(filters.get("q", ""))}" placeholder="delivery id, key or request id"></label>'
        f'<label>plugin <input name=plugin value="{escape(filters.get("plugin", ""))}"></label>'
        f'<label>instance <input name=instance value="{escape(filters.get("instance", ""))}"></label>'
        f"<label>outcome <select name=outcome>{options}</select></label>"
        f'<label>last minutes <input name=minutes size=5 value="{escape(filters.get("minutes", ""))}"></label>'
        "<button>search</button></form>"
    )
    table_rows = [
        (
            trace_link(d["key"], d["delivery_id"]),
            esc(d["plugin"]),
            esc(d["instance"]),
            esc(d["event"]),
            status(d["outcome"]) + (f" {esc(d['rule'])}" if d["rule"] else ""),
            esc(d["copies"]),
            esc(d["first_received_at"]),
            esc(d["last_received_at"]),
            esc(", ".join(d["request_ids"])),
        )
        for d in rows
    ]
    body = form + table(
        ("delivery", "plugin", "instance", "event", "outcome", "copies", "first received", "last received", "requests"),
        table_rows,
        "no deliveries match",
    )
    return layout("Deliveries", body, "/deliveries")


def trace_page(data: Mapping[str, Any]) -> str:
    summary = table(
        ("delivery", "outcome", "copies", "first received", "last received", "requests"),
        [
            (
                esc(d["key"]),
                status(d["outcome"])
                + (f" {esc(d['rule'])}" if d["rule"] else "")
                + (f": {esc(d['reason'])}" if d["outcome"] == "dead_lettered" else ""),
                esc(d["copies"]),
                esc(d["first_received_at"]),
                esc(d["last_received_at"]),
                esc(", ".join(d["request_ids"])),
            )
            for d in data["deliveries"]
        ],
        "no delivery: a request or job from a producer",
    )
    hops = table(
        ("after", "time (UTC)", "stage", "where", "type", "what"),
        [
            (
                esc("" if h["since_previous_ms"] is None else f"{h['since_previous_ms']:+d} ms"),
                clock(h["timestamp"]),
                esc(h["stage"]),
                esc(f"{h['topic']}[{h['partition']}]@{h['offset']}")
                + ("" if h["found"] is not False else " (not in Kafka)"),
                esc(h["type"]),
                esc(h["detail"]),
            )
            for h in data["hops"]
        ],
        "no records",
    )
    job = data["job"]
    job_part = (
        f"<h2>Job</h2><p>{job_link(job['job_id'])} {status(job['status'])} {progress(job)} {counts(job)}</p>"
        if job
        else ""
    )
    body = f"<h2>Delivery</h2>{summary}{job_part}<h2>Chain</h2>{hops}"
    return layout(
        f"Trace {data['id']}", body, "/deliveries", refresh=bool(job and job["status"] in ("queued", "running"))
    )


def dead_letters_page(rows: Sequence[Mapping[str, Any]], can_redrive: bool, message: str | None = None) -> str:
    def action(d: Mapping[str, Any]) -> str:
        if not d["redrivable"]:
            return "-"
        if not can_redrive:
            return "<span class=muted>redrive needs HOOKSTREAM_CONSOLE_WRITE_TOKEN</span>"
        return (
            f'<form method=post action="/dlq/{quote(d["dead_letter_id"])}/redrive" class=inline>'
            '<input type=password name=write_token placeholder="write token" required><button>redrive</button></form>'
        )

    table_rows = [
        (
            esc(d["dead_letter_id"]),
            trace_link(d["key"]),
            esc(d["stage"]),
            esc(d["error"]),
            esc(d["attempts"]),
            status(d["status"]),
            esc(d["last_failed_at"]),
            action(d),
        )
        for d in rows
    ]
    note = f"<p class=notice>{esc(message)}</p>" if message else ""
    body = note + table(
        ("id", "delivery", "stage", "error", "attempts", "status", "last failed", ""),
        table_rows,
        "no open dead letters",
    )
    return layout("Dead letters", body, "/dlq")


def not_found(what: str, ident: str) -> str:
    return layout("Not found", f"<p>no {esc(what)} {esc(ident)} in the read model.</p>", "")
