"""Timestamped and asymmetric schemes: generic-hmac's Stripe and Slack modes, Standard Webhooks v1a.

Pure and table-driven; `now` is a parameter. Where a provider publishes a worked
example (Slack does: signing secret, timestamp, body and signature) it is the
test vector; where it publishes only the scheme (Stripe: `t=...,v1=...`,
HMAC-SHA256 of `t.body`) the expected signature is computed here by the
documented steps, independently of the plugin's code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from app.instances import ConfigError, InstanceConfig
from app.plugins import PLUGINS
from app.plugins.base import VerificationError

NOW = 1_714_650_000
BODY = b'{"id":"evt_1PqR","object":"event","type":"invoice.paid"}'
STRIPE_SECRET = "whsec_stripe_test_4eC39HqLyjWDarjtT1zdp7dc"
WHSEC = "whsec_" + base64.b64encode(b"standard-webhooks-key-0123456789").decode()


def instance(plugin: str, *secrets: str, **options: object) -> InstanceConfig:
    return InstanceConfig(plugin=plugin, id="acme", secrets=secrets, options=options)


def verify(inst: InstanceConfig, body: bytes, headers: dict[str, str], now: float = NOW):
    return PLUGINS[inst.plugin].verify(body, {k.lower(): v for k, v in headers.items()}, inst, None, now)


def hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


# --- Slack ---------------------------------------------------------------------------------

# Slack's worked example ("Verifying requests from Slack"): a slash command's form body.
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TIMESTAMP = "1531420618"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
SLACK = instance("generic-hmac", SLACK_SECRET, scheme="slack")


def slack_headers(signature: str = SLACK_SIGNATURE, timestamp: str = SLACK_TIMESTAMP) -> dict[str, str]:
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}


def test_slacks_published_example_verifies():
    verified = verify(SLACK, SLACK_BODY, slack_headers(), now=int(SLACK_TIMESTAMP) + 30)
    assert verified.delivery_id  # the fallback hash: Slack sends no delivery id


def test_what_the_slack_scheme_signs_is_slacks_published_signature():
    headers = PLUGINS["generic-hmac"].sign(SLACK_BODY, SLACK, int(SLACK_TIMESTAMP) + 0.7)
    assert (headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]) == (SLACK_TIMESTAMP, SLACK_SIGNATURE)


SLACK_REJECTED = [
    # test id, headers, body, now, reason
    (
        "signature header missing",
        {"X-Slack-Request-Timestamp": SLACK_TIMESTAMP},
        SLACK_BODY,
        0,
        "missing X-Slack-Signature",
    ),
    (
        "timestamp header missing",
        {"X-Slack-Signature": SLACK_SIGNATURE},
        SLACK_BODY,
        0,
        "missing X-Slack-Request-Timestamp",
    ),
    ("another version", slack_headers(SLACK_SIGNATURE.replace("v0=", "v1=")), SLACK_BODY, 0, "must start with 'v0='"),
    ("not hex", slack_headers("v0=" + "zz" * 32), SLACK_BODY, 0, "64-digit hex"),
    ("a timestamp that is not a number", slack_headers(timestamp="soon"), SLACK_BODY, 0, "not an integer"),
    ("stale, past the 300 s default", slack_headers(), SLACK_BODY, 301, "older than the 300 s tolerance"),
    ("from the future", slack_headers(), SLACK_BODY, -301, "further in the future"),
    ("the body changed", slack_headers(), SLACK_BODY + b"&x=1", 0, "does not match"),
    (
        "the timestamp changed (it is signed)",
        slack_headers(timestamp=str(int(SLACK_TIMESTAMP) + 1)),
        SLACK_BODY,
        0,
        "does not match",
    ),
]


@pytest.mark.parametrize(
    "headers, body, offset, reason", [r[1:] for r in SLACK_REJECTED], ids=[r[0] for r in SLACK_REJECTED]
)
def test_slack_scheme_rejects(headers, body, offset, reason):
    with pytest.raises(VerificationError, match=reason):
        verify(SLACK, body, headers, now=int(SLACK_TIMESTAMP) + offset)


def test_slack_tolerance_is_inclusive_and_configurable():
    verify(SLACK, SLACK_BODY, slack_headers(), now=int(SLACK_TIMESTAMP) + 300)
    tight = instance("generic-hmac", SLACK_SECRET, scheme="slack", tolerance_seconds="10s")
    with pytest.raises(VerificationError, match="older than the 10 s tolerance"):
        verify(tight, SLACK_BODY, slack_headers(), now=int(SLACK_TIMESTAMP) + 11)


# --- Stripe --------------------------------------------------------------------------------

STRIPE = instance("generic-hmac", STRIPE_SECRET, scheme="stripe")


def stripe_v1(timestamp: int | str, body: bytes = BODY, secret: str = STRIPE_SECRET) -> str:
    """Stripe's documented steps: signed_payload = timestamp + "." + payload; HMAC-SHA256 keyed by the
    endpoint's secret; hex. The secret is used as written, `whsec_` prefix included."""
    return hex_hmac(secret, f"{timestamp}.".encode() + body)


