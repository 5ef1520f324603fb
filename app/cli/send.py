"""`hookstream send delivery | event`: the producer CLI, from a file or stdin.

`send delivery` signs the bytes with the configured instance's secret, exactly
as the provider would, and posts them to the ingress. `send event` posts a
producer domain event to `POST /events`, or with `--kafka` validates it and
produces it straight to the control topic. Each prints the answer and exits
non-zero on anything but a 2xx, with the server's message.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from app.cli.common import CliError, load_settings, run
from app.instances import PLUGINS
from app.settings import Settings

CONTROL_TOPIC = "hookstream.sync.control"
HTTP_TIMEOUT_SECONDS = 30.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "send",
        help="send a signed delivery or a domain event (producer CLI)",
        description="Send a webhook delivery or a producer domain event from a file or stdin ('-').",
    )
    ssub = p.add_subparsers(dest="send_command", metavar="WHAT", required=True)

    d = ssub.add_parser(
        "delivery",
        help="sign a body with an instance's secret and post it to the ingress",
        description="Sign FILE's bytes with the secret of the configured instance (HOOKSTREAM_INSTANCES_FILE), "
        "the way the provider would, and POST them to /hooks/PLUGIN/INSTANCE[/ROUTE]. "
        "Prints the ingress's answer; exits 1 on anything but a 2xx.",
    )
    d.add_argument("--plugin", required=True, choices=PLUGINS, help="the instance's plugin")
    d.add_argument("--instance", required=True, help="the instance id in the instances file")
    d.add_argument("--event", help="provider event name, for plugins that send one (GitHub: X-GitHub-Event)")
    d.add_argument("--route", help="optional last path segment: /hooks/PLUGIN/INSTANCE/ROUTE")
    d.add_argument(
        "--delivery-id",
        help="the provider's delivery id header to send; without it the id is the sha256 of the body "
        "(plugin, instance, route), so sending the same FILE again is a duplicate",
    )
    d.add_argument("--content-type", help="Content-Type to send instead of the plugin's")
    d.add_argument("--url", help="ingress base URL (default http://HOOKSTREAM_INGRESS_HOST:HOOKSTREAM_INGRESS_PORT)")
    d.add_argument("file", metavar="FILE", help="the body, byte-exact; '-' reads stdin")
    d.set_defaults(func=cmd_send_delivery)

    e = ssub.add_parser(
        "event",
        help="send a producer domain event (sync.requested, source.connected, ...)",
        description="Send one producer domain event (JSON) to the ingress's POST /events with "
        "HOOKSTREAM_EVENTS_TOKEN, or with --kafka validate it here and produce it straight to the "
        "control topic, keyed by its source_id. Exits 1 when it is not accepted.",
    )
    where = e.add_mutually_exclusive_group()
    where.add_argument(
        "--url", help="ingress base URL (default http://HOOKSTREAM_INGRESS_HOST:HOOKSTREAM_INGRESS_PORT)"
    )
    where.add_argument("--kafka", action="store_true", help="produce to hookstream.sync.control directly (acks=all)")
    e.add_argument("file", metavar="FILE", help="the event as JSON; '-' reads stdin")
    e.set_defaults(func=cmd_send_event)


def read_input(path: str) -> tuple[bytes, str]:
    """The bytes of FILE (or stdin for '-') and a name for messages."""
    if path == "-":
        return sys.stdin.buffer.read(), "stdin"
    try:
        return Path(path).read_bytes(), path
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror or exc}") from None


def ingress_url(settings: Settings, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    host = settings.ingress_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.ingress_port}"


def _describe_failure(status: int, body: bytes) -> str:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = None
    if isinstance(answer, dict) and "message" in answer:
        message = f"the ingress answered {status} {answer.get('error', '')}: {answer['message']}"
        for error in answer.get("errors", [])[:10]:
            where = ".".join(str(p) for p in error.get("loc", [])) or "<root>"
            message += f"\n  {where}: {error.get('msg')}"
        return message
    text = body.decode("utf-8", "replace").strip()[:500]
    return f"the ingress answered {status}: {text or '(empty body)'}"


async def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_SECONDS)) as session:
            async with session.post(url, data=body, headers=headers) as response:
                return response.status, await response.read()
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror if exc.os_error and exc.os_error.strerror else str(exc)
        raise CliError(
            f"cannot reach the ingress at {url}: {reason} (is `hookstream dev` or `hookstream ingress` running "
            "there? --url names another address)"
        ) from None
    except aiohttp.InvalidURL:
        raise CliError(f"not a usable URL: {url}", 2) from None
    except aiohttp.ClientError as exc:
        raise CliError(f"the request to {url} failed: {exc}") from None
    except TimeoutError:
        raise CliError(f"the ingress at {url} did not answer within {HTTP_TIMEOUT_SECONDS:g}s") from None


def _answer(status: int, body: bytes) -> int:
    if not 200 <= status < 300:
        raise CliError(_describe_failure(status, body))
    print(body.decode("utf-8", "replace"))
    return 0


def cmd_send_delivery(args: argparse.Namespace) -> int:
    from app.plugins import get_plugin

    settings = load_settings()
    raw, source = read_input(args.file)
    instances = settings.instances()
    instance = instances.get((args.plugin, args.instance))
    if instance is None:
        configured = ", ".join(f"{p}/{i}" for p, i in sorted(instances)) or "none"
        where = settings.instances_file or "HOOKSTREAM_INSTANCES_FILE (not set)"
        raise CliError(f"no {args.plugin} instance {args.instance!r} in {where}; configured: {configured}", 2)
    headers = get_plugin(args.plugin).sign(raw, instance, time.time(), delivery_id=args.delivery_id, event=args.event)
    if args.content_type:
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        headers["Content-Type"] = args.content_type
    path = f"/hooks/{args.plugin}/{args.instance}" + (f"/{args.route}" if args.route else "")
    status, body = run(_post(ingress_url(settings, args.url) + path, raw, headers))
    return _answer(status, body)


def _parse_json(raw: bytes, source: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{source}: not valid JSON: {exc}") from None


def cmd_send_event(args: argparse.Namespace) -> int:
    settings = load_settings()
    raw, source = read_input(args.file)
    data = _parse_json(raw, source)
    if args.kafka:
        from app import codec
        from app.events import ProducerEvent

        try:
            event = codec.validate(ProducerEvent, data)
        except codec.DecodeError as exc:
            raise CliError(f"{source}: not a producer event: {exc}") from None
        print(orjson.dumps(produce_event(settings, event)).decode())
        return 0
    print(post_event(settings, args.url, raw).decode("utf-8", "replace"))
    return 0


def post_event(settings: Settings, url: str | None, raw: bytes) -> bytes:
    """POST a producer event (JSON bytes) to the ingress's /events with the token; the 2xx answer's body."""
    if settings.events_token is None:
        raise CliError("HOOKSTREAM_EVENTS_TOKEN is not set: POST /events needs it (or send with --kafka)", 2)
    headers = {
        "Authorization": f"Bearer {settings.events_token.get_secret_value()}",
        "Content-Type": "application/json",
    }
    status, body = run(_post(ingress_url(settings, url) + "/events", raw, headers))
    if not 200 <= status < 300:
        raise CliError(_describe_failure(status, body))
    return body


def produce_event(settings: Settings, event: Any) -> dict[str, Any]:
    """Produce a producer event straight to the control topic, keyed by its source (acks=all);
    where it was written."""
    from aiokafka.errors import KafkaError

    from app import codec
    from app.ingress.publisher import Publisher, PublishUnavailable
    from app.topology import MissingTopics, require_topics

    async def produce() -> dict[str, Any]:
        # Never let a missing topic be auto-created with the broker's defaults.
        await require_topics(settings, [CONTROL_TOPIC])
        publisher = Publisher(settings, client_id="hookstream-send")
        await publisher.start()
        try:
            metadata = await publisher.publish(
                settings.topic(CONTROL_TOPIC), codec.encode_key(event.source_id), codec.encode(event)
            )
        finally:
            await publisher.stop()
        return {
            "type": event.type,
            "key": event.source_id,
            "topic": metadata.topic,
            "partition": metadata.partition,
            "offset": metadata.offset,
        }

    try:
        return run(produce())
    except MissingTopics as exc:
        raise CliError(str(exc), 2) from None
    except PublishUnavailable as exc:
        raise CliError(f"not produced: {exc}") from None
    except (KafkaError, OSError) as exc:
        raise CliError(f"cannot reach the Kafka broker at {settings.kafka_bootstrap_servers}: {exc}") from None
