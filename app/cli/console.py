"""`hookstream console`: the web console and its JSON API, on the read model."""

from __future__ import annotations

import argparse
import ipaddress
import socket

from app.cli.common import CliError, load_settings, port, setup_logging

DESCRIPTION = """\
Serve the web console: server-rendered pages (no JavaScript build, nothing from
the network) and the same data as JSON under /api/.

  /                 overview: deliveries received / duplicate / routed / ignored /
                    dead-lettered over the last 15 minutes, syncs running and
                    queued, consumer lag per stage, open dead letters
  /sources          each source: idle, running (with its job's progress) or
                    queued, and its last result
  /jobs             jobs (?status=&source=), /jobs/JOB: its requests, batches, counts
  /deliveries       the delivery ledger (?q=ID&plugin=&instance=&outcome=&minutes=)
  /deliveries/ID    the trace of a delivery, request or job (`hookstream trace`)
  /dlq              open dead letters; redrive needs the write token

JSON: /api/overview, /api/sources, /api/jobs, /api/jobs/JOB, /api/deliveries,
/api/deliveries/ID (= /api/trace/ID), /api/dlq, POST /api/dlq/ID/redrive.

Access: bound to 127.0.0.1 by default (HOOKSTREAM_CONSOLE_HOST/PORT). Bound
elsewhere it needs HOOKSTREAM_CONSOLE_TOKEN, and every request must carry it
(Authorization: Bearer TOKEN, or open /?token=TOKEN once: a cookie keeps it).
Redriving a dead letter needs HOOKSTREAM_CONSOLE_WRITE_TOKEN (the form asks for
it; the API takes it as the bearer token); without it redrive is disabled.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "console",
        help="serve the web console and its JSON API (read model, lag, traces)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", help="address to bind (overrides HOOKSTREAM_CONSOLE_HOST; default 127.0.0.1)")
    p.add_argument("--port", type=port, help="port (overrides HOOKSTREAM_CONSOLE_PORT; default 8090)")
    p.set_defaults(func=cmd_console)


def is_loopback(host: str) -> bool:
    """Only loopback addresses (and names that resolve to nothing else); "" and 0.0.0.0 are not."""
    if host == "localhost":
        return True
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


def cmd_console(args: argparse.Namespace) -> int:
    from aiohttp import web

    from app.console.app import build_app
    from app.embedded import tansu_quirks

    settings = load_settings()
    updates = {k: v for k, v in (("console_host", args.host), ("console_port", args.port)) if v is not None}
    settings = settings.model_copy(update=updates)
    if not is_loopback(settings.console_host) and settings.console_token is None:
        raise CliError(
            f"the console would serve {settings.console_host} without a token: set HOOKSTREAM_CONSOLE_TOKEN "
            "(every request must then carry it), or bind 127.0.0.1",
            2,
        )
    setup_logging(settings.log_level, settings)
    tansu_quirks.install(settings)
    try:
        web.run_app(
            build_app(settings),
            host=settings.console_host,
            port=settings.console_port,
            print=None,
            access_log=None,
            handle_signals=True,
        )
    except OSError as exc:
        raise CliError(
            f"cannot listen on {settings.console_host}:{settings.console_port}: {exc.strerror or exc}"
        ) from None
    return 0
