"""The ingress against hostile and clumsy clients, on the real broker, served as `hookstream ingress` serves it.

Raw sockets send what no well-behaved client library would: NUL bytes and
bytes that are not UTF-8 in headers, over-long lines, too many headers, broken
chunks, heads and bodies trickled byte by byte, connections dropped mid-body.
Every answer must be the JSON contract, counted in /metrics, and nothing the
client sent may reach a log line.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import logging
import re
import time
import zlib
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web
from pydantic import SecretStr

from app import codec
from app.events import Delivery
from app.ingress.app import create_app
from app.ingress.protocol import IngressRunner
from app.instances import parse_instances
from app.plugins import PLUGINS
from app.plugins.github import GitHub
from tests.integration.test_ingress import Ingress, records_on
from tests.support.services import wait_until

GITHUB_SECRET = "hostile-github-secret"
LINEAR_SECRET = "hostile-linear-secret"
EVENTS_TOKEN = "hostile-events-token"
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.0

SOURCE_CONNECTED = {
    "type": "source.connected",
    "source_id": "git:demo",
    "occurred_at": "2024-01-01T00:00:00Z",
    "source_type": "git",
    "name": "demo",
    "config": {"path": "/srv/repos/demo"},
}
SYNC_REQUESTED = {
    "type": "sync.requested",
    "source_id": "git:demo",
    "occurred_at": "2024-01-01T00:00:00Z",
    "request_id": "r-1",
    "mode": "incremental",
    "trigger": "manual",
}


def hostile_instances():
    return parse_instances(
        {
            "instance": [
                {"plugin": "github", "id": "acme", "secret": GITHUB_SECRET},
                {
                    "plugin": "standard-webhooks",
                    "id": "billing",
                    "secret": "whsec_c3RhbmRhcmQtd2ViaG9va3MtdGVzdC1rZXk=",
                },
                {"plugin": "linear", "id": "team", "secret": LINEAR_SECRET},
                {
                    "plugin": "generic-hmac",
                    "id": "producer",
                    "secret": "generic-secret",
                    "options": {"prefix": "sha256="},
                },
            ]
        },
        "hostile instances",
        env={},
    )


async def serve(settings, **app_args) -> tuple[IngressRunner, str]:
    runner = IngressRunner(create_app(settings, hostile_instances(), **app_args))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
def hostile_settings(settings):
    return settings.model_copy(
        update={
            "events_token": SecretStr(EVENTS_TOKEN),
            "producer_linger_ms": 1,
            "ingress_header_timeout_seconds": HEADER_TIMEOUT,
            "ingress_body_timeout_seconds": BODY_TIMEOUT,
            "ingress_idle_timeout_seconds": IDLE_TIMEOUT,
        }
    )


@pytest.fixture
async def ingress(hostile_settings) -> AsyncIterator[Ingress]:
    runner, _ = await serve(hostile_settings)
    async with aiohttp.ClientSession() as session:
        yield Ingress(hostile_settings, hostile_instances(), runner, session)
    await runner.cleanup()


@pytest.fixture
def logs(caplog):
    """Every log record of every logger, from DEBUG up."""
    caplog.set_level(logging.DEBUG)
    return caplog


def address(ingress: Ingress) -> tuple[str, int]:
    host, port = ingress.runner.addresses[0][:2]
    return host, port


def github_signature(body: bytes) -> str:
    return "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()


def head(path: str, *lines: bytes, length: int | None = None) -> bytes:
    fields = [b"POST " + path.encode() + b" HTTP/1.1", b"Host: 127.0.0.1", *lines]
    if length is not None:
        fields.append(b"Content-Length: %d" % length)
    return b"\r\n".join(fields) + b"\r\n\r\n"


async def exchange(ingress: Ingress, *parts: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send `parts` on a fresh connection and read one answer: status, headers, body."""
    reader, writer = await asyncio.open_connection(*address(ingress))
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()

        async def answer() -> bytes:
            head_bytes = await reader.readuntil(b"\r\n\r\n")
            length = int(parse_response(head_bytes)[1].get("content-length", "0"))
            return head_bytes + await reader.readexactly(length)

        raw = await asyncio.wait_for(answer(), timeout)
    finally:
        writer.close()
    return parse_response(raw)


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head_bytes, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def assert_json_error(status: int, headers: dict[str, str], body: bytes, expected_status: int, code: str) -> dict:
    assert status == expected_status, (status, body)
    assert headers["content-type"].startswith("application/json"), headers
    answer = orjson.loads(body)
    assert answer["error"] == code, answer
    assert isinstance(answer["message"], str) and answer["message"]
    return answer