def test_a_stripe_signature_header_in_the_documented_shape_verifies():
    # The shape Stripe's docs show: t, then v1, then the test-mode v0 (which is skipped).
    header = f"t={NOW},v1={stripe_v1(NOW)},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
    assert verify(STRIPE, BODY, {"Stripe-Signature": header}).delivery_id


def test_stripe_accepts_any_of_several_v1_signatures_as_during_a_secret_roll():
    old = stripe_v1(NOW, secret="whsec_the_previous_endpoint_secret")
    header = f"t={NOW}, v1={old}, v1={stripe_v1(NOW)}"
    verify(STRIPE, BODY, {"Stripe-Signature": header})
    rolled = instance("generic-hmac", "whsec_the_previous_endpoint_secret", STRIPE_SECRET, scheme="stripe")
    verify(rolled, BODY, {"Stripe-Signature": f"t={NOW},v1={stripe_v1(NOW)}"})


def test_what_the_stripe_scheme_signs_verifies_and_follows_the_documented_steps():
    headers = PLUGINS["generic-hmac"].sign(BODY, STRIPE, NOW + 0.4)
    assert headers["Stripe-Signature"] == f"t={NOW},v1={stripe_v1(NOW)}"
    verify(STRIPE, BODY, headers)


STRIPE_REJECTED = [
    ("header missing", {}, 0, "missing Stripe-Signature"),
    ("an element that is not key=value", {"Stripe-Signature": f"t={NOW},v1"}, 0, "element 2 is not 'key=value'"),
    ("no timestamp", {"Stripe-Signature": f"v1={stripe_v1(NOW)}"}, 0, "exactly one t="),
    ("two timestamps", {"Stripe-Signature": f"t={NOW},t={NOW},v1={stripe_v1(NOW)}"}, 0, "exactly one t="),
    ("no v1 (only the test-mode v0)", {"Stripe-Signature": f"t={NOW},v0={stripe_v1(NOW)}"}, 0, "no v1 signature"),
    ("a v1 that is not hex", {"Stripe-Signature": f"t={NOW},v1={'g' * 64}"}, 0, "v1 signature 1 is not a 64-digit hex"),
    ("a timestamp that is not a number", {"Stripe-Signature": f"t=now,v1={stripe_v1(NOW)}"}, 0, "not an integer"),
    ("stale", {"Stripe-Signature": f"t={NOW},v1={stripe_v1(NOW)}"}, 301, "older than the 300 s tolerance"),
    ("from the future", {"Stripe-Signature": f"t={NOW},v1={stripe_v1(NOW)}"}, -301, "further in the future"),
    (
        "signed for another timestamp",
        {"Stripe-Signature": f"t={NOW},v1={stripe_v1(NOW - 1)}"},
        0,
        "no Stripe-Signature v1 signature matches",
    ),
    (
        "signed under another secret",
        {"Stripe-Signature": f"t={NOW},v1={stripe_v1(NOW, secret='whsec_other')}"},
        0,
        "matches",
    ),
]


@pytest.mark.parametrize(
    "headers, offset, reason", [r[1:] for r in STRIPE_REJECTED], ids=[r[0] for r in STRIPE_REJECTED]
)
def test_stripe_scheme_rejects(headers, offset, reason):
    with pytest.raises(VerificationError, match=reason):
        verify(STRIPE, BODY, headers, now=NOW + offset)


def test_a_changed_body_fails_the_stripe_signature():
    with pytest.raises(VerificationError, match="matches"):
        verify(STRIPE, BODY + b" ", {"Stripe-Signature": f"t={NOW},v1={stripe_v1(NOW)}"})


@pytest.mark.parametrize(
    "options, names",
    [
        ({"scheme": "paypal"}, "options.scheme"),
        ({"scheme": "stripe", "prefix": "sha256="}, "options.prefix: applies to scheme `hmac` only"),
        ({"scheme": "slack", "header": "X-Sig"}, "options.header: applies to scheme `hmac` only"),
        ({"scheme": "stripe", "algorithm": "sha1"}, "options.algorithm"),
        ({"tolerance_seconds": 60}, "options.tolerance_seconds: scheme `hmac` signs no timestamp"),
        ({"scheme": "slack", "tolerance_seconds": "soon"}, "options.tolerance_seconds"),
    ],
)
def test_scheme_options_that_cannot_work_fail_validation_naming_the_option(options, names):
    with pytest.raises(ConfigError, match=names):
        PLUGINS["generic-hmac"].validate_options(instance("generic-hmac", "s", **options))


