"""Verification of every provider scheme: pure, table-driven, time passed in as `now`."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import orjson
import pytest
import standardwebhooks

from app.instances import PLUGINS as CONFIGURED_PLUGIN_NAMES
from app.instances import ConfigError, InstanceConfig
from app.plugins import PLUGINS, UnknownPlugin, get_plugin
from app.plugins.base import UnreadableDelivery, VerificationError, fallback_delivery_id

NOW = 1_714_650_000.0
BODY = b'{"type":"sync.requested","source_id":"git:handbook"}'
WHSEC = "whsec_" + base64.b64encode(b"standard-webhooks-key-0123456789").decode()
WHSEC_OLD = "whsec_" + base64.b64encode(b"the-previous-key-before-rotation").decode()


def instance(plugin: str, *secrets: str, **options: object) -> InstanceConfig:
    return InstanceConfig(plugin=plugin, id="acme", secrets=secrets or ("s3cret-value",), options=options)


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def linear_body(sent_at: float = NOW, **extra: object) -> bytes:
    return orjson.dumps(
        {"action": "create", "type": "Issue", "data": {"id": "ISS-1"}, "webhookTimestamp": int(sent_at * 1000), **extra}
    )


# One instance and body per plugin that signs and verifies round trip.
SCHEMES = {
    "github": (instance("github", "gh-secret"), BODY),
    "standard-webhooks": (instance("standard-webhooks", WHSEC), BODY),
    "linear": (instance("linear", "lin_wh_secret"), linear_body()),
    "generic-hmac": (instance("generic-hmac", "hmac-secret"), BODY),
}


def signed(
    plugin: str, inst: InstanceConfig | None = None, body: bytes | None = None, delivery_id: str | None = "d-1"
) -> tuple[bytes, dict[str, str]]:
    default_inst, default_body = SCHEMES[plugin]
    inst, body = inst or default_inst, default_body if body is None else body
    return body, lower(PLUGINS[plugin].sign(body, inst, NOW, delivery_id=delivery_id, event="push"))


def verify(
    plugin: str,
    body: bytes,
    headers: dict[str, str],
    inst: InstanceConfig | None = None,
    now: float = NOW,
    route: str | None = None,
):
    return PLUGINS[plugin].verify(body, headers, inst or SCHEMES[plugin][0], route, now)


# --- registry -----------------------------------------------------------------


def test_registry_holds_every_configurable_plugin_under_its_own_name():
    assert set(PLUGINS) == set(CONFIGURED_PLUGIN_NAMES)
    assert all(get_plugin(name).name == name for name in PLUGINS)


def test_unknown_plugin_name_raises_with_the_known_names():
    with pytest.raises(UnknownPlugin, match="github"):
        get_plugin("gitlab")


@pytest.mark.parametrize("plugin", sorted(SCHEMES))
def test_default_options_validate(plugin):
    PLUGINS[plugin].validate_options(SCHEMES[plugin][0])


# --- round trips, vectors, oracles --------------------------------------------


def test_githubs_documented_test_vector_verifies():
    inst = instance("github", "It's a Secret to Everybody")
    headers = {"x-hub-signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}
    verify("github", b"Hello, World!", headers, inst)
    signature = PLUGINS["github"].sign(b"Hello, World!", inst, NOW)["X-Hub-Signature-256"]
    assert signature == headers["x-hub-signature-256"]


@pytest.mark.parametrize("plugin", sorted(SCHEMES))
def test_what_a_plugin_signs_it_verifies_with_the_given_delivery_id(plugin):
    body, headers = signed(plugin, delivery_id="delivery-42")
    assert verify(plugin, body, headers).delivery_id == delivery_id_for(plugin, "delivery-42", body)


def delivery_id_for(plugin: str, given: str, body: bytes) -> str:
    # generic-hmac sends an id header only when `id_header` is configured (it is not here).
    return fallback_delivery_id(plugin, "acme", None, body) if plugin == "generic-hmac" else given


@pytest.mark.parametrize(
    "algorithm, encoding, prefix",
    [(a, e, p) for a in ("sha1", "sha256", "sha512") for e in ("hex", "base64", "base64url") for p in ("", f"{a}=")],
)
def test_generic_hmac_round_trips_every_algorithm_encoding_and_prefix(algorithm, encoding, prefix):
    inst = instance(
        "generic-hmac",
        "k",
        header="X-Acme-Signature",
        algorithm=algorithm,
        encoding=encoding,
        prefix=prefix,
        id_header="X-Acme-Id",
    )
    body, headers = signed("generic-hmac", inst, delivery_id="evt_7")
    assert headers["x-acme-signature"].startswith(prefix)
    verified = verify("generic-hmac", body, headers, inst)
    assert (verified.delivery_id, verified.headers) == ("evt_7", {"x-acme-id": "evt_7"})


@pytest.mark.parametrize(
    "secret, oracle_secret",
    [
        (WHSEC, WHSEC),
        (WHSEC.rstrip("="), WHSEC),  # unpadded base64 after whsec_
        ("plain-secret-bytes", b"plain-secret-bytes"),  # not whsec_: the raw UTF-8 bytes are the key
    ],
)
@pytest.mark.parametrize("body", [BODY, '{"title":"Grüße, 世界"}'.encode()])
def test_signatures_made_by_the_standardwebhooks_library_verify(secret, oracle_secret, body):
    sent_at = datetime.fromtimestamp(NOW - 42, tz=UTC)
    signature = standardwebhooks.Webhook(oracle_secret).sign("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", sent_at, body.decode())
    headers = {
        "webhook-id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
        "webhook-timestamp": str(int(NOW - 42)),
        "webhook-signature": signature,
    }
    verified = verify("standard-webhooks", body, headers, instance("standard-webhooks", secret))
    assert verified.delivery_id == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"


def test_our_standard_webhooks_signature_equals_the_librarys():
    ours = lower(
        PLUGINS["standard-webhooks"].sign(BODY, SCHEMES["standard-webhooks"][0], NOW + 0.9, delivery_id="msg_1")
    )
    theirs = standardwebhooks.Webhook(WHSEC).sign("msg_1", datetime.fromtimestamp(NOW + 0.9, tz=UTC), BODY.decode())
    assert (ours["webhook-timestamp"], ours["webhook-signature"]) == (str(int(NOW)), theirs)


def test_the_standardwebhooks_library_accepts_our_signature():
    # The library reads the wall clock, so this one test signs at the wall clock's now.
    now = datetime.now(tz=UTC).timestamp()
    headers = PLUGINS["standard-webhooks"].sign(BODY, SCHEMES["standard-webhooks"][0], now, delivery_id="msg_ours")
    assert standardwebhooks.Webhook(WHSEC).verify(BODY, headers) == orjson.loads(BODY)


def test_standard_webhooks_body_that_is_not_utf8_verifies_over_raw_bytes():
    body = b"\xff\xfe not utf-8 \x80"
    key = base64.b64decode(WHSEC.removeprefix("whsec_"))
    mac = hmac.new(key, b"msg_raw." + str(int(NOW)).encode() + b"." + body, hashlib.sha256).digest()
    headers = {
        "webhook-id": "msg_raw",
        "webhook-timestamp": str(int(NOW)),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }
    assert verify("standard-webhooks", body, headers).delivery_id == "msg_raw"


def test_standard_webhooks_skips_unknown_versions_and_checks_every_v1_entry():
    body, headers = signed("standard-webhooks")
    stale = "v1," + base64.b64encode(b"\x00" * 32).decode()
    headers["webhook-signature"] = f"v1a,c29tZS1lZDI1NTE5LXNpZw== {stale}  {headers['webhook-signature']}"
    assert verify("standard-webhooks", body, headers).delivery_id == "d-1"


# --- rejections ---------------------------------------------------------------


def _hex(n: int) -> str:
    return "ab" * n


MALFORMED = [
    # plugin, header to set (None deletes the signature header), value, reason fragment
    ("github", "x-hub-signature-256", None, "missing X-Hub-Signature-256"),
    ("github", "x-hub-signature-256", "sha1=" + _hex(20), "must start with 'sha256='"),
    ("github", "x-hub-signature-256", "SHA256=" + _hex(32), "must start with 'sha256='"),
    ("github", "x-hub-signature-256", _hex(32), "must start with 'sha256='"),
    ("github", "x-hub-signature-256", "sha256=" + "zz" * 32, "not a 64-digit hex digest"),
    ("github", "x-hub-signature-256", "sha256=" + _hex(31), "not a 64-digit hex digest"),
    ("github", "x-hub-signature-256", "sha256=" + "ab " * 21 + "a", "not a 64-digit hex digest"),
    ("github", "x-hub-signature-256", "sha256=", "not a 64-digit hex digest"),
    ("standard-webhooks", "webhook-signature", None, "missing webhook-signature"),
    ("standard-webhooks", "webhook-id", None, "missing webhook-id"),
    ("standard-webhooks", "webhook-id", "", "missing webhook-id"),
    ("standard-webhooks", "webhook-timestamp", None, "missing webhook-timestamp"),
    ("standard-webhooks", "webhook-timestamp", "1714650000.5", "not an integer"),
    ("standard-webhooks", "webhook-timestamp", "-1714650000", "not an integer"),
    ("standard-webhooks", "webhook-timestamp", "yesterday", "not an integer"),
    ("standard-webhooks", "webhook-signature", "   ", "has no entries"),
    ("standard-webhooks", "webhook-signature", "v1", "entry 1 is not 'version,signature'"),
    ("standard-webhooks", "webhook-signature", "v1,", "entry 1 is not 'version,signature'"),
    ("standard-webhooks", "webhook-signature", ",c2ln", "entry 1 is not 'version,signature'"),
    ("standard-webhooks", "webhook-signature", "v1,!!notbase64!!", "entry 1 is not valid base64"),
    ("standard-webhooks", "webhook-signature", "v1,abcde", "entry 1 is not valid base64"),
    ("standard-webhooks", "webhook-signature", "v1," + base64.b64encode(b"short").decode(), "decodes to 5 bytes"),
    ("standard-webhooks", "webhook-signature", "v2,c2lnbmF0dXJl v1a,c2lnbmF0dXJl", "has no v1 signature"),
    ("linear", "linear-signature", None, "missing Linear-Signature"),
    ("linear", "linear-signature", "sha256=" + _hex(32), "not a 64-digit hex digest"),
    ("linear", "linear-signature", "g" * 64, "not a 64-digit hex digest"),
    ("generic-hmac", "x-signature", None, "missing X-Signature"),
    ("generic-hmac", "x-signature", "xyz", "not a 64-digit hex digest"),
    ("generic-hmac", "x-signature", _hex(20), "not a 64-digit hex digest"),
]


@pytest.mark.parametrize("plugin, header, value, reason", MALFORMED)
def test_malformed_header_is_a_verification_error_with_a_specific_reason(plugin, header, value, reason):
    body, headers = signed(plugin)
    if value is None:
        headers.pop(header)
    else:
        headers[header] = value
    with pytest.raises(VerificationError) as caught:
        verify(plugin, body, headers)
    assert reason in caught.value.reason
    assert_reason_is_safe(caught.value.reason, plugin, headers)


def assert_reason_is_safe(reason: str, plugin: str, headers: dict[str, str]) -> None:
    """Never a secret, never a signature in an error message."""
    for secret in SCHEMES[plugin][0].secrets:
        assert secret.get_secret_value() not in reason
    for name, value in headers.items():
        if "signature" in name and len(value) > 8:
            assert value not in reason


@pytest.mark.parametrize(
    "options, header, value, reason",
    [
        ({"encoding": "base64"}, "x-signature", "not base64!", "is not valid base64"),
        ({"encoding": "base64url"}, "x-signature", "a+b/", "is not valid base64url"),
        (
            {"encoding": "base64", "prefix": "sha256="},
            "x-signature",
            base64.b64encode(b"x" * 32).decode(),
            "must start with 'sha256='",
        ),
        ({"algorithm": "sha512"}, "x-signature", _hex(32), "not a 128-digit hex digest"),
        ({"header": "X-Acme-Sig"}, "x-acme-sig", None, "missing X-Acme-Sig"),
    ],
)
def test_generic_hmac_rejects_a_signature_that_does_not_fit_its_configured_scheme(options, header, value, reason):
    inst = instance("generic-hmac", "k", **options)
    body, headers = signed("generic-hmac", inst)
    headers = {header: value} if value is not None else {}
    with pytest.raises(VerificationError, match=reason):
        verify("generic-hmac", body, headers, inst)


@pytest.mark.parametrize("plugin", sorted(SCHEMES))
def test_signature_under_another_secret_is_rejected(plugin):
    inst = SCHEMES[plugin][0]
    other = instance(
        plugin,
        "whsec_" + base64.b64encode(b"someone-else").decode() if plugin == "standard-webhooks" else "someone-else",
    )
    body, headers = signed(plugin, other)
    with pytest.raises(VerificationError, match="match") as caught:
        verify(plugin, body, headers, inst)
    assert_reason_is_safe(caught.value.reason, plugin, headers)


@pytest.mark.parametrize("plugin", sorted(SCHEMES))
def test_a_body_changed_after_signing_is_rejected(plugin):
    body, headers = signed(plugin)
    tampered = body.replace(b"}", b" }", 1)
    with pytest.raises(VerificationError, match="match"):
        verify(plugin, tampered, headers)


@pytest.mark.parametrize("plugin", sorted(SCHEMES))
@pytest.mark.parametrize("signer", ["new", "old"])
def test_during_rotation_both_the_new_and_the_old_secret_verify(plugin, signer):
    new, old = (WHSEC, WHSEC_OLD) if plugin == "standard-webhooks" else ("new-secret", "old-secret")
    rotating = instance(plugin, new, old)
    body, headers = signed(plugin, instance(plugin, new if signer == "new" else old))
    verify(plugin, body, headers, rotating)


# --- timestamps ---------------------------------------------------------------


@pytest.mark.parametrize(
    "options, offset, error",
    [
        ({}, 0, None),
        ({}, -300, None),  # exactly at the tolerance: accepted
        ({}, -301, "older than the 300 s tolerance"),
        ({}, 300, None),
        ({}, 301, "further in the future than the 300 s tolerance"),
        ({"tolerance_seconds": 10}, -10, None),
        ({"tolerance_seconds": 10}, -11, "older than the 10 s tolerance"),
        ({"tolerance_seconds": "1m"}, 61, "further in the future than the 60 s tolerance"),
    ],
)
def test_standard_webhooks_timestamp_must_be_within_tolerance_of_now(options, offset, error):
    inst = instance("standard-webhooks", WHSEC, **options)
    body = BODY
    headers = lower(PLUGINS["standard-webhooks"].sign(body, inst, NOW + offset, delivery_id="msg_t"))
    if error is None:
        verify("standard-webhooks", body, headers, inst)
    else:
        with pytest.raises(VerificationError, match=error):
            verify("standard-webhooks", body, headers, inst)


@pytest.mark.parametrize(
    "options, offset_ms, error",
    [
        ({}, 0, None),
        ({}, -60_000, None),  # exactly at the tolerance: accepted
        ({}, -60_001, "older than the 60 s tolerance"),
        ({}, 60_000, None),
        ({}, 60_001, "further in the future than the 60 s tolerance"),
        ({"tolerance_seconds": "5m"}, -300_000, None),
        ({"tolerance_seconds": "5m"}, -300_001, "older than the 300 s tolerance"),
    ],
)
def test_linear_webhook_timestamp_must_be_within_tolerance_of_now(options, offset_ms, error):
    inst = instance("linear", "lin_wh_secret", **options)
    body = orjson.dumps({"type": "Issue", "action": "update", "webhookTimestamp": int(NOW * 1000) + offset_ms})
    body, headers = signed("linear", inst, body)
    if error is None:
        verify("linear", body, headers, inst)
    else:
        with pytest.raises(VerificationError, match=error):
            verify("linear", body, headers, inst)


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"not json at all", "not a JSON object"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'{"type": "Issue"}', "no numeric webhookTimestamp"),
        (b'{"type": "Issue", "webhookTimestamp": "1714650000000"}', "no numeric webhookTimestamp"),
        (b'{"type": "Issue", "webhookTimestamp": true}', "no numeric webhookTimestamp"),
    ],
)
def test_linear_authentic_body_without_a_readable_timestamp_is_unreadable(body, reason):
    body, headers = signed("linear", body=body)
    with pytest.raises(UnreadableDelivery, match=reason):
        verify("linear", body, headers)


def test_linear_checks_the_signature_before_reading_the_body():
    _, headers = signed("linear")
    with pytest.raises(VerificationError):
        verify("linear", b"not json, not signed", headers)


# --- delivery ids -------------------------------------------------------------


@pytest.mark.parametrize(
    "plugin, header",
    [("github", "x-github-delivery"), ("standard-webhooks", "webhook-id"), ("linear", "linear-delivery")],
)
def test_the_providers_header_is_the_delivery_id(plugin, header):
    body, headers = signed(plugin, delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    verified = verify(plugin, body, headers)
    assert verified.delivery_id == headers[header] == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert verified.headers[header] == verified.delivery_id


@pytest.mark.parametrize("plugin", ["github", "linear", "generic-hmac"])
def test_without_an_id_header_the_fallback_id_is_deterministic_and_names_plugin_instance_route(plugin):
    body, headers = signed(plugin, delivery_id=None)
    first = verify(plugin, body, headers, route="docs").delivery_id
    assert first == verify(plugin, body, headers, route="docs").delivery_id
    assert first == fallback_delivery_id(plugin, "acme", "docs", body)
    assert first != verify(plugin, body, headers, route="other").delivery_id
    assert first != verify(plugin, body, headers, route=None).delivery_id


def test_fallback_id_differs_between_plugins_for_the_same_instance_route_and_body():
    ids = {fallback_delivery_id(p, "acme", None, BODY) for p in PLUGINS}
    assert len(ids) == len(PLUGINS)


ID_VALUES = [
    ("a", True),
    ("x" * 200, True),
    ("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W/retry:1", True),
    ("", False),
    ("x" * 201, False),
    ("has space", False),
    ("tab\there", False),
    ("nul\x00byte", False),
    ("grüße", False),
]


@pytest.mark.parametrize(
    "plugin, value, usable",
    [
        (plugin, value, usable)
        for plugin in ("github", "linear", "standard-webhooks")
        for value, usable in ID_VALUES
        # an empty webhook-id is a missing header (the id is signed content): covered in MALFORMED
        if not (plugin == "standard-webhooks" and value == "")
    ],
)
def test_an_authentic_delivery_with_an_unusable_id_header_is_unreadable(plugin, value, usable):
    body, headers = signed(plugin, delivery_id=value)
    if usable:
        assert verify(plugin, body, headers).delivery_id == value
    else:
        with pytest.raises(UnreadableDelivery, match="not a usable delivery id"):
            verify(plugin, body, headers)


def test_a_bad_signature_is_reported_before_a_bad_delivery_id():
    body, headers = signed("github", delivery_id="x" * 500)
    headers["x-hub-signature-256"] = "sha256=" + _hex(32)
    with pytest.raises(VerificationError):
        verify("github", body, headers)


def test_github_keeps_only_the_headers_routing_needs():
    body, headers = signed("github", delivery_id="d-9")
    headers.update(
        {"x-github-hook-id": "470123456", "user-agent": "GitHub-Hookshot/abc", "x-hub-signature": "sha1=" + _hex(20)}
    )
    assert verify("github", body, headers).headers == {
        "x-github-event": "push",
        "x-github-delivery": "d-9",
        "x-github-hook-id": "470123456",
    }


# --- configuration --------------------------------------------------------------


@pytest.mark.parametrize(
    "plugin, options, secrets, names",
    [
        ("generic-hmac", {"algorithm": "md5"}, ("k",), "options.algorithm"),
        ("generic-hmac", {"encoding": "base32"}, ("k",), "options.encoding"),
        ("generic-hmac", {"header": ""}, ("k",), "options.header"),
        ("generic-hmac", {"prefix": 5}, ("k",), "options.prefix"),
        ("generic-hmac", {"id_header": ["X-Id"]}, ("k",), "options.id_header"),
        ("standard-webhooks", {"tolerance_seconds": -5}, (WHSEC,), "options.tolerance_seconds"),
        ("standard-webhooks", {}, (WHSEC, "whsec_!!!not-base64!!!"), "secrets[1]"),
        ("standard-webhooks", {}, ("whsec_",), "secrets[0]"),
        ("linear", {"tolerance_seconds": "soon"}, ("k",), "options.tolerance_seconds"),
        ("github", {"tracked_branch": ""}, ("k",), "options.tracked_branch"),
        ("github", {"config_files": ".hookstream.yml"}, ("k",), "options.config_files"),
        ("github", {"config_files": ["../outside.yml"]}, ("k",), "options.config_files"),
    ],
)
def test_unusable_options_or_secrets_fail_validation_naming_the_key(plugin, options, secrets, names):
    inst = instance(plugin, *secrets, **options)
    with pytest.raises(ConfigError, match=names.replace("[", r"\[").replace("]", r"\]")) as caught:
        PLUGINS[plugin].validate_options(inst)
    assert f"{plugin}/acme" in str(caught.value)
    for secret in secrets:
        if len(secret) > 8:
            assert secret not in str(caught.value)


def test_generic_hmac_with_an_unknown_algorithm_fails_at_verify_too():
    inst = instance("generic-hmac", "k", algorithm="md5")
    with pytest.raises(ConfigError, match="options.algorithm"):
        verify("generic-hmac", BODY, {"x-signature": _hex(32)}, inst)
