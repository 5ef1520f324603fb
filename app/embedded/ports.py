"""Free loopback ports and waiting for a port to answer."""

from __future__ import annotations

import socket
import time


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float, alive=lambda: True) -> None:
    """Poll until `host:port` accepts a connection; `alive()` false means the server died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if not alive():
                raise RuntimeError(f"the process meant to listen on {host}:{port} exited") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listened on {host}:{port} within {timeout:.0f}s") from None
            time.sleep(0.05)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something listens on host:port: binding it (without SO_REUSEPORT, which a second
    ingress would share the port with) fails."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False
