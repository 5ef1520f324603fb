"""The ingress as an aiohttp application: verify, name, publish durably, answer (docs/architecture.md, the ingress contract).

No business logic lives here: a plugin verifies and names a delivery, the codec
turns it into bytes, the publisher writes it with acks=all. A 2xx answer is
given only after the broker acknowledged the record; every error answer is JSON
`{"error": <code>, "message": <what was wrong>}`.

Secrets and signatures never reach a log line: we log the plugin, the instance,
the delivery id, the status and the byte count (rejections at info, accepted
deliveries at debug). An unexpected exception is answered 500 (JSON, counted)
and logged once with its traceback but not its message, which may quote the
request.

What the ingress refuses before it verifies anything: URL segments outside
their charset (404, or 400 for a route), a Content-Encoding other than identity
(415: the signature covers the bytes as sent, and they are stored as sent),
a header value that is not UTF-8 (400), a body that does not arrive within
`ingress_body_timeout_seconds` (408) or exceeds the limit (413). Connection-
level rules (parser rejections, the request head's deadline) are in
`app.ingress.protocol`, which serves this app.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import traceback
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from aiohttp import web
from aiokafka.errors import KafkaError
from pydantic import TypeAdapter, ValidationError

from app import codec
from app.events import Delivery, Record, SourceConnected, SourceUpdated, utcnow
from app.events.bounds import MAX_INSTANCE_LENGTH, MAX_ROUTE_LENGTH, InstanceName, PluginName, RouteName
from app.ingress.metrics import UNKNOWN_PLUGIN, IngressMetrics
from app.ingress.publisher import Publisher, PublishUnavailable, RecordTooLarge
from app.instances import InstanceConfig
from app.plugins import PLUGINS
from app.plugins.base import Plugin, UnreadableDelivery, VerificationError
from app.settings import Settings
from app.sources.roots import PathOutsideRoots, check_git_path
from app.topology import require_topics

log = logging.getLogger("hookstream.ingress")

DELIVERIES_TOPIC = "hookstream.deliveries"
CONTROL_TOPIC = "hookstream.sync.control"
REQUIRED_TOPICS = (DELIVERIES_TOPIC, CONTROL_TOPIC)

# The URL segments of /hooks/{plugin}/{instance}[/{route}]: the bounds the records carry them in.
_PLUGIN_SEGMENT = TypeAdapter(PluginName)
_INSTANCE_SEGMENT = TypeAdapter(InstanceName)
_ROUTE_SEGMENT = TypeAdapter(RouteName)


def _fits(segment: TypeAdapter[str], value: str) -> bool:
    try:
        segment.validate_python(value)
    except ValidationError:
        return False
    return True


SETTINGS = web.AppKey("settings", Settings)
PUBLISHER = web.AppKey("publisher", Publisher)
METRICS = web.AppKey("metrics", IngressMetrics)


class IngressError(Exception):
    """An answer other than 2xx: status, machine-readable code, human message, extra headers."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra


class StartupError(RuntimeError):
    """The ingress cannot start (broker unreachable); the message says where it looked."""


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def error_response(error: IngressError) -> web.Response:
    body = {"error": error.code, "message": error.message, **error.extra}
    response = json_response(error.status, body, error.headers)
    if error.status in (408, 413):
        # Do not keep reading an oversized or stalled upload on this connection: close it.
        response.force_close()
    return response


class ClientDisconnected(Exception):
    """The client closed the connection before its body arrived: there is no one to answer."""


