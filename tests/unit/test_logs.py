"""Log lines: text or JSON, and no secret or signature in them, whatever logged it (app/logs.py)."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest

from app import logs


def emit(fmt: str, secrets, *args, **extra) -> str:
    stream = io.StringIO()
    config = logs.dict_config("debug", fmt, secrets)
    config["handlers"]["default"]["stream"] = stream
    logging.config.dictConfig(config)
    try:
        logging.getLogger("t").info(*args, extra=extra or None)
    finally:
        logging.config.dictConfig(logs.dict_config("info", "text"))
    return stream.getvalue()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_configured_secrets_are_masked_in_the_message_and_in_extra_fields(fmt):
    out = emit(fmt, ["hunter2-secret"], "token %s in %s", "hunter2-secret", "x", note="also hunter2-secret")
    assert "hunter2-secret" not in out and "***" in out


@pytest.mark.parametrize(
    "prefix, secret",
    [
        ("X-Hub-Signature-256: sha256=", "3f5a0d9b1c2e4f60718293a4b5c6d7e8f9012345"),
        ("webhook-signature: v1,", "K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="),
        ("Authorization: Bearer ", "eyJhbGciOiJIUzI1NiJ9.payload.sig"),
        ("url?token=", "abcdefgh12345"),
    ],
)
def test_signature_and_token_shapes_are_masked_even_unconfigured(prefix, secret):
    out = emit("text", [], "%s", prefix + secret)
    assert secret not in out and prefix + "***" in out


def test_a_json_line_is_one_object_with_the_extra_fields():
    out = emit("json", [], "sync.started job=%s", "j1", job_id="j1", request_ids=["r1"], delivery_keys=["github/gh/r1"])
    (line,) = out.splitlines()
    record = json.loads(line)
    assert record["message"] == "sync.started job=j1" and record["level"] == "info" and record["logger"] == "t"
    assert (record["job_id"], record["request_ids"], record["delivery_keys"]) == ("j1", ["r1"], ["github/gh/r1"])


def test_a_traceback_stays_inside_its_json_line_and_is_masked():
    stream = io.StringIO()
    config = logs.dict_config("info", "json", ["pw-123456"])
    config["handlers"]["default"]["stream"] = stream
    logging.config.dictConfig(config)
    try:
        try:
            raise RuntimeError("connect failed with password pw-123456")
        except RuntimeError:
            logging.getLogger("t").exception("boom")
    finally:
        logging.config.dictConfig(logs.dict_config("info", "text"))
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert "RuntimeError" in record["exc"] and "pw-123456" not in line


def test_the_settings_secrets_include_tokens_instance_secrets_and_the_database_password():
    from app.instances import parse_instances
    from app.settings import Settings

    settings = Settings(
        events_token="ev-token", database_url="postgresql://u:db-pass@h/d", console_write_token="w-token"
    )
    instances = parse_instances(
        {"instance": [{"plugin": "github", "id": "a", "secrets": ["s1-secret", "s2-secret"]}]}, "t"
    )
    assert set(logs.secrets_of(settings, instances)) == {"ev-token", "db-pass", "w-token", "s1-secret", "s2-secret"}
