"""The README's first command: `hookstream dev` starts everything, takes a delivery, stops on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import aiohttp

from app.embedded.ports import free_port
from app.plugins import get_plugin
from app.instances import load_instances
from tests.support.services import wait_until


async def test_dev_runs_everything_accepts_a_signed_delivery_and_stops_cleanly_on_ctrl_c(tmp_path):
    from app.cli.dev import DEFAULT_INSTANCES

    port = free_port()
    log = open(tmp_path / "dev.out", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "app.cli.main", "dev", "--data-dir", str(tmp_path / "data"), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={k: v for k, v in os.environ.items() if not k.startswith("HOOKSTREAM_")})
    try:
        await wait_until(lambda: b"hookstream dev is up" in (tmp_path / "dev.out").read_bytes() or proc.poll() is not None,
                         timeout=120, what="dev to be up")
        assert proc.poll() is None, (tmp_path / "dev.out").read_text()
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
    out = (tmp_path / "dev.out").read_text()
    assert "stopping" in out
