"""Run child processes (`hookstream ingress`, `hookstream worker`) and stop them reliably.

Faust's shutdown can hang in `wait_empty` (docs/local-broker.md; faust #133/#173): stopping
sends SIGTERM, waits `stop_timeout`, then SIGKILLs. That is safe because every
stage is at-least-once with idempotent effects.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path | None = None
    stop_timeout: float = 15.0
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> Child:
        out = open(self.log_path, "ab") if self.log_path else None
        self.process = subprocess.Popen(
            self.argv,
            env={**os.environ, **self.env},
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
        if out:
            out.close()
        log.info("started %s (pid %s)", self.name, self.process.pid)
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code once the child has exited; None before it started or while it runs."""
        return self.process.poll() if self.process is not None else None

    def stop(self) -> int | None:
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs: SIGKILL", self.name, self.stop_timeout)
                self.kill()
        return proc.returncode

    def kill(self) -> None:
        proc = self.process
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)


def hookstream_argv(*args: str) -> list[str]:
    """Run `hookstream ARGS` with this interpreter (works in a venv without PATH)."""
    return [sys.executable, "-m", "app.cli.main", *args]


def wait_any_exit(children: list[Child], poll: float = 0.2) -> Child:
    """Block until one child exits; returns it."""
    while True:
        for child in children:
            if not child.alive:
                return child
        time.sleep(poll)