def assert_answer(result: tuple[int, dict, dict], expected_status: int, code: str) -> dict:
    """`assert_json_error` for what `Ingress.post` returns."""
    status, body, headers = result
    return assert_json_error(
        status, {k.lower(): v for k, v in headers.items()}, orjson.dumps(body), expected_status, code
    )


async def metrics(ingress: Ingress) -> str:
    async with ingress.session.get(ingress.url + "/metrics") as response:
        return await response.text()


def metric(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name + ("{" + label_text + "}" if labels else "")) + r" ([0-9.e+]+)"
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def assert_quiet(logs, *secrets: str) -> None:
    """Nothing at ERROR or above, no traceback, and none of `secrets` in any log line."""
    loud = [r for r in logs.records if r.levelno >= logging.ERROR]
    assert not loud, [r.getMessage()[:200] for r in loud]
    assert "Traceback" not in logs.text
    for secret in secrets:
        assert secret not in logs.text


async def assert_nothing_else_published(settings, logical_topic: str, sentinel_key: str, publish_sentinel) -> None:
    """Publish a sentinel and read the topic from the start: the sentinel must be all there is."""
    await publish_sentinel()
    records = await records_on(settings, logical_topic, 1)
    assert [key for key, _ in records] == [sentinel_key], records


# --- parser-level rejections -----------------------------------------------------------------

SIGNED_BODY = b'{"zen": "hostile"}'
SIGNATURE = github_signature(SIGNED_BODY)
SIGNATURE_HEX = SIGNATURE.removeprefix("sha256=")


@pytest.mark.parametrize(
    "what, request_bytes, status, code",
    [
        (
            "a NUL in the signature header",
            head("/hooks/github/acme", b"X-Hub-Signature-256: " + SIGNATURE.encode() + b"\x00", length=len(SIGNED_BODY))
            + SIGNED_BODY,
            400,
            "malformed_header",
        ),
        (
            "an ANSI escape in a header",
            head(
                "/hooks/github/acme",
                b"X-Hub-Signature-256: " + SIGNATURE.encode() + b"\x1b[31m",
                length=len(SIGNED_BODY),
            )
            + SIGNED_BODY,
            400,
            "malformed_header",
        ),
        (
            "a header line over 8190 bytes",
            head(
                "/hooks/github/acme",
                b"X-Hub-Signature-256: " + SIGNATURE.encode() + b"0" * 9000,
                length=len(SIGNED_BODY),
            )
            + SIGNED_BODY,
            431,
            "header_too_large",
        ),
        (
            "more than 128 headers",
            head(
                "/hooks/github/acme",
                b"X-Hub-Signature-256: " + SIGNATURE.encode(),
                *(b"X-Pad-%d: 1" % i for i in range(130)),
                length=len(SIGNED_BODY),
            )
            + SIGNED_BODY,
            431,
            "too_many_headers",
        ),
        (
            "a chunk size that is not hex",
            head("/hooks/github/acme", b"X-Hub-Signature-256: " + SIGNATURE.encode(), b"Transfer-Encoding: chunked")
            + b"zz\r\nabc\r\n0\r\n\r\n",
            400,
            "malformed_body_framing",
        ),
        (
            "a request line that is not HTTP",
            b"\x16\x03\x01 " + SIGNATURE.encode() + b"\r\n\r\n",
            400,
            "malformed_request",
        ),
    ],
)
async def test_a_request_the_parser_refuses_is_answered_json_and_its_bytes_never_logged(
    ingress, logs, what, request_bytes, status, code
):
    answer = assert_json_error(*await exchange(ingress, request_bytes), status, code)
    assert SIGNATURE_HEX not in answer["message"]
    assert_quiet(logs, SIGNATURE_HEX)
    assert metric(await metrics(ingress), "hookstream_ingress_responses_total", status=str(status)) == 1


