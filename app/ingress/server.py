"""Running the ingress: one process, or several processes sharing one port (SO_REUSEPORT).

`serve` runs one app inside the caller's event loop until `stop` is set (used by
`hookstream dev` and the tests). `run_ingress` is the blocking entry point of
`hookstream ingress`: with `ingress_processes` > 1 the parent forks that many
processes, each with its own event loop, producer and listening socket on the
same port; the kernel spreads connections over them. The parent only
supervises: Ctrl-C or SIGTERM stops every process, and a process that dies
stops the others (a half-sized ingress should be restarted, not hidden).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping

from aiohttp import web

from app.ingress.app import StartupError, create_app
from app.ingress.protocol import IngressRunner
from app.instances import InstanceConfig
from app.settings import Settings
from app.topology import MissingTopics

log = logging.getLogger("hookstream.ingress")

# How long a stopping process waits for requests in flight (their publishes) to finish.
SHUTDOWN_TIMEOUT_SECONDS = 15.0


async def serve(
    settings: Settings,
    instances: Mapping[tuple[str, str], InstanceConfig],
    stop: asyncio.Event,
    on_listening: Callable[[list[str]], None] | None = None,
    reuse_port: bool = False,
) -> None:
    """Run the ingress until `stop` is set. Startup errors (missing topics, no broker) propagate."""
    app = create_app(settings, instances)
    runner = IngressRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
    await runner.setup()
    try:
        site = web.TCPSite(
            runner, settings.ingress_host, settings.ingress_port, reuse_port=reuse_port or None, backlog=1024
        )
        await site.start()
        urls = [f"http://{host}:{port}" for host, port, *_ in runner.addresses]
        if on_listening is not None:
            on_listening(urls)
        await stop.wait()
    finally:
        await runner.cleanup()


async def serve_until_signalled(
    settings: Settings,
    instances: Mapping[tuple[str, str], InstanceConfig],
    on_listening: Callable[[list[str]], None] | None = None,
    reuse_port: bool = False,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await serve(settings, instances, stop, on_listening, reuse_port)


def run_ingress(
    settings: Settings,
    instances: Mapping[tuple[str, str], InstanceConfig],
    on_listening: Callable[[list[str]], None] | None = None,
) -> int:
    """Blocking: serve until Ctrl-C/SIGTERM. Returns the exit status."""
    if settings.ingress_processes == 1:
        asyncio.run(serve_until_signalled(settings, instances, on_listening))
        return 0
    return _supervise(settings, instances, on_listening)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _process_main(settings: Settings, instances: Mapping[tuple[str, str], InstanceConfig], index: int) -> None:
    # Forked before the parent installed its handlers; the child stops on SIGINT or SIGTERM.
    # A startup failure (the broker or a topic gone since the parent checked, the port taken)
    # is one line; anything else is a bug, and multiprocessing prints its traceback. Either
    # way the parent reports this process's death and stops the others.
    try:
        asyncio.run(serve_until_signalled(settings, instances, reuse_port=True))
    except (MissingTopics, StartupError, OSError) as exc:
        print(f"hookstream ingress[{index}] pid {os.getpid()}: {exc}", file=sys.stderr)
        sys.exit(2)


def _supervise(
    settings: Settings,
    instances: Mapping[tuple[str, str], InstanceConfig],
    on_listening: Callable[[list[str]], None] | None,
) -> int:
    count = settings.ingress_processes
    if settings.ingress_port == 0:
        # Every process must bind the same port: choose it once, here.
        settings = settings.model_copy(update={"ingress_port": _free_port(settings.ingress_host)})
    # Fail before forking when the topics are missing or the broker is unreachable: one clear error.
    asyncio.run(_check_startup(settings, instances))

    context = multiprocessing.get_context("fork")
    processes = [
        context.Process(
            target=_process_main, args=(settings, instances, i), name=f"hookstream-ingress-{i}", daemon=False
        )
        for i in range(count)
    ]
    for process in processes:
        process.start()

    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        if on_listening is not None:
            on_listening(
                [
                    f"http://{settings.ingress_host}:{settings.ingress_port} ({count} processes, pids {', '.join(str(p.pid) for p in processes)})"
                ]
            )
        while not stopping:
            ended = multiprocessing.connection.wait([p.sentinel for p in processes], timeout=0.5)
            if ended and not stopping:
                for process in processes:
                    if process.sentinel in ended:
                        # The sentinel closes a moment before the process can be reaped: join, not poll.
                        process.join(5)
                        log.error(
                            "ingress process %s (pid %s) exited with %s; stopping the others",
                            process.name,
                            process.pid,
                            process.exitcode,
                        )
                status = 1
                break
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: the child finishes its requests in flight
        for process in processes:
            process.join(SHUTDOWN_TIMEOUT_SECONDS + 5)
            if process.is_alive():
                log.error("ingress process %s (pid %s) did not stop; killing it", process.name, process.pid)
                process.kill()
                process.join(5)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return status


async def _check_startup(settings: Settings, instances: Mapping[tuple[str, str], InstanceConfig]) -> None:
    """Run the app's startup checks once (topics exist, broker reachable, options valid), then close."""
    app = create_app(settings, instances)
    runner = IngressRunner(app, handle_signals=False)
    await runner.setup()
    await runner.cleanup()
