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
from psycopg_pool import AsyncConnectionPool

from app.console import data, pages
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
    """PostgreSQL down or not migrated: a 503 that says so, never a traceback."""
    try:
        return await handler(request)
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
        raise web.HTTPBadRequest(text="limit must be a number") from None


def _filters(request: web.Request) -> ledger_store.Filters:
    q = request.query
    since = None
    if q.get("minutes"):
        try:
            since = datetime.now(UTC) - timedelta(minutes=float(q["minutes"]))
        except ValueError:
            raise web.HTTPBadRequest(text="minutes must be a number") from None
    outcome = q.get("outcome") or None
    if outcome is not None and outcome not in pages.OUTCOMES:
        raise web.HTTPBadRequest(text=f"outcome is one of {', '.join(o for o in pages.OUTCOMES if o)}")
    return ledger_store.Filters(
        plugin=q.get("plugin") or None,
        instance=q.get("instance") or None,
        outcome=outcome,
        since=since,
        search=(q.get("q") or "").strip() or None,
        limit=_limit(request),
    )


def _job_status(request: web.Request) -> str | None:
    status = request.query.get("status") or None
    if status is not None and status not in pages.JOB_STATUSES:
        raise web.HTTPBadRequest(text=f"status is one of {', '.join(s for s in pages.JOB_STATUSES if s)}")
    return status


class Handlers:
    """Each view is one query on the read model; a page renders what its `/api/` twin answers."""

    async def overview(self, conn, request):
        return await data.overview(conn, request.app[LAGS])

    async def sources(self, conn, request):
        return await data.sources(conn)

    async def jobs(self, conn, request):
        return await data.jobs(conn, _job_status(request), request.query.get("source") or None, _limit(request))

    async def job(self, conn, request):
        return await data.job(conn, request.match_info["job_id"])

    async def deliveries(self, conn, request):
        return await data.deliveries(conn, _filters(request))

    async def trace(self, conn, request):
        from app.trace import TraceError, trace

        try:
            found = await trace(conn, request.app[SETTINGS], request.match_info["ident"])
        except TraceError as exc:
            raise web.HTTPServiceUnavailable(text=str(exc)) from None
        return found.as_json() if found is not None else None

    async def dead_letters(self, conn, request):
        status = request.query.get("status", "open")
        return await data.dead_letters(conn, None if status == "all" else status)


def _view(fetch, render=None, what: str = "", ident: str = ""):
    async def handle(request: web.Request) -> web.Response:
        async with request.app[POOL].connection() as conn:
            found = await fetch(conn, request)
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
    ident = request.match_info["dead_letter_id"]
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

    app.router.add_get("/", _view(h.overview, lambda d, r: pages.overview_page(d)))
    app.router.add_get("/sources", _view(h.sources, lambda d, r: pages.sources_page(d)))
    app.router.add_get("/jobs", _view(h.jobs, lambda d, r: pages.jobs_page(d, filters_of(r))))
    app.router.add_get("/jobs/{job_id}", _view(h.job, lambda d, r: pages.job_page(d), "job", "job_id"))
    app.router.add_get("/deliveries", _view(h.deliveries, lambda d, r: pages.deliveries_page(d, filters_of(r))))
    app.router.add_get(
        "/deliveries/{ident:.+}", _view(h.trace, lambda d, r: pages.trace_page(d), "delivery, request or job", "ident")
    )
    app.router.add_get("/dlq", _view(h.dead_letters, lambda d, r: pages.dead_letters_page(d, can_redrive)))
    app.router.add_post("/dlq/{dead_letter_id}/redrive", redrive)
    app.router.add_get("/api/overview", _view(h.overview))
    app.router.add_get("/api/sources", _view(h.sources))
    app.router.add_get("/api/jobs", _view(h.jobs))
    app.router.add_get("/api/jobs/{job_id}", _view(h.job, None, "job", "job_id"))
    app.router.add_get("/api/deliveries", _view(h.deliveries))
    app.router.add_get("/api/deliveries/{ident:.+}", _view(h.trace, None, "delivery, request or job", "ident"))
    app.router.add_get("/api/trace/{ident:.+}", _view(h.trace, None, "delivery, request or job", "ident"))
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