async def test_a_broken_chunk_after_the_head_is_a_json_400(ingress, logs):
    # The head arrives first, the handler starts reading, then the framing breaks.
    first = (
        head("/hooks/github/acme", b"X-Hub-Signature-256: " + SIGNATURE.encode(), b"Transfer-Encoding: chunked")
        + b"4\r\nabcd\r\n"
    )
    answer = assert_json_error(*await exchange(ingress, first, b"not-hex\r\n\r\n"), 400, "malformed_body_framing")
    assert "chunk" in answer["message"] or "framing" in answer["message"]
    assert_quiet(logs, SIGNATURE_HEX)


# --- encodings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding, body",
    [
        # mtime=0: gzip stamps the time into its header, and the test ids must be the same in every
        # pytest-xdist process that collects them.
        ("gzip", gzip.compress(SIGNED_BODY, mtime=0)),
        ("deflate", zlib.compress(SIGNED_BODY)),
        ("gzip", b"this is not gzip"),  # a 500 with a traceback before
        ("deflate", b"this is not deflate either"),
        ("br", b"\x1b\x03\x00\xf8\xa5"),
        ("zstd", b"(\xb5/\xfd\x00X\x19\x00\x00"),
        ("x-custom", SIGNED_BODY),
        ("identity, gzip", gzip.compress(SIGNED_BODY, mtime=0)),
    ],
    ids=["gzip", "deflate", "bad-gzip", "bad-deflate", "br", "zstd", "x-custom", "identity-then-gzip"],
)
async def test_a_content_encoding_other_than_identity_is_415_and_nothing_is_published(ingress, logs, encoding, body):
    # Signed over the bytes as sent: before, the ingress verified the decompressed bytes (401) or crashed (500).
    headers = {**ingress.signed("github", "acme", body, delivery_id=f"enc-{encoding}"), "Content-Encoding": encoding}
    answer = assert_answer(await ingress.post("/hooks/github/acme", body, headers), 415, "unsupported_content_encoding")
    assert "identity" in answer["message"]
    assert_quiet(logs)

    sentinel = ingress.signed("github", "acme", SIGNED_BODY, delivery_id="sentinel")

    async def publish_sentinel() -> None:
        assert (await ingress.post("/hooks/github/acme", SIGNED_BODY, sentinel))[0] == 202

    await assert_nothing_else_published(
        ingress.settings, "hookstream.deliveries", "github/acme/sentinel", publish_sentinel
    )


async def test_identity_encoding_is_verified_and_stored_byte_exact(ingress):
    body = gzip.compress(SIGNED_BODY)  # bytes that happen to be gzip, sent as what they are
    headers = {**ingress.signed("github", "acme", body, delivery_id="as-sent"), "Content-Encoding": "identity"}
    status, answer, _ = await ingress.post("/hooks/github/acme", body, headers)
    assert (status, answer) == (202, {"deliveryId": "as-sent"})
    [(_, value)] = await records_on(ingress.settings, "hookstream.deliveries", 1)
    assert codec.decode(Delivery, value).body == body


# --- header values that are not UTF-8 --------------------------------------------------------


async def test_a_bearer_token_that_is_not_utf8_is_400(ingress, logs):
    body = orjson.dumps(SYNC_REQUESTED)
    request = (
        head(
            "/events",
            b"Authorization: Bearer " + EVENTS_TOKEN.encode() + b"\xff",
            b"Content-Type: application/json",
            b"Connection: close",
            length=len(body),
        )
        + body
    )
    assert_json_error(*await exchange(ingress, request), 400, "invalid_header")
    assert_quiet(logs, EVENTS_TOKEN)


