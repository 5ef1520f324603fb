"""`hookstream console`: the aiohttp application (pages, `/api/...` JSON, static files, tokens).

Reads only, but a redrive of a dead letter, which needs the write token
(HOOKSTREAM_CONSOLE_WRITE_TOKEN; disabled without one). With
HOOKSTREAM_CONSOLE_TOKEN set, every request needs it: `Authorization: Bearer
TOKEN`, or once `?token=TOKEN` (kept in a cookie). `hookstream console`
refuses to bind anything but loopback without it.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
from aiohttp import web
from aiokafka.errors import KafkaError
from psycopg_pool import AsyncConnectionPool
from pydantic import TypeAdapter, ValidationError

from app.console import data, pages
from app.core import dlq
from app.events.bounds import PATTERN_MEANINGS, DeliveryKey, Identifier, InstanceName, PluginName, Text
from app.settings import Settings
from app.store import dead_letters as dead_letter_rows
from app.store import ledger as ledger_store

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "hookstream_console"
POOL: web.AppKey[AsyncConnectionPool] = web.AppKey("pool", AsyncConnectionPool)
SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
LAGS: web.AppKey[data.LagCache] = web.AppKey("lags", data.LagCache)
MAX_LIMIT = 500
MAX_MINUTES = 10 * 366 * 24 * 60  # ten years: beyond any ledger retention
DLQ_STATUSES = (dlq.OPEN, dlq.RETIRED, "all")

# What a path id or a filter may hold (app/events/bounds.py): anything else is a 400, never a query.
ID = TypeAdapter(Identifier)  # job ids, source ids, dead letter ids
TRACE_ID = TypeAdapter(DeliveryKey)  # a delivery key or id, a request id or a job id
SEARCH = TypeAdapter(Text)
PLUGIN = TypeAdapter(PluginName)
INSTANCE = TypeAdapter(InstanceName)


class BadInput(Exception):
    """A path id or a query parameter the console refuses: a 400 that says why."""


def _checked(adapter: TypeAdapter[str], value: str, what: str) -> str:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        pattern = (error.get("ctx") or {}).get("pattern")
        reason = f"must be {PATTERN_MEANINGS[pattern]}" if pattern in PATTERN_MEANINGS else error["msg"].lower()
        raise BadInput(f"{what} {reason}") from None


def _path_id(request: web.Request, name: str, adapter: TypeAdapter[str] = ID) -> str:
    return _checked(adapter, request.match_info[name], name.replace("_", " "))


def _query(request: web.Request, name: str, adapter: TypeAdapter[str]) -> str | None:
    value = request.query.get(name) or None
    return None if value is None else _checked(adapter, value, name)


def bad_request(request: web.Request, message: str) -> web.Response:
    if request.path.startswith("/api/"):
        return json_response({"error": "bad_request", "message": message}, 400)
    return html_response(pages.layout("Bad request", f"<p class=warn>{pages.esc(message)}</p>", ""), 400)


def json_response(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(value, default=str), status=status, content_type="application/json")


def html_response(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html")


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


@web.middleware
async def require_token(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    settings = request.app[SETTINGS]
    token = settings.console_token.get_secret_value() if settings.console_token else None
    if token is None or request.path.startswith("/static/"):
        return await handler(request)
    if _same(request.query.get("token"), token):
        # Once from the link, then from the cookie; the token leaves the address bar.
        rest = [(k, v) for k, v in request.query.items() if k != "token"]
        response = web.HTTPSeeOther(request.rel_url.with_query(rest))
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        raise response
    if _same(_bearer(request), token) or _same(request.cookies.get(COOKIE), token):
        return await handler(request)
    if request.path.startswith("/api/"):
        return json_response(
            {"error": "unauthorized", "message": "send Authorization: Bearer HOOKSTREAM_CONSOLE_TOKEN"}, 401
        )
    return html_response(
        pages.layout(
            "Token needed", "<p>Open this console with <code>?token=…</code> (HOOKSTREAM_CONSOLE_TOKEN).</p>", ""
        ),
        401,
    )


@web.middleware
async def read_model_errors(request: web.Request, handler):
    """Bad input: a 400 that says why; PostgreSQL down or not migrated: a 503 that says so; never a traceback."""
    try:
        return await handler(request)
    except BadInput as exc:
        return bad_request(request, str(exc))
    except psycopg.DataError as exc:
        # A value PostgreSQL refuses (a NUL, an out-of-range number) that validation let through.
        log.warning("console: %s %s: %s", request.method, request.path, exc)
        return bad_request(request, "a value in the request cannot be looked up in the read model")
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable, TimeoutError) as exc:
        log.warning("console: %s %s: %s", request.method, request.path, exc)
        message = (
            "the read model is not there: run `hookstream db migrate`"
            if isinstance(exc, psycopg.errors.UndefinedTable)
            else "PostgreSQL is unreachable (HOOKSTREAM_DATABASE_URL)"
        )
        if request.path.startswith("/api/"):
            return json_response({"error": "unavailable", "message": message}, 503)
        return html_response(pages.layout("Unavailable", f"<p class=warn>{pages.esc(message)}</p>", ""), 503)


def _limit(request: web.Request, default: int = 50) -> int:
    try:
        return max(1, min(MAX_LIMIT, int(request.query.get("limit", default))))
    except ValueError:
        raise BadInput("limit must be a number") from None


def _filters(request: web.Request) -> ledger_store.Filters:
    q = request.query
    since = None
    if q.get("minutes"):
        try:
            minutes = float(q["minutes"])
        except ValueError:
            minutes = -1.0
        if not 0 <= minutes <= MAX_MINUTES:  # NaN fails too
            raise BadInput(f"minutes must be a number from 0 to {MAX_MINUTES} (ten years)")
        since = datetime.now(UTC) - timedelta(minutes=minutes)
    outcome = q.get("outcome") or None
    if outcome is not None and outcome not in pages.OUTCOMES:
        raise BadInput(f"outcome is one of {', '.join(o for o in pages.OUTCOMES if o)}")
    search = (q.get("q") or "").strip() or None
    return ledger_store.Filters(
        plugin=_query(request, "plugin", PLUGIN),
        instance=_query(request, "instance", INSTANCE),
        outcome=outcome,
        since=since,
        search=None if search is None else _checked(SEARCH, search, "q"),
        limit=_limit(request),
    )


def _job_status(request: web.Request) -> str | None:
    status = request.query.get("status") or None
    if status is not None and status not in pages.JOB_STATUSES:
        raise BadInput(f"status is one of {', '.join(s for s in pages.JOB_STATUSES if s)}")
    return status


def _dead_letter_status(request: web.Request) -> str | None:
    status = request.query.get("status") or dlq.OPEN
    if status not in DLQ_STATUSES:
        raise BadInput(f"status is one of {', '.join(DLQ_STATUSES)}")
    return None if status == "all" else status


class Handlers:
    """Each view is one query on the read model; a page renders what its `/api/` twin answers."""

    async def overview(self, conn, request):
        return await data.overview(conn)

    async def with_lag(self, found, request):
        return {**found, "lag": await request.app[LAGS].get()}

    async def sources(self, conn, request):
        return await data.sources(conn)

    async def jobs(self, conn, request):
        return await data.jobs(conn, _job_status(request), _query(request, "source", ID), _limit(request))

    async def job(self, conn, request):
        return await data.job(conn, _path_id(request, "job_id"))

    async def deliveries(self, conn, request):
        return await data.deliveries(conn, _filters(request))

    async def trace(self, conn, request):
        from app.trace import trace

        return await trace(conn, request.app[SETTINGS], _path_id(request, "ident", TRACE_ID), kafka=False)

    async def with_records(self, found, request):
        """The trace's hops as Kafka holds them, read after the connection went back to the pool."""
        from app.core.trace import with_seen
        from app.trace import TraceError, read_records

        try:
            seen = await read_records(request.app[SETTINGS], [h.position for h in found.hops])
        except (TraceError, KafkaError, OSError) as exc:
            raise web.HTTPServiceUnavailable(text=str(exc) or type(exc).__name__) from None
        found.hops = with_seen(found.hops, seen)
        return found.as_json()

    async def dead_letters(self, conn, request):
        return await data.dead_letters(conn, _dead_letter_status(request))


