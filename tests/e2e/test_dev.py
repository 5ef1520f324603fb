"""The README's first command: `hookstream dev` starts everything, takes a delivery, stops on Ctrl-C;
refuses a second dev on its data directory and a busy port; a second shell needs no variables."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import aiohttp

from app.embedded.ports import free_port
from app.instances import load_instances
from app.plugins import get_plugin
from tests.support.services import wait_until

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("HOOKSTREAM_")}


def hookstream(cwd, *argv: str, stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """A `hookstream` command from another shell: no HOOKSTREAM_* variable set."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli.main", *argv],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env={**CLEAN_ENV, "PYTHONPATH": os.getcwd()},
    )


async def test_dev_runs_everything_refuses_a_second_dev_and_busy_ports_and_serves_other_shells(tmp_path):
    from app.cli.dev import DEFAULT_INSTANCES

    port, worker_port, console_port = free_port(), free_port(), free_port()
    out_path = tmp_path / "dev.out"
    log = open(out_path, "wb")
    # In tmp_path with the default data directory (.hookstream/), as a user would run it.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli.main",
            "dev",
            "--port",
            str(port),
            "--worker-port",
            str(worker_port),
            "--console-port",
            str(console_port),
        ],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**CLEAN_ENV, "PYTHONPATH": os.getcwd()},
    )
    try:
        await wait_until(
            lambda: b"hookstream dev is up" in out_path.read_bytes() or proc.poll() is not None,
            timeout=120,
            what="dev to be up",
        )
        assert proc.poll() is None, out_path.read_text()
        # "up" means the worker has joined its group: its /readyz answers at once.
        with urllib.request.urlopen(f"http://127.0.0.1:{worker_port}/readyz", timeout=2) as r:
            assert r.status == 200
        out = out_path.read_text()
        assert f"http://127.0.0.1:{worker_port}/metrics" in out and f"http://127.0.0.1:{console_port}/" in out
        assert "initdb" not in out and "pg_ctl" not in out  # PostgreSQL's chatter is in its log file
        assert "initdb" in (tmp_path / ".hookstream" / "postgres.log").read_text()

        # A second dev on the same data directory is refused, before it touches anything.
        second = hookstream(
            tmp_path,
            "dev",
            "--port",
            str(free_port()),
            "--worker-port",
            str(free_port()),
            "--console-port",
            str(free_port()),
        )
        assert second.returncode == 1, second.stderr
        assert b"is in use by another `hookstream dev` (pid " + str(proc.pid).encode() in second.stderr
        # A dev elsewhere on a port in use is refused before anything starts.
        other = tmp_path / "other"
        third = hookstream(
            tmp_path,
            "dev",
            "--data-dir",
            str(other),
            "--port",
            str(port),
            "--worker-port",
            str(free_port()),
            "--console-port",
            str(free_port()),
        )
        assert third.returncode == 1 and f"port {port} (--port (ingress)) already in use".encode() in third.stderr, (
            third.stderr
        )
        assert not (other / "broker.log").exists() and not (other / "pg").exists()
        # The first one is unharmed.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            assert r.status == 200

        # Another shell in the same directory: the README's commands, no variables, dev on port `port`.
        lag = hookstream(tmp_path, "lag")
        assert lag.returncode == 0 and lag.stdout.startswith(b"group hookstream:") and b"Traceback" not in lag.stderr, (
            lag
        )
        sent = hookstream(
            tmp_path,
            "send",
            "delivery",
            "--plugin",
            "github",
            "--instance",
            "demo",
            "--event",
            "ping",
            "--delivery-id",
            "dev-ping-0",
            "-",
            stdin=b'{"zen": "Design for failure."}',
        )
        assert sent.returncode == 0 and b"dev-ping-0" in sent.stdout, sent

        async def traced():
            return hookstream(tmp_path, "trace", "dev-ping-0").returncode == 0

        await wait_until(traced, timeout=60, interval=0.5, what="the delivery in the ledger")

        instance = load_instances(DEFAULT_INSTANCES)[("github", "demo")]
        body = b'{"zen": "Keep it logically awesome.", "hook_id": 1}'
        headers = get_plugin("github").sign(body, instance, time.time(), delivery_id="dev-ping-1", event="ping")
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{port}/hooks/github/demo", data=body, headers=headers) as r:
                assert r.status == 202, await r.text()
                assert (await r.json())["deliveryId"] == "dev-ping-1"
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(60) in (0, 130)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    out = out_path.read_text()
    assert "stopping" in out
    assert not (tmp_path / ".hookstream" / "dev.env").exists()  # other shells no longer find a stopped dev
