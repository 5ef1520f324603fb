"""`hookstream worker`: the Faust worker running every agent."""

from __future__ import annotations

import argparse
import asyncio
import logging

from app import topology
from app.cli.common import CliError, fixed_port, load_settings, setup_logging
from app.logs import LEVELS

HELP = """\
Run the Faust worker: deduplicate_deliveries (and, as they land, the sync
agents). Run several for scale: they join one consumer group
(HOOKSTREAM_WORKER_ID, prefixed by HOOKSTREAM_TOPIC_PREFIX) and share the
partitions. State lives in RocksDB under HOOKSTREAM_WORKER_DATA_DIR and is
rebuilt from its changelog topic when that directory is lost.

Reads: HOOKSTREAM_KAFKA_BOOTSTRAP_SERVERS, HOOKSTREAM_TOPIC_PREFIX,
HOOKSTREAM_INSTANCES_FILE, HOOKSTREAM_DATABASE_URL, HOOKSTREAM_WORKER_*.
Refuses to start when a topic it needs is missing (run `hookstream topics apply`).
With HOOKSTREAM_GIT_ROOTS set (directories separated by ":"), a git source whose
path does not resolve to a place under one of them fails its syncs, saying so.
Serves Prometheus counters at http://HOOKSTREAM_WORKER_WEB_HOST:PORT/metrics.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker",
        help="run the stream worker (all agents)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--web-port",
        type=fixed_port,
        help="port of the worker's web server: /metrics, /readyz (overrides HOOKSTREAM_WORKER_WEB_PORT; default 6066)",
    )
    p.add_argument("--data-dir", help="RocksDB directory (default HOOKSTREAM_WORKER_DATA_DIR)")
    p.add_argument(
        "-l",
        "--loglevel",
        default=None,
        type=str.lower,
        choices=LEVELS,
        help="log level (default HOOKSTREAM_LOG_LEVEL)",
    )
    p.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = load_settings()
    updates = {}
    if args.web_port is not None:
        updates["worker_web_port"] = args.web_port
    if args.data_dir:
        updates["worker_data_dir"] = args.data_dir
    if updates:
        settings = settings.model_copy(update=updates)
    level = args.loglevel or settings.log_level
    instances = settings.instances()
    setup_logging(level, settings, instances)
    from app.stream.app import WORKER_TOPICS, create_worker

    try:
        asyncio.run(topology.require_topics(settings, WORKER_TOPICS))
    except topology.MissingTopics as exc:
        raise CliError(str(exc)) from None
    asyncio.set_event_loop(asyncio.new_event_loop())
    worker = create_worker(settings, instances)
    import faust

    for name in ("aiokafka", "faust", "mode"):
        logging.getLogger(name).setLevel(
            max(logging.getLogger(name).getEffectiveLevel(), logging.WARNING if level != "debug" else logging.DEBUG)
        )
    from app import logs

    # Faust sets up logging itself: from the same configuration (format, masked secrets).
    config = logs.dict_config(level, settings.log_format, logs.secrets_of(settings, instances))
    faust.Worker(
        worker.app, loglevel=level, console_port=0, redirect_stdouts=False, logging_config=config
    ).execute_from_commandline()
    return 0