def _view(fetch, render=None, what: str = "", ident: str = "", then=None):
    """GET: `fetch` on a pooled connection, then (`then`, off the connection) what Kafka adds."""

    async def handle(request: web.Request) -> web.Response:
        async with request.app[POOL].connection() as conn:
            found = await fetch(conn, request)
        if found is not None and then is not None:
            found = await then(found, request)
        if found is None:
            key = request.match_info.get(ident, "")
            if render is None:
                return json_response({"error": "not_found", "message": f"no {what} {key!r}"}, 404)
            return html_response(pages.not_found(what, key), 404)
        if render is None:
            return json_response(found)
        return html_response(render(found, request))

    return handle


async def redrive(request: web.Request) -> web.Response:
    """POST /api/dlq/{id}/redrive (Bearer write token) or the page's form (write_token field)."""
    from app.console.redrive import RedriveRefused, redrive_dead_letter

    settings = request.app[SETTINGS]
    api = request.path.startswith("/api/")
    write = settings.console_write_token.get_secret_value() if settings.console_write_token else None
    given = _bearer(request) if api else (await request.post()).get("write_token")
    ident = _path_id(request, "dead_letter_id")
    if write is None:
        status, body = (
            403,
            {"error": "redrive_disabled", "message": "redrive needs HOOKSTREAM_CONSOLE_WRITE_TOKEN set on the console"},
        )
    elif not _same(given if isinstance(given, str) else None, write):
        status, body = 403, {"error": "forbidden", "message": "the write token is missing or wrong"}
    else:
        try:
            async with request.app[POOL].connection() as conn:
                row = await dead_letter_rows.by_id(conn, ident)
            where = await redrive_dead_letter(settings, row, ident)
            status, body = (
                202,
                {
                    "redriven": ident,
                    "published": where,
                    "message": "the row is retired once the worker routed the redrive",
                },
            )
        except RedriveRefused as exc:
            status, body = exc.status, {"error": exc.code, "message": str(exc)}
    if api:
        return json_response(body, status)
    async with request.app[POOL].connection() as conn:
        rows = await data.dead_letters(conn, "open")
    return html_response(pages.dead_letters_page(rows, write is not None, body["message"]), status)


