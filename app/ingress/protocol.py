"""The ingress's HTTP connections: aiohttp's protocol, held to the ingress contract below the app.

Some answers never reach the application's handlers or middlewares: aiohttp's
parser refuses a request (a NUL in a header, a line over 8,190 bytes, more than
128 headers, bad chunked framing) and answers it itself, in plain text, after
logging the offending bytes at ERROR; and a client that sends its request head
byte by byte holds its connection for as long as it likes. This module is the
one place that reaches into aiohttp's protocol (`RequestHandler`) to change that:

- a parser rejection is answered as JSON `{"error", "message"}` (431 for a
  header line that is too long or too many headers, 400 otherwise) and logged
  as one line that names the kind of error, never the request's bytes;
- a connection that has not sent a whole request head within
  `ingress_header_timeout_seconds` of opening (or of the first byte of a next
  request on a kept-alive connection) is answered 408 and closed; so is one
  whose body the handler gave up on (408), without aiohttp's lingering read;
- every answer is counted in /metrics by status, and a client that went away
  before its answer could be written is counted as a disconnect, not logged.

A kept-alive connection idle between requests is closed after
`ingress_idle_timeout_seconds` (aiohttp's keep-alive timer; its default is an
hour). The body's own deadline is the handler's (`app.ingress.app.read_limited_body`),
which knows whether a body is still arriving. `IngressRunner` is how the
ingress is served (`app.ingress.server` and the tests): a plain
`web.AppRunner` would serve the same app without these rules.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from app.ingress.app import METRICS, SETTINGS
from app.ingress.metrics import IngressMetrics

log = logging.getLogger("hookstream.ingress")


@dataclass(frozen=True)
class ConnectionRules:
    """What every connection of one ingress app is held to."""

    header_timeout_seconds: float
    metrics: IngressMetrics


def _json_bytes(code: str, message: str) -> bytes:
    return orjson.dumps({"error": code, "message": message})


def describe_parser_error(exc: BaseException | None, max_field_size: int, max_headers: int) -> tuple[int, str, str]:
    """(status, error code, message) for a request aiohttp's parser refused.

    The message is ours: aiohttp's quotes the offending bytes, which may be a
    signature or a token. Its text is only compared with known prefixes.
    """
    text = getattr(exc, "message", "") or ""
    if isinstance(exc, http_exceptions.LineTooLong):
        return 431, "header_too_large", f"the request line or a header line is longer than {max_field_size} bytes"
    if text.startswith("Too many headers"):
        return 431, "too_many_headers", f"the request has more than {max_headers} headers"
    if isinstance(exc, http_exceptions.BadStatusLine):
        return 400, "malformed_request", "the request line is not an HTTP/1.x request line"
    if isinstance(exc, http_exceptions.InvalidHeader) or text.startswith("Invalid header"):
        return (
            400,
            "malformed_header",
            "a header is malformed (a name that is not a token, or a control character such as NUL in a value)",
        )
    if (
        isinstance(exc, (http_exceptions.TransferEncodingError, http_exceptions.ContentLengthError))
        or "chunk" in text.lower()
    ):
        return 400, "malformed_body_framing", "the body's framing is malformed (chunked encoding or Content-Length)"
    if "Content-Length" in text or "Transfer-Encoding" in text:
        return 400, "malformed_body_framing", "Content-Length or Transfer-Encoding is malformed"
    return 400, "malformed_request", "the request is not well-formed HTTP/1.1"


class IngressProtocol(RequestHandler):
    """One HTTP connection of the ingress (see the module docstring for what differs from aiohttp's)."""

    __slots__ = ("_rules", "_head_since", "_head_timer")

    def __init__(self, manager: Server, *, rules: ConnectionRules, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._rules = rules
        # When the head under way began (loop time), None between heads. One timer checks it
        # and is moved on, not cancelled and made again per request (a timer each cost ~5 us).
        self._head_since: float | None = None
        self._head_timer: asyncio.TimerHandle | None = None

    # -- the request head's deadline --------------------------------------------------------

    def _head_started(self) -> None:
        self._head_since = now = self._loop.time()
        if self._head_timer is None:
            self._head_timer = self._loop.call_at(now + self._rules.header_timeout_seconds, self._check_head)

    def _check_head(self) -> None:
        self._head_timer = None
        since = self._head_since
        if since is None:
            return  # no head under way: the next one starts a timer again
        due = since + self._rules.header_timeout_seconds
        if self._loop.time() < due:  # a later head than the one this timer was set for
            self._head_timer = self._loop.call_at(due, self._check_head)
            return
        self._head_timed_out()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._head_started()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._head_since = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Between requests (the protocol waits for the next one), a byte starts a new head.
        # While a handler runs, bytes are its body: the handler's deadline covers them.
        if self._head_since is None and self._waiter is not None and data:
            self._head_started()
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:  # a whole head (or a parser error) came in
            self._head_since = None

    def _head_timed_out(self) -> None:
        self._head_since = None
        transport = self.transport
        if transport is None or self._force_close or transport.is_closing():
            return
        timeout = self._rules.header_timeout_seconds
        body = _json_bytes(
            "request_timeout", f"no complete request head arrived within {timeout:g} s; the connection is closed"
        )
        transport.write(
            b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        self._rules.metrics.count_response(408)
        self._rules.metrics.count_timeout("head")
        log.info("closed a connection: no complete request head within %gs (status=408)", timeout)
        self.force_close()  # the transport flushes the 408 before it closes

    # -- answers ------------------------------------------------------------------------------

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        """Called by aiohttp for a request its parser refused (and, were the app's middleware
        bypassed, for a handler's exception): a JSON answer, one log line without request bytes."""
        if isinstance(exc, http_exceptions.HttpProcessingError):
            status, code, text = describe_parser_error(exc, self.max_field_size, self.max_headers)
            log.info("rejected a malformed request: status=%d error=%s (%s)", status, code, type(exc).__name__)
        else:
            code, text = "internal_error", "the ingress failed on this request; nothing was accepted"
            log.error(
                "unexpected %s outside the application's handlers (status=%d)",
                type(exc).__name__ if exc else "error",
                status,
            )
        if request.writer.output_size > 0:
            # Part of an answer is out already: nothing coherent can follow on this connection.
            raise ConnectionError("an answer was partly sent; closing the connection")
        response = web.Response(status=status, body=_json_bytes(code, text), content_type="application/json")
        response.force_close()
        return response

    def log_access(self, request: BaseRequest, response: web.StreamResponse, time: float | None) -> None:
        """aiohttp calls this once per answer, after writing it (or failing to: the client is
        gone); counting here costs no extra coroutine per request. There is no access log."""
        transport = self.transport
        if transport is None or transport.is_closing():
            self._rules.metrics.count_disconnect()
            return
        self._rules.metrics.count_response(response.status)
        if response.status == 408:
            # aiohttp would linger, reading what a slow client still sends for up to 10 s:
            # close now (the transport sends the answer first).
            self.force_close()


class IngressServer(Server):
    """aiohttp's low-level server, making `IngressProtocol` connections."""

    def __init__(
        self, handler: Callable[[BaseRequest], Awaitable[web.StreamResponse]], *, rules: ConnectionRules, **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        self.rules = rules

    def __call__(self) -> RequestHandler:
        return IngressProtocol(self, rules=self.rules, loop=self._loop, **self._kwargs)


class IngressRunner(web.AppRunner):
    """Serves an ingress app (`create_app`) with its connection rules.

    Bodies are never decompressed by aiohttp (`auto_decompress=False`): the
    ingress verifies and stores the bytes as sent, and refuses any
    Content-Encoding but identity itself.
    """

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("access_log", None)
        # aiohttp's keep-alive timer closes a connection idle between requests (and, since it is not
        # moved by bytes, one that trickles a head behind a complete pipelined request).
        kwargs.setdefault("keepalive_timeout", app[SETTINGS].ingress_idle_timeout_seconds)
        super().__init__(app, auto_decompress=False, **kwargs)

    async def _make_server(self) -> Server:
        base = await super()._make_server()  # runs the app's startup
        rules = ConnectionRules(
            header_timeout_seconds=self.app[SETTINGS].ingress_header_timeout_seconds,
            metrics=self.app[METRICS],
        )
        return IngressServer(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            rules=rules,
            **base._kwargs,  # debug, access log and handler arguments, as aiohttp assembled them
        )
