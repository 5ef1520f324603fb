"""Expected failures of the command line are one line and a non-zero exit, never a traceback.

Each command runs as a user runs it (`python -m app.cli.main`, a subprocess), against a broker and a
PostgreSQL that are not there (a loopback port nothing listens on), a bad setting or a bad file.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

TOKEN = "a-user-chosen-events-token-7f3c"
WRITE_TOKEN = "a-user-chosen-write-token-2b9e"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hookstream(*argv: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOOKSTREAM_")}
    return subprocess.run(
        [sys.executable, "-m", "app.cli.main", *argv],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def nowhere() -> dict[str, str]:
    """A broker and a database that do not answer."""
    return {
        "HOOKSTREAM_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port()}",
        "HOOKSTREAM_DATABASE_URL": f"postgresql://hookstream:pa55word@127.0.0.1:{closed_port()}/hookstream",
    }


@pytest.fixture(scope="module")
def not_utf8(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("instances") / "instances.toml"
    path.write_bytes(b'[[instance]]\nplugin = "github"\nid = "caf\xe9"\nsecret = "s"\n')  # Latin-1, not UTF-8
    return path


def assert_one_line_failure(result: subprocess.CompletedProcess, *fragments: str, code: int | None = None) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode != 0 and (code is None or result.returncode == code), (result.returncode, result.stderr)
    [message] = [line for line in result.stderr.splitlines() if line.startswith("hookstream: ")]
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (("topics", "apply"), ("cannot reach the Kafka broker", "HOOKSTREAM_KAFKA_BOOTSTRAP_SERVERS")),
        (("topics", "diff"), ("cannot reach the Kafka broker",)),
        (("worker",), ("cannot reach the Kafka broker",)),
        (("db", "migrate"), ("cannot reach PostgreSQL", "HOOKSTREAM_DATABASE_URL")),
    ],
)
def test_an_unreachable_broker_or_database_is_one_line(nowhere, argv, fragments):
    result = hookstream(*argv, env=nowhere)
    assert_one_line_failure(result, *fragments)
    assert "pa55word" not in result.stderr


def test_debug_shows_the_traceback_of_an_expected_failure(nowhere):
    result = hookstream("--debug", "topics", "diff", env=nowhere)
    assert "Traceback" in result.stderr and result.returncode == 1
    assert "hookstream: error: cannot reach the Kafka broker" in result.stderr


def test_a_duration_that_reaches_before_year_one_is_one_line(nowhere):
    result = hookstream(
        "replay", "--group", "g", "--topic", "hookstream.deliveries", "--to-datetime", "10000000d", env=nowhere
    )
    assert_one_line_failure(result, "--to-datetime", "10000000d", code=2)


def test_a_port_out_of_range_is_a_settings_error(nowhere):
    result = hookstream("ingress", env={**nowhere, "HOOKSTREAM_INGRESS_PORT": "99999"})
    assert_one_line_failure(result, "HOOKSTREAM_INGRESS_PORT", "65535", code=2)


@pytest.mark.parametrize(
    "argv, option, value",
    [
        pytest.param(("dev", "--port"), "--port", "70000", id="dev-port"),
        pytest.param(("dev", "--console-port"), "--console-port", "70000", id="dev-console-port"),
        pytest.param(("dev", "--worker-port"), "--worker-port", "70000", id="dev-worker-port"),
        # The worker's port must be known (dev polls it): no free one.
        pytest.param(("dev", "--worker-port"), "--worker-port", "0", id="dev-worker-port-0"),
        pytest.param(("dev", "--broker-port"), "--broker-port", "70000", id="dev-broker-port"),
        pytest.param(("console", "--port"), "--port", "70000", id="console-port"),
        pytest.param(("worker", "--web-port"), "--web-port", "70000", id="worker-web-port"),
        # Refused, as HOOKSTREAM_WORKER_WEB_PORT=0 is, instead of ignored.
        pytest.param(("worker", "--web-port"), "--web-port", "0", id="worker-web-port-0"),
        pytest.param(("ingress", "--port"), "--port", "70000", id="ingress-port"),
    ],
)
def test_a_port_option_out_of_range_is_a_usage_error(nowhere, tmp_path, argv, option, value):
    data_dir = ("--data-dir", str(tmp_path / "data")) if argv[0] in ("dev", "worker") else ()
    result = hookstream(*argv, value, *data_dir, env=nowhere)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    [message] = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert f"argument {option}: {value} is not a port: give" in message, message


@pytest.mark.parametrize("command", ["ingress", "worker"])
def test_an_instances_file_that_is_not_utf8_is_one_line(nowhere, not_utf8, command):
    result = hookstream(command, env={**nowhere, "HOOKSTREAM_INSTANCES_FILE": str(not_utf8)})
    assert_one_line_failure(result, str(not_utf8), "not UTF-8", code=2)


def test_dev_does_not_print_user_chosen_tokens_and_names_the_redrive_one(tmp_path):
    port = closed_port()
    result = hookstream(
        "dev",
        "--data-dir",
        str(tmp_path / "dev"),
        "--port",
        str(port),
        "--no-worker",
        "--exit-after-start",
        env={"HOOKSTREAM_EVENTS_TOKEN": TOKEN, "HOOKSTREAM_CONSOLE_WRITE_TOKEN": WRITE_TOKEN},
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "hookstream dev is up" in result.stdout
    assert TOKEN not in result.stdout + result.stderr and WRITE_TOKEN not in result.stdout + result.stderr
    assert "events token: a-*** (set from HOOKSTREAM_EVENTS_TOKEN)" in result.stdout
    assert "(redrive with HOOKSTREAM_CONSOLE_WRITE_TOKEN; log" in result.stdout  # not the events token


def test_send_event_kafka_refuses_an_event_outside_its_bounds_before_producing(nowhere, tmp_path):
    event = tmp_path / "event.json"
    event.write_text(
        '{"type": "sync.requested", "source_id": "git:de\\u001b[31mmo", "occurred_at": "2024-01-01T00:00:00Z",'
        ' "request_id": "r-1", "mode": "full", "trigger": "manual"}'
    )
    result = hookstream("send", "event", "--kafka", str(event), env=nowhere)
    assert_one_line_failure(result, "not a producer event", "source_id", "no NUL, newline or escape", code=1)
    assert "cannot reach" not in result.stderr  # refused before any connection