# --- Standard Webhooks v1a (ed25519) -------------------------------------------------------

PRIVATE = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"hookstream test signing key").digest())
OTHER_PRIVATE = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"someone else's key").digest())


def whpk(private: Ed25519PrivateKey) -> str:
    return "whpk_" + base64.b64encode(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def v1a(
    private: Ed25519PrivateKey,
    msg_id: str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
    timestamp: int = NOW,
    body: bytes = BODY,
) -> str:
    """The spec's signed content `{msg_id}.{timestamp}.{payload}`, signed with ed25519, as `v1a,<base64>`."""
    return "v1a," + base64.b64encode(private.sign(f"{msg_id}.{timestamp}.".encode() + body)).decode()


def sw_headers(signature: str, msg_id: str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", timestamp: int = NOW) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


ASYMMETRIC = instance("standard-webhooks", whpk(PRIVATE))


def test_a_v1a_signature_verifies_with_the_configured_public_key():
    assert verify(ASYMMETRIC, BODY, sw_headers(v1a(PRIVATE))).delivery_id == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"


def test_v1a_and_v1_entries_verify_side_by_side_under_their_own_keys():
    both = instance("standard-webhooks", WHSEC, whpk(PRIVATE))
    hmac_signed = PLUGINS["standard-webhooks"].sign(
        BODY, instance("standard-webhooks", WHSEC), NOW, delivery_id="msg_1"
    )
    verify(both, BODY, hmac_signed)  # v1 alone
    verify(both, BODY, sw_headers(v1a(PRIVATE, "msg_1"), "msg_1"))  # v1a alone
    # A bad v1a beside a good v1 still verifies (any entry may match), and the other way round.
    verify(both, BODY, sw_headers(f"{v1a(OTHER_PRIVATE, 'msg_1')} {hmac_signed['webhook-signature']}", "msg_1"))


def test_rotation_of_public_keys_accepts_either():
    rotated = instance("standard-webhooks", whpk(OTHER_PRIVATE), whpk(PRIVATE))
    verify(rotated, BODY, sw_headers(v1a(PRIVATE)))
    verify(rotated, BODY, sw_headers(v1a(OTHER_PRIVATE)))


V1A_REJECTED = [
    ("signed by another key", sw_headers(v1a(OTHER_PRIVATE)), BODY, "no webhook-signature entry matches"),
    ("the body changed", sw_headers(v1a(PRIVATE)), BODY + b" ", "no webhook-signature entry matches"),
    (
        "the id changed (it is signed)",
        sw_headers(v1a(PRIVATE), msg_id="msg_other"),
        BODY,
        "no webhook-signature entry matches",
    ),
    (
        "the timestamp changed (it is signed)",
        sw_headers(v1a(PRIVATE), timestamp=NOW - 1),
        BODY,
        "no webhook-signature entry matches",
    ),
    (
        "a v1a entry that is not 64 bytes",
        sw_headers("v1a," + base64.b64encode(b"x" * 32).decode()),
        BODY,
        "expected a 64-byte",
    ),
    (
        "only v1 entries, and the instance has only a public key",
        sw_headers("v1," + base64.b64encode(b"x" * 32).decode()),
        BODY,
        "has no v1a signature",
    ),
]


@pytest.mark.parametrize("headers, body, reason", [r[1:] for r in V1A_REJECTED], ids=[r[0] for r in V1A_REJECTED])
def test_v1a_rejects(headers, body, reason):
    with pytest.raises(VerificationError, match=reason):
        verify(ASYMMETRIC, body, headers)


def test_v1a_entries_are_skipped_when_no_public_key_is_configured():
    with pytest.raises(VerificationError, match="has no v1 signature"):
        verify(instance("standard-webhooks", WHSEC), BODY, sw_headers(v1a(PRIVATE)))


@pytest.mark.parametrize(
    "secret, reason",
    [
        ("whpk_" + base64.b64encode(b"short").decode(), "an ed25519 public key is 32 bytes, this one decodes to 5"),
        ("whpk_not*base64", "starts with whpk_ but the rest is not non-empty base64"),
    ],
)
def test_an_unusable_public_key_fails_validation_naming_the_secret(secret, reason):
    with pytest.raises(ConfigError, match=r"secrets\[0\]: " + reason):
        PLUGINS["standard-webhooks"].validate_options(instance("standard-webhooks", secret))


def test_an_instance_with_only_public_keys_cannot_sign():
    with pytest.raises(ConfigError, match="cannot sign"):
        PLUGINS["standard-webhooks"].sign(BODY, ASYMMETRIC, NOW)