async def read_limited_body(request: web.Request, limit: int, timeout: float) -> bytes:
    """The request body, or IngressError 413 once it is known to exceed `limit` (read no further),
    408 when it has not fully arrived within `timeout` seconds; ClientDisconnected if the client left."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise IngressError(413, "body_too_large", f"the body is {declared} bytes; the limit is {limit} bytes")
    if request.content.is_eof():
        # The whole body came with the head (the common case): no deadline to arm.
        return await _read_body(request, limit)
    try:
        async with asyncio.timeout(timeout):
            return await _read_body(request, limit)
    except TimeoutError:
        raise IngressError(
            408, "request_timeout", f"the body did not arrive within {timeout:g} s; the connection is closed"
        ) from None


async def _read_body(request: web.Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = await request.content.readany()
        except ConnectionResetError:
            raise ClientDisconnected() from None
        except web.RequestPayloadError:
            raise IngressError(
                400, "malformed_body_framing", "the body ended early or its chunked framing is malformed"
            ) from None
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise IngressError(413, "body_too_large", f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def plain_headers(request: web.Request) -> dict[str, str]:
    """The request's headers with lower-cased names; IngressError 400 for a value that is not UTF-8.

    aiohttp decodes header bytes as UTF-8 with surrogate escapes: such a value would
    fail later, wherever it is compared, encoded or stored. Only the name is quoted.
    """
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise IngressError(
                    400, "invalid_header", f"the value of the {name} header is not valid UTF-8"
                ) from None
        headers[name.lower()] = value
    return headers


def refuse_content_encoding(request: web.Request) -> None:
    """IngressError 415 for any Content-Encoding but identity: bodies are verified and stored as sent."""
    encoding = request.headers.get("Content-Encoding")
    if encoding is not None and encoding.strip().lower() not in ("", "identity"):
        raise IngressError(
            415,
            "unsupported_content_encoding",
            "Content-Encoding must be identity: the ingress verifies and stores the body exactly as sent, "
            "so send it uncompressed",
        )


def _bearer_token(headers: Mapping[str, str]) -> str | None:
    header = headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


class DeliveryIngress:
    """The request handlers, bound to one app's settings, instances, publisher and metrics."""

    def __init__(
        self,
        settings: Settings,
        instances: Mapping[tuple[str, str], InstanceConfig],
        plugins: Mapping[str, Plugin],
        publisher: Publisher,
        metrics: IngressMetrics,
    ) -> None:
        self.settings = settings
        self.instances = dict(instances)
        self.plugins = dict(plugins)
        self.publisher = publisher
        self.metrics = metrics
        self.deliveries_topic = settings.topic(DELIVERIES_TOPIC)
        self.control_topic = settings.topic(CONTROL_TOPIC)
        self.required_topics = {settings.topic(t) for t in REQUIRED_TOPICS}
        self.events_token = settings.events_token.get_secret_value().encode() if settings.events_token else None
        self.git_roots = settings.git_root_paths()

    # POST /hooks/{plugin}/{instance}[/{route}]
    async def receive_delivery(self, request: web.Request) -> web.Response:
        plugin_name = request.match_info["plugin"]
        label = plugin_name if plugin_name in self.plugins else UNKNOWN_PLUGIN
        try:
            response = await self._receive_delivery(request, plugin_name)
        except ClientDisconnected:
            log.debug("client of plugin=%s went away before its body arrived", label)
            return json_response(400, {"error": "client_disconnected", "message": "the connection closed mid-body"})
        except IngressError as error:
            response = self._rejected(error)
            # The instance and the message may echo URL text: %r keeps a log line one line.
            instance = request.match_info["instance"]
            log.info(
                "rejected plugin=%s instance=%.130r status=%d error=%s message=%.300r",
                label,
                instance if _fits(_INSTANCE_SEGMENT, instance) else "?",
                error.status,
                error.code,
                error.message,
            )
        self.metrics.count_delivery(label, response.status)
        return response

    async def _receive_delivery(self, request: web.Request, plugin_name: str) -> web.Response:
        instance_id = request.match_info["instance"]
        route = request.match_info.get("route")
        # Configured names are valid by construction: the charsets are checked only to word a 404
        # without echoing a segment that is not a name.
        plugin = self.plugins.get(plugin_name)
        if plugin is None:
            known = ", ".join(sorted(self.plugins))
            if not _fits(_PLUGIN_SEGMENT, plugin_name):
                raise IngressError(
                    404,
                    "unknown_plugin",
                    f"the plugin segment is not a plugin name (lower-case letters, digits and -); known: {known}",
                )
            raise IngressError(404, "unknown_plugin", f"no plugin named {plugin_name!r}; known: {known}")
        instance = self.instances.get((plugin_name, instance_id))
        if instance is None:
            if not _fits(_INSTANCE_SEGMENT, instance_id):
                raise IngressError(
                    404,
                    "unknown_instance",
                    f"the instance segment is not an instance id (1 to {MAX_INSTANCE_LENGTH} letters, digits and . _ -)",
                )
            raise IngressError(
                404, "unknown_instance", f"no {plugin_name} instance named {instance_id!r} is configured"
            )
        if route is not None and not _fits(_ROUTE_SEGMENT, route):
            raise IngressError(
                400, "invalid_route", f"the route segment must be 1 to {MAX_ROUTE_LENGTH} letters, digits and . _ ~ -"
            )
        refuse_content_encoding(request)
        headers = plain_headers(request)

        raw = await read_limited_body(
            request, self.settings.body_limit_bytes, self.settings.ingress_body_timeout_seconds
        )
        self.metrics.count_bytes(plugin_name, len(raw))
        try:
            verified = plugin.verify(raw, headers, instance, route, time.time())
        except VerificationError as exc:
            raise IngressError(401, "verification_failed", exc.reason) from None
        except UnreadableDelivery as exc:
            raise IngressError(400, "unreadable_delivery", exc.reason) from None

        try:
            delivery = Delivery(
                delivery_id=verified.delivery_id,
                plugin=plugin_name,
                instance=instance_id,
                route=route,
                received_at=utcnow(),
                headers=verified.headers,
                body=raw,
            )
        except ValidationError as exc:  # e.g. a kept header over its bound: authentic, but not recordable
            raise IngressError(
                400, "unreadable_delivery", f"the delivery cannot be recorded: it {codec.decode_error(exc)}"
            ) from None
        await self._publish(DELIVERIES_TOPIC, self.deliveries_topic, delivery.key, codec.encode(delivery))
        # Debug, not info: a line per accepted delivery cost ~20 % of the ingress's CPU in
        # bench/ingress.py. Rejections are logged at info, and /metrics counts everything.
        log.debug(
            "accepted plugin=%s instance=%s delivery=%s status=202 bytes=%d",
            plugin_name,
            instance_id,
            delivery.delivery_id,
            len(raw),
        )
        return json_response(202, {"deliveryId": delivery.delivery_id})

    # POST /events
    async def receive_event(self, request: web.Request) -> web.Response:
        try:
            response = await self._receive_event(request)
        except ClientDisconnected:
            log.debug("an events client went away before its body arrived")
            return json_response(400, {"error": "client_disconnected", "message": "the connection closed mid-body"})
        except IngressError as error:
            response = self._rejected(error)
            log.info("rejected event status=%d error=%s message=%.300r", error.status, error.code, error.message)
        self.metrics.count_event(response.status)
        return response

    async def _receive_event(self, request: web.Request) -> web.Response:
        if self.events_token is None:
            raise IngressError(
                404, "events_disabled", "POST /events is disabled: set HOOKSTREAM_EVENTS_TOKEN to enable it"
            )
        headers = plain_headers(request)
        token = _bearer_token(headers)
        if token is None:
            raise IngressError(
                401,
                "missing_token",
                "send the events token as `Authorization: Bearer <token>`",
                {"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(token.encode(), self.events_token):
            raise IngressError(
                401,
                "invalid_token",
                "the bearer token is not the configured events token",
                {"WWW-Authenticate": "Bearer"},
            )
        if not _is_json(request.content_type):
            raise IngressError(415, "unsupported_media_type", "POST /events takes Content-Type: application/json")
        refuse_content_encoding(request)

        raw = await read_limited_body(
            request, self.settings.body_limit_bytes, self.settings.ingress_body_timeout_seconds
        )
        self.metrics.count_bytes("events", len(raw))
        try:
            event = codec.decode_producer_event(raw)
        except codec.DecodeError as exc:
            if not exc.errors:
                raise IngressError(400, "invalid_json", f"the body is {exc}") from None
            raise IngressError(422, "invalid_event", f"the event {exc}", errors=exc.errors) from None
        self._check_git_path(event)

        key = event.source_id  # every control event is keyed by its source
        await self._publish(CONTROL_TOPIC, self.control_topic, key, codec.encode(event))
        log.debug("accepted event type=%s key=%s status=202 bytes=%d", event.type, key, len(raw))
        return json_response(202, {"type": event.type, "key": key})

    def _rejected(self, error: IngressError) -> web.Response:
        if error.status == 408:
            self.metrics.count_timeout("body")
        return error_response(error)

    def _check_git_path(self, event: Record) -> None:
        """With HOOKSTREAM_GIT_ROOTS set, a git source's path (connected, or changed by an
        update) must lie under a root: 422 naming the roots. The git adapter checks again."""
        if not self.git_roots:
            return
        if isinstance(event, SourceConnected) and event.source_type == "git":
            path = event.config.get("path")
        elif isinstance(event, SourceUpdated) and "path" in event.config:
            path = event.config["path"]
        else:
            return
        if not isinstance(path, str) or not path:
            raise IngressError(
                422, "invalid_event", "the event's config.path must be the git repository's absolute path"
            )
        try:
            check_git_path(path, self.git_roots)
        except PathOutsideRoots as exc:
            raise IngressError(422, "git_path_not_allowed", str(exc)) from None

    async def _publish(self, logical_topic: str, topic: str, key: str, value: bytes) -> None:
        started = time.perf_counter()
        try:
            await self.publisher.publish(topic, codec.encode_key(key), value)
        except RecordTooLarge as exc:
            log.warning("publish to %s refused: %s", topic, exc)
            raise IngressError(
                413,
                "record_too_large",
                f"the delivery is within the body limit but too large for the broker ({exc}); "
                "the operator must raise the topic's max.message.bytes or lower HOOKSTREAM_BODY_LIMIT_BYTES",
            ) from None
        except PublishUnavailable as exc:
            log.warning("publish to %s failed: %s", topic, exc)
            raise IngressError(
                503,
                "broker_unavailable",
                f"the broker did not confirm the write ({exc}): the delivery may or may not have been stored. "
                "Retrying is safe: a retry of the same delivery is deduplicated",
                {"Retry-After": str(self.settings.retry_after_seconds)},
            ) from None
        self.metrics.observe_publish(logical_topic, time.perf_counter() - started)

    # GET /healthz, /readyz, /metrics
    async def healthz(self, request: web.Request) -> web.Response:
        return json_response(200, {"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        try:
            existing = await self.publisher.existing_topics()
        except PublishUnavailable as exc:
            return error_response(
                IngressError(503, "not_ready", str(exc), {"Retry-After": str(self.settings.retry_after_seconds)})
            )
        except RuntimeError:  # the publisher has not started (yet)
            return error_response(IngressError(503, "not_ready", "the Kafka producer has not started yet"))
        missing = sorted(self.required_topics - existing)
        if missing:
            return error_response(
                IngressError(503, "not_ready", f"topic(s) missing: {', '.join(missing)}; run: hookstream topics apply")
            )
        return json_response(200, {"status": "ready"})

    async def metrics_view(self, request: web.Request) -> web.Response:
        response = web.Response(body=self.metrics.render())
        response.headers["Content-Type"] = self.metrics.content_type
        return response


@web.middleware
async def json_errors(request: web.Request, handler) -> web.StreamResponse:
    """Every answer aiohttp itself would give as text (404 path, 405 method, a crash) becomes JSON."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(exc.status, "http_error")
        message = exc.text or exc.reason
        if exc.status == 405:
            message = f"{request.method} is not allowed on {request.path}; allowed: {exc.headers.get('Allow', '')}"
        elif exc.status == 404:
            message = f"nothing at {request.path}; deliveries go to POST /hooks/{{plugin}}/{{instance}}"
        extra = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after", "www-authenticate")}
        return error_response(IngressError(exc.status, code, message, extra))
    except Exception as exc:  # noqa: BLE001 - the last answer left: a JSON 500, counted and logged
        # Once, with the traceback but not the exception's message: that may quote the request.
        route = request.match_info.route.resource
        where = route.canonical if route is not None else "an unrouted path"
        log.error(
            "unexpected %s on %s %s (answered 500)\n%s",
            type(exc).__name__,
            request.method,
            where,
            "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
        )
        return error_response(
            IngressError(500, "internal_error", "the ingress failed on this request; nothing was accepted")
        )


def create_app(
    settings: Settings,
    instances: Mapping[tuple[str, str], InstanceConfig],
    publisher: Publisher | None = None,
    plugins: Mapping[str, Plugin] | None = None,
) -> web.Application:
    """Build the ingress app. Nothing connects until the app starts.

    At startup the app checks that its topics exist (or refuses, naming
    `hookstream topics apply`) and starts its own publisher. A `publisher`
    passed in is the caller's to start and stop.
    """
    plugins = PLUGINS if plugins is None else plugins
    for (plugin_name, instance_id), instance in instances.items():
        plugin = plugins.get(plugin_name)
        if plugin is None:
            raise StartupError(f"instance {plugin_name}/{instance_id}: no plugin named {plugin_name!r}")
        validate_options = getattr(plugin, "validate_options", None)
        if validate_options is not None:
            validate_options(instance)

    owns_publisher = publisher is None
    publisher = Publisher(settings) if publisher is None else publisher
    metrics = IngressMetrics()
    ingress = DeliveryIngress(settings, instances, plugins, publisher, metrics)

    # Streamed reads enforce the limit ourselves; this bounds anything that calls request.read().
    app = web.Application(client_max_size=settings.body_limit_bytes + 1, middlewares=[json_errors])
    app[SETTINGS] = settings
    app[PUBLISHER] = publisher
    app[METRICS] = metrics
    app.router.add_post("/hooks/{plugin}/{instance}", ingress.receive_delivery)
    app.router.add_post("/hooks/{plugin}/{instance}/{route}", ingress.receive_delivery)
    app.router.add_post("/events", ingress.receive_event)
    app.router.add_get("/healthz", ingress.healthz)
    app.router.add_get("/readyz", ingress.readyz)
    app.router.add_get("/metrics", ingress.metrics_view)

    async def connect_to_kafka(app: web.Application) -> AsyncIterator[None]:
        if ingress.git_roots:
            log.info("git sources must lie under HOOKSTREAM_GIT_ROOTS: %s", ", ".join(ingress.git_roots))
        else:
            log.warning(
                "git source paths are unrestricted: HOOKSTREAM_GIT_ROOTS is unset, so a producer may "
                "connect a git source at any path the workers can read"
            )
        try:
            await require_topics(settings, list(REQUIRED_TOPICS))
        except (KafkaError, OSError) as exc:
            raise StartupError(f"cannot reach the Kafka broker at {settings.kafka_bootstrap_servers}: {exc}") from None
        if owns_publisher:
            try:
                await publisher.start()
            except PublishUnavailable as exc:
                raise StartupError(str(exc)) from None
        yield
        if owns_publisher:
            await publisher.stop()

    app.cleanup_ctx.append(connect_to_kafka)
    return app