def build_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[require_token, read_model_errors])
    app[SETTINGS] = settings
    app[LAGS] = data.LagCache(settings)
    h = Handlers()
    can_redrive = settings.console_write_token is not None

    def filters_of(request):
        return dict(request.query)

    app.router.add_get("/", _view(h.overview, lambda d, r: pages.overview_page(d), then=h.with_lag))
    app.router.add_get("/sources", _view(h.sources, lambda d, r: pages.sources_page(d)))
    app.router.add_get("/jobs", _view(h.jobs, lambda d, r: pages.jobs_page(d, filters_of(r))))
    app.router.add_get("/jobs/{job_id}", _view(h.job, lambda d, r: pages.job_page(d), "job", "job_id"))
    app.router.add_get("/deliveries", _view(h.deliveries, lambda d, r: pages.deliveries_page(d, filters_of(r))))
    app.router.add_get(
        "/deliveries/{ident:.+}",
        _view(h.trace, lambda d, r: pages.trace_page(d), "delivery, request or job", "ident", h.with_records),
    )
    app.router.add_get("/dlq", _view(h.dead_letters, lambda d, r: pages.dead_letters_page(d, can_redrive)))
    app.router.add_post("/dlq/{dead_letter_id}/redrive", redrive)
    app.router.add_get("/api/overview", _view(h.overview, then=h.with_lag))
    app.router.add_get("/api/sources", _view(h.sources))
    app.router.add_get("/api/jobs", _view(h.jobs))
    app.router.add_get("/api/jobs/{job_id}", _view(h.job, None, "job", "job_id"))
    app.router.add_get("/api/deliveries", _view(h.deliveries))
    app.router.add_get(
        "/api/deliveries/{ident:.+}", _view(h.trace, None, "delivery, request or job", "ident", h.with_records)
    )
    app.router.add_get(
        "/api/trace/{ident:.+}", _view(h.trace, None, "delivery, request or job", "ident", h.with_records)
    )
    app.router.add_get("/api/dlq", _view(h.dead_letters))
    app.router.add_post("/api/dlq/{dead_letter_id}/redrive", redrive)
    app.router.add_static("/static/", STATIC)

    async def pool(app: web.Application):
        from app.store.db import open_pool

        p = open_pool(settings, min_size=1, max_size=4)
        await p.open(wait=False)
        app[POOL] = p
        yield
        await p.close()

    app.cleanup_ctx.append(pool)
    return app