async def test_an_event_header_that_is_not_utf8_on_a_validly_signed_delivery_is_400(ingress, logs):
    request = (
        head(
            "/hooks/github/acme",
            b"X-Hub-Signature-256: " + SIGNATURE.encode(),
            b"X-GitHub-Delivery: utf8-1",
            b"X-GitHub-Event: pu\xffsh",
            b"Connection: close",
            length=len(SIGNED_BODY),
        )
        + SIGNED_BODY
    )
    answer = assert_json_error(*await exchange(ingress, request), 400, "invalid_header")
    assert "X-GitHub-Event" in answer["message"]
    assert_quiet(logs, SIGNATURE_HEX)
    text = await metrics(ingress)
    assert metric(text, "hookstream_ingress_requests_total", plugin="github", status="400") == 1


# --- slow clients, dropped clients -----------------------------------------------------------


async def _trickle_until_answered(
    ingress: Ingress, first: bytes, drip: bytes, every: float, limit: float
) -> tuple[bytes, float]:
    """Send `first`, then `drip` every `every` seconds (a slowloris) until the server answers and
    closes or `limit` seconds pass: what it answered and when, from the connection's start."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(*address(ingress))
    answer = asyncio.ensure_future(reader.read())
    try:
        writer.write(first)
        while not answer.done() and time.monotonic() - started < limit:
            try:
                writer.write(drip)
                await writer.drain()
            except ConnectionError:
                break  # the server closed: its answer is in the reader
            await asyncio.wait({answer}, timeout=every)
        raw = await asyncio.wait_for(answer, max(0.1, limit - (time.monotonic() - started)))
        return raw, time.monotonic() - started
    finally:
        answer.cancel()
        writer.close()


async def test_a_head_trickled_byte_by_byte_gets_408_and_is_closed_at_the_deadline(ingress, logs):
    first = b"POST /hooks/github/acme HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Hub-Signature-256: " + SIGNATURE.encode()
    raw, elapsed = await _trickle_until_answered(ingress, first, b"0", every=0.1, limit=HEADER_TIMEOUT + 5)
    assert_json_error(*parse_response(raw), 408, "request_timeout")
    assert HEADER_TIMEOUT <= elapsed < HEADER_TIMEOUT + 2, elapsed
    text = await metrics(ingress)
    assert metric(text, "hookstream_ingress_timeouts_total", phase="head") == 1
    assert metric(text, "hookstream_ingress_responses_total", status="408") == 1
    assert_quiet(logs, SIGNATURE_HEX)


async def test_a_body_held_back_gets_408_and_is_closed_at_the_deadline(ingress, logs):
    body = b'{"slow": "' + b"s" * 100 + b'"}'
    first = (
        head("/hooks/github/acme", b"X-Hub-Signature-256: " + github_signature(body).encode(), length=len(body))
        + body[:5]
    )
    raw, elapsed = await _trickle_until_answered(ingress, first, b"", every=0.1, limit=BODY_TIMEOUT + 5)
    assert_json_error(*parse_response(raw), 408, "request_timeout")
    assert BODY_TIMEOUT <= elapsed < BODY_TIMEOUT + 2, elapsed
    text = await metrics(ingress)
    assert metric(text, "hookstream_ingress_timeouts_total", phase="body") == 1
    assert metric(text, "hookstream_ingress_requests_total", plugin="github", status="408") == 1
    assert_quiet(logs)


async def test_a_connection_that_sends_nothing_is_closed_at_the_head_deadline(ingress):
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(*address(ingress))
    try:
        raw = await asyncio.wait_for(reader.read(), HEADER_TIMEOUT + 5)
    finally:
        writer.close()
    assert_json_error(*parse_response(raw), 408, "request_timeout")
    assert time.monotonic() - started < HEADER_TIMEOUT + 2


async def test_a_kept_alive_connection_has_a_fresh_head_deadline_for_each_request(ingress):
    reader, writer = await asyncio.open_connection(*address(ingress))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b'{"status":"ok"}'), 5)
        assert first.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # half a head, then nothing
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), HEADER_TIMEOUT + 5)
    finally:
        writer.close()
    assert_json_error(*parse_response(raw), 408, "request_timeout")
    assert time.monotonic() - started < HEADER_TIMEOUT + 2


PIPELINED = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nPOST /hooks/github/acme HTTP/1.1\r\nHost: x\r\nX-Slow: "


async def test_a_head_trickled_behind_a_complete_pipelined_request_gets_408_at_the_head_deadline(ingress):
    # One packet: a whole request, then the start of a next one, which trickles and never ends.
    raw, elapsed = await _trickle_until_answered(ingress, PIPELINED, b"X", every=0.1, limit=IDLE_TIMEOUT + 5)
    first, _, second = raw.partition(b'{"status":"ok"}')
    assert first.startswith(b"HTTP/1.1 200"), raw
    assert_json_error(*parse_response(second), 408, "request_timeout")
    assert elapsed < HEADER_TIMEOUT + 2, elapsed


async def test_a_head_left_unfinished_behind_a_complete_pipelined_request_is_closed_at_the_idle_deadline(ingress):
    # No byte after the packet: nothing marks a new head's start, so the idle deadline closes it.
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(*address(ingress))
    try:
        writer.write(PIPELINED)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), IDLE_TIMEOUT + 5)
    finally:
        writer.close()
    assert raw.startswith(b"HTTP/1.1 200") and raw.count(b"HTTP/1.1") == 1, raw
    assert time.monotonic() - started < IDLE_TIMEOUT + 2


async def test_many_slow_connections_do_not_hold_up_a_fast_delivery(ingress):
    slow = []
    for _ in range(150):
        reader, writer = await asyncio.open_connection(*address(ingress))
        writer.write(b"POST /hooks/github/acme HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        slow.append((reader, writer))
    try:
        body = b'{"fast": true}'
        started = time.monotonic()
        status, answer, _ = await ingress.post(
            "/hooks/github/acme", body, ingress.signed("github", "acme", body, delivery_id="fast")
        )
        assert (status, answer) == (202, {"deliveryId": "fast"})
        assert time.monotonic() - started < HEADER_TIMEOUT, "the fast delivery waited behind the slow connections"
        answers = await asyncio.wait_for(asyncio.gather(*(reader.read() for reader, _ in slow)), HEADER_TIMEOUT + 10)
    finally:
        for _, writer in slow:
            writer.close()
    assert {parse_response(raw)[0] for raw in answers} == {408}
    assert metric(await metrics(ingress), "hookstream_ingress_responses_total", status="408") == len(slow)
    [(key, _)] = await records_on(ingress.settings, "hookstream.deliveries", 1)
    assert key == "github/acme/fast"


async def test_a_client_that_disconnects_mid_body_is_counted_not_logged(ingress, logs):
    body = b'{"never": "finished"}'
    reader, writer = await asyncio.open_connection(*address(ingress))
    writer.write(
        head("/hooks/github/acme", b"X-Hub-Signature-256: " + github_signature(body).encode(), length=len(body) + 1000)
        + body
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    async def counted() -> bool:
        return metric(await metrics(ingress), "hookstream_ingress_client_disconnects_total") == 1

    await wait_until(counted, timeout=10, what="the disconnect counted")
    assert_quiet(logs)


# --- unexpected failures ---------------------------------------------------------------------


class ExplodingGitHub(GitHub):
    """A plugin with a bug: its exception quotes what it was given."""

    def verify(self, raw, headers, instance, route, now):
        raise RuntimeError(f"bug while reading {headers.get('x-hub-signature-256')}")


async def test_an_unexpected_exception_is_a_counted_json_500_logged_once_without_the_request(hostile_settings, logs):
    runner, url = await serve(hostile_settings, plugins={**PLUGINS, "github": ExplodingGitHub()})
    try:
        async with aiohttp.ClientSession() as session:
            headers = {"X-Hub-Signature-256": SIGNATURE, "X-GitHub-Delivery": "boom"}
            async with session.post(url + "/hooks/github/acme", data=SIGNED_BODY, headers=headers) as response:
                status, answer = response.status, await response.json()
            async with session.get(url + "/metrics") as response:
                text = await response.text()
    finally:
        await runner.cleanup()
    assert (status, answer["error"]) == (500, "internal_error")
    assert metric(text, "hookstream_ingress_responses_total", status="500") == 1
    errors = [r for r in logs.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "RuntimeError" in errors[0].getMessage()
    assert SIGNATURE_HEX not in logs.text


# --- values ----------------------------------------------------------------------------------


def _events_auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {EVENTS_TOKEN}", "Content-Type": "application/json"}


@pytest.mark.parametrize(
    "what, event, field, bound",
    [
        (
            "a newline in source_id",
            {**SYNC_REQUESTED, "source_id": "git:demo\nINFO forged log line"},
            "source_id",
            "no NUL, newline",
        ),
        ("an ANSI escape in source_id", {**SYNC_REQUESTED, "source_id": "git:\x1b[31mdemo"}, "source_id", "escape"),
        ("a NUL in source_id", {**SYNC_REQUESTED, "source_id": "git:de\x00mo"}, "source_id", "NUL"),
        ("a source_id over 300 characters", {**SYNC_REQUESTED, "source_id": "g" * 301}, "source_id", "300"),
        ("a NUL in request_id", {**SYNC_REQUESTED, "request_id": "r\x00"}, "request_id", "NUL"),
        ("a trigger with a space", {**SYNC_REQUESTED, "trigger": "push now"}, "trigger", "letters, digits"),
        ("more than 2048 path hints", {**SYNC_REQUESTED, "paths": [f"p{i}" for i in range(2049)]}, "paths", "2048"),
        ("a path hint with a newline", {**SYNC_REQUESTED, "paths": ["a\nb"]}, "paths", "newline"),
        ("a 900 KB name", {**SOURCE_CONNECTED, "name": "n" * 900_000}, "name", "200"),
        (
            "a 900 KB config",
            {**SOURCE_CONNECTED, "config": {"path": "/srv/repos/demo", "pad": "c" * 900_000}},
            "config",
            "16384",
        ),
        ("schema_version 999", {**SYNC_REQUESTED, "schema_version": 999}, "schema_version", "1"),
        ("schema_version -1", {**SYNC_REQUESTED, "schema_version": -1}, "schema_version", "1"),
    ],
)
async def test_an_event_outside_its_bounds_is_422_naming_the_field_and_the_bound(ingress, what, event, field, bound):
    answer = assert_answer(await ingress.post("/events", orjson.dumps(event), _events_auth()), 422, "invalid_event")
    assert any(field in error["loc"] for error in answer["errors"]), answer
    assert field in answer["message"] and bound in answer["message"], answer["message"]


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400"])
async def test_a_number_json_cannot_hold_is_422_not_rewritten_to_null(ingress, number):
    body = orjson.dumps(SOURCE_CONNECTED).replace(b'"/srv/repos/demo"}', b'"/srv/repos/demo","depth":' + number + b"}")
    assert number in body
    answer = assert_answer(await ingress.post("/events", body, _events_auth()), 422, "invalid_event")
    assert "config" in answer["message"] and "finite" in answer["message"] and "depth" in answer["message"]

    async def publish_sentinel() -> None:
        assert (
            await ingress.post("/events", orjson.dumps({**SOURCE_CONNECTED, "source_id": "sentinel"}), _events_auth())
        )[0] == 202

    await assert_nothing_else_published(ingress.settings, "hookstream.sync.control", "sentinel", publish_sentinel)


@pytest.mark.parametrize(
    "path, status, code",
    [
        ("/hooks/generic-hmac/producer/a%0Ab", 400, "invalid_route"),
        ("/hooks/generic-hmac/producer/a%1B%5B31m", 400, "invalid_route"),
        ("/hooks/generic-hmac/producer/" + "r" * 129, 400, "invalid_route"),
        ("/hooks/generic-hmac/producer/a%20b", 400, "invalid_route"),
        ("/hooks/GitHub/acme", 404, "unknown_plugin"),
        ("/hooks/git%0Ahub/acme", 404, "unknown_plugin"),
        ("/hooks/github/ac%0Ame", 404, "unknown_instance"),
        ("/hooks/github/" + "i" * 129, 404, "unknown_instance"),
    ],
)
async def test_url_segments_outside_their_charset_are_refused_as_json(ingress, logs, path, status, code):
    body = orjson.dumps(SYNC_REQUESTED)
    answer = assert_answer(await ingress.post(path, body, {"X-Signature": "sha256=00"}), status, code)
    assert "\n" not in answer["message"] and "\x1b" not in answer["message"]
    for record in logs.records:
        assert "\n" not in record.getMessage() and "\x1b" not in record.getMessage()


async def test_a_kept_header_over_its_bound_is_400_on_a_validly_signed_delivery(ingress, logs):
    body = b'{"zen": "long event name"}'
    headers = ingress.signed("github", "acme", body, delivery_id="long-event", event="e" * 2000)
    answer = assert_answer(await ingress.post("/hooks/github/acme", body, headers), 400, "unreadable_delivery")
    assert "x-github-event" in answer["message"] and "1024" in answer["message"]
    assert_quiet(logs)


# --- what held before, kept ------------------------------------------------------------------


def _bad_signatures(ingress: Ingress) -> list[tuple[str, str, bytes, dict[str, str]]]:
    now = time.time()
    linear_body = orjson.dumps({"type": "Issue", "action": "create", "webhookTimestamp": int(now * 1000)})
    cases = []
    for plugin, instance, body in (
        ("github", "acme", SIGNED_BODY),
        ("standard-webhooks", "billing", orjson.dumps(SYNC_REQUESTED)),
        ("linear", "team", linear_body),
        ("generic-hmac", "producer", orjson.dumps(SYNC_REQUESTED)),
    ):
        signed = ingress.signed(plugin, instance, body, delivery_id=f"forged-{plugin}")
        cases.append((plugin, instance, body + b" ", signed))  # the body changed after signing
    return cases


async def test_a_bad_signature_is_401_for_every_plugin_and_nothing_is_published(ingress):
    cases = _bad_signatures(ingress)
    assert {plugin for plugin, *_ in cases} == set(PLUGINS)
    for plugin, instance, body, headers in cases:
        answer = assert_answer(
            await ingress.post(f"/hooks/{plugin}/{instance}", body, headers), 401, "verification_failed"
        )
        assert GITHUB_SECRET not in answer["message"] and LINEAR_SECRET not in answer["message"]

    sentinel = ingress.signed("github", "acme", SIGNED_BODY, delivery_id="after-forgeries")

    async def publish_sentinel() -> None:
        assert (await ingress.post("/hooks/github/acme", SIGNED_BODY, sentinel))[0] == 202

    await assert_nothing_else_published(
        ingress.settings, "hookstream.deliveries", "github/acme/after-forgeries", publish_sentinel
    )


async def test_a_declared_oversize_body_is_413_before_a_byte_of_it_is_sent(ingress):
    request = head("/hooks/github/acme", b"X-Hub-Signature-256: " + SIGNATURE.encode(), length=50 * 1024 * 1024)
    answer = assert_json_error(*await exchange(ingress, request, timeout=5), 413, "body_too_large")
    assert str(50 * 1024 * 1024) in answer["message"]


async def test_a_chunked_oversize_body_is_413_without_waiting_for_its_end(ingress):
    limit = ingress.settings.body_limit_bytes
    chunk = b"x" * (limit + 1)
    request = head("/hooks/github/acme", b"X-Hub-Signature-256: " + SIGNATURE.encode(), b"Transfer-Encoding: chunked")
    # One chunk past the limit and no final chunk: the answer comes anyway.
    answer = assert_json_error(
        *await exchange(ingress, request, b"%x\r\n" % len(chunk) + chunk + b"\r\n", timeout=5), 413, "body_too_large"
    )
    assert str(limit) in answer["message"]
