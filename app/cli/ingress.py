"""`hookstream ingress`: run the verified, durable webhook ingress."""

from __future__ import annotations

import argparse
import logging

from app.cli.common import CliError, load_settings, port, setup_logging
from app.instances import ConfigError

DESCRIPTION = """\
Run the ingress: an HTTP service that verifies webhook deliveries and publishes
them to Kafka before answering.

  POST /hooks/{plugin}/{instance}[/{route}]
       verify the signature with the instance's secret(s), then publish the raw
       body byte-exact to hookstream.deliveries keyed plugin/instance/deliveryId.
       202 {"deliveryId": ...} only after the broker acknowledged (acks=all);
       503 with Retry-After when it did not in time (the record may or may
       not be stored: a retry is safe, it is deduplicated); 401 bad or
       missing signature, 404 unknown plugin or instance, 413 over the body
       limit, 415 a Content-Encoding other than identity (bodies are verified
       and stored as sent), 408 a head or body that does not arrive in time,
       431 a header line over 8190 bytes or more than 128 headers, 400
       unreadable (malformed HTTP, a header value that is not UTF-8, a bad
       route segment). Every answer is JSON {"error", "message"}.
  POST /events   a producer domain event (Authorization: Bearer <token>),
                 published to hookstream.sync.control keyed by its sourceId.
                 Disabled (404) while HOOKSTREAM_EVENTS_TOKEN is unset.
                 422 for an event outside the models' bounds (README,
                 "Bounds for producers"), naming the field and the bound.
  GET  /healthz  200 while the process runs
  GET  /readyz   200 once the broker answers and the topics exist, else 503
  GET  /metrics  Prometheus metrics (per process)

The ingress refuses to start while its topics are missing: run
`hookstream topics apply` first.

Environment (HOOKSTREAM_*):
  KAFKA_BOOTSTRAP_SERVERS   broker(s), default 127.0.0.1:9092
  TOPIC_PREFIX              prepended to every topic name
  INSTANCES_FILE            TOML file with the plugin instances and their secrets
  INGRESS_HOST, INGRESS_PORT, INGRESS_PROCESSES   where and how many processes
  BODY_LIMIT_BYTES          largest accepted body (default 1 MiB)
  PUBLISH_TIMEOUT_SECONDS   how long to wait for the broker before answering 503
  RETRY_AFTER_SECONDS       the Retry-After sent with a 503
  PRODUCER_LINGER_MS, PRODUCER_MAX_BATCH_BYTES   producer batching
  EVENTS_TOKEN              bearer token that enables POST /events
  INGRESS_HEADER_TIMEOUT_SECONDS  time to send a whole request head (default 10)
  INGRESS_BODY_TIMEOUT_SECONDS    time for a body to arrive after its head (default 30)
  INGRESS_IDLE_TIMEOUT_SECONDS    a kept-alive connection idle this long is closed (default 75)
  GIT_ROOTS                 directories (":"-separated) git sources connected
                            through POST /events must lie under; unset: any path
  LOG_LEVEL                 debug, info, warning, error
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingress",
        help="run the webhook ingress (verify, publish with acks=all, answer)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", help="address to bind (overrides HOOKSTREAM_INGRESS_HOST)")
    p.add_argument("--port", type=port, help="port to bind, 0 for any free one (overrides HOOKSTREAM_INGRESS_PORT)")
    p.add_argument(
        "--processes",
        type=int,
        help="processes sharing the port through SO_REUSEPORT (overrides HOOKSTREAM_INGRESS_PROCESSES)",
    )
    p.set_defaults(func=cmd_ingress)


def cmd_ingress(args: argparse.Namespace) -> int:
    from app.ingress.app import StartupError
    from app.ingress.server import run_ingress
    from app.topology import MissingTopics

    settings = load_settings()
    overrides = {
        name: value
        for name, value in (
            ("ingress_host", args.host),
            ("ingress_port", args.port),
            ("ingress_processes", args.processes),
        )
        if value is not None
    }
    if not 1 <= overrides.get("ingress_processes", 1) <= 64:
        raise CliError("--processes must be between 1 and 64", 2)
    settings = settings.model_copy(update=overrides)
    try:
        instances = settings.instances()
    except ConfigError as exc:
        raise CliError(str(exc), 2) from None
    setup_logging(settings.log_level, settings, instances)
    # Through logging, not print: with HOOKSTREAM_LOG_FORMAT=json every line on stderr is JSON.
    log = logging.getLogger("hookstream.ingress")
    if not instances:
        log.warning(
            "hookstream ingress: no plugin instances configured (HOOKSTREAM_INSTANCES_FILE); "
            "every /hooks request will get 404"
        )

    def announce(urls: list[str]) -> None:
        log.info("hookstream ingress listening on %s (%d instance(s))", ", ".join(urls), len(instances))

    try:
        return run_ingress(settings, instances, announce)
    except (MissingTopics, StartupError) as exc:
        raise CliError(str(exc), 2) from None
    except OSError as exc:
        raise CliError(
            f"cannot listen on {settings.ingress_host}:{settings.ingress_port}: {exc.strerror or exc}", 2
        ) from None
