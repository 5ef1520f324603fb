"""Real hookstream processes for integration tests: workers (and ingresses) as child processes."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from app.embedded.ports import free_port
from app.embedded.supervisor import Child, hookstream_argv
from app.settings import Settings
from tests.support.services import wait_until


def write_instances(path: Path, instances: list[dict]) -> Path:
    """Write an instances TOML file from plain dicts (plugin, id, secret, options...)."""
    lines: list[str] = []
    for inst in instances:
        lines.append("[[instance]]")
        for key, value in inst.items():
            if key == "options":
                continue
            lines.append(f"{key} = {_toml(value)}")
        if inst.get("options"):
            lines.append("[instance.options]")
            for key, value in inst["options"].items():
                lines.append(f"{key} = {_toml(value)}")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class ChildProcess:
    """What a test does with a hookstream child process: kill, stop, ask if alive, read its log.
    Subclasses hold `child` (a Child once started) and `log_path`."""

    child: Child | None
    log_path: Path

    def kill(self) -> None:
        assert self.child is not None
        self.child.kill()

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()

    def alive(self) -> bool:
        return self.child is not None and self.child.alive

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "<no log>"


@dataclass
class WorkerProcess(ChildProcess):
    """`hookstream worker` in a child process with its own data dir and web port."""

    settings: Settings
    data_dir: Path
    log_path: Path
    web_port: int = 0
    child: Child | None = field(default=None, repr=False)

    def start(self) -> WorkerProcess:
        if not self.web_port:
            self.web_port = free_port()
        env = self.settings.to_env()
        env.update(
            {
                "HOOKSTREAM_WORKER_DATA_DIR": str(self.data_dir),
                "HOOKSTREAM_WORKER_WEB_PORT": str(self.web_port),
                "HOOKSTREAM_LOG_LEVEL": "info",
            }
        )
        self.child = Child("worker", hookstream_argv("worker"), env, self.log_path, stop_timeout=10).start()
        return self

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/metrics"

    async def ready(self) -> bool:
        """The worker's /readyz answers 200: it joined its group and resumed its streams."""
        import aiohttp

        assert self.alive(), self.log_tail()
        try:
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{self.web_port}/readyz") as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False


@dataclass
class IngressProcess(ChildProcess):
    """`hookstream ingress` in a child process on a fixed port (a restart reuses it)."""

    settings: Settings
    log_path: Path
    child: Child | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.ingress_port}"

    def start(self) -> IngressProcess:
        env = {**self.settings.to_env(), "HOOKSTREAM_LOG_LEVEL": "warning"}
        self.child = Child("ingress", hookstream_argv("ingress"), env, self.log_path, stop_timeout=10).start()
        return self

    async def ready(self, timeout: float = 30.0) -> None:
        async def answers_ready() -> bool:
            if not self.alive():
                raise AssertionError(f"the ingress exited during start:\n{self.log_tail()}")
            try:
                async with aiohttp.ClientSession() as http:
                    async with http.get(self.url + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        return r.status == 200
            except (TimeoutError, aiohttp.ClientError):
                return False

        await wait_until(answers_ready, timeout=timeout, interval=0.1, what="the ingress to be ready")


async def started_worker(settings: Settings, tmp: Path) -> WorkerProcess:
    """The topics and the schema of `settings` made, and a worker started on them (data and log under `tmp`)."""
    from app import topology
    from app.store.db import migrate

    await topology.apply(settings)
    await migrate(settings)
    return WorkerProcess(settings, tmp / "rocks", tmp / "worker.log").start()


def python() -> str:
    return sys.executable
