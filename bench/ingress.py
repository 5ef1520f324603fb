"""Ingress throughput beside its baseline, in one run on this machine.

    python bench/ingress.py [--duration 10] [--processes 1 2] [--bare-processes 1]

(a) a bare aiohttp handler that reads the body and answers 202, no Kafka;
(b) the real `hookstream ingress` (GitHub signature verification, acks=all) on an
    embedded tansu broker with the topics applied;
each under the same load: `wrk -t2 -c64 -dNs` POSTing a 2 KiB signed body
(bench/ingress.lua; a fresh X-GitHub-Delivery per request). Prints req/s, p50,
p99 for each and the ratio to the bare handler. Target (issue 2): the ingress
at >= 0.6x the bare handler's rate with p99 <= 25 ms.

wrk, the broker and the ingress share the machine's cores: trust the ratio taken
in one run more than the absolute figures (docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LUA_SCRIPT = REPO / "bench" / "ingress.lua"
SECRET = "bench secret"
BODY_BYTES = 2048
HOOK_PATH = "/hooks/github/bench"
TARGET_RATIO = 0.6
TARGET_P99_MS = 25.0


@dataclass
class Result:
    name: str
    processes: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failures: int
    server_cpu_seconds: float
    broker_cpu_seconds: float = 0.0
    load_before: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def signed_body() -> tuple[bytes, str]:
    """A 2 KiB push-like JSON body and its X-Hub-Signature-256."""
    head = (
        b'{"ref": "refs/heads/main", "before": "'
        + b"0" * 40
        + b'", "after": "'
        + b"1" * 40
        + b'", "commits": [], "padding": "'
    )
    tail = b'"}'
    body = head + b"x" * (BODY_BYTES - len(head) - len(tail)) + tail
    assert len(body) == BODY_BYTES
    return body, "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the server for {url} exited with {process.returncode}; see its log")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} was not ready within {timeout:.0f}s")
        time.sleep(0.1)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def run_wrk(url: str, body_file: Path, signature: str, duration: float, threads: int, connections: int) -> dict:
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        str(body_file),
        signature,
        HOOK_PATH,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) of `pid` and its direct children, from /proc (Linux)."""
    if pid is None:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(stat.parent.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def measure(
    name: str,
    processes: int,
    url: str,
    body_file: Path,
    signature: str,
    args: argparse.Namespace,
    server_pid: int,
    broker_pid: int | None = None,
) -> Result:
    run_wrk(url, body_file, signature, args.warmup, args.threads, args.connections)  # connections, metadata, caches
    server_before, broker_before = cpu_seconds(server_pid), cpu_seconds(broker_pid)
    load = os.getloadavg()[0]
    stats = run_wrk(url, body_file, signature, args.duration, args.threads, args.connections)
    server_cpu, broker_cpu = cpu_seconds(server_pid) - server_before, cpu_seconds(broker_pid) - broker_before
    failures = (
        stats["non_2xx"] + stats["connect_errors"] + stats["read_errors"] + stats["write_errors"] + stats["timeouts"]
    )
    return Result(
        name,
        processes,
        stats["requests"],
        stats["duration_us"] / 1e6,
        stats["p50_us"] / 1000,
        stats["p99_us"] / 1000,
        failures,
        server_cpu,
        broker_cpu,
        load,
    )


def serve_bare(port: int, processes: int) -> None:
    """(a): the same route, the body read, 202 with a JSON body; no verification, no Kafka."""
    from aiohttp import web

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"deliveryId": request.headers.get("X-GitHub-Delivery", "")}, status=202)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def one() -> None:
        app = web.Application()
        app.router.add_post("/hooks/{plugin}/{instance}", accept)
        app.router.add_get("/readyz", healthz)
        web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, reuse_port=processes > 1)

    children = []
    for _ in range(processes - 1):
        pid = os.fork()
        if pid == 0:
            one()
            os._exit(0)
        children.append(pid)
    try:
        one()
    finally:
        for pid in children:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)


def start_bare(port: int, processes: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, "--serve-bare", str(port), "--bare-processes", str(processes)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_ingress(port: int, processes: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli.main", "ingress", "--port", str(port), "--processes", str(processes)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=REPO,
        start_new_session=True,
    )


def report(results: list[Result], bare: Result) -> None:
    print()
    print(
        f"{'target':<36} {'procs':>5} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'failed':>6} {'ratio':>6}"
        f" {'server cpu':>10} {'us/req':>7} {'broker cpu':>10}"
    )
    for r in results:
        ratio = r.rate / bare.rate
        print(
            f"{r.name:<36} {r.processes:>5} {r.rate:>8,.0f} {r.p50_ms:>7.1f} {r.p99_ms:>7.1f} {r.failures:>6} {ratio:>6.2f}"
            f" {r.server_cpu_seconds / r.seconds:>9.2f}c {r.server_cpu_seconds / r.requests * 1e6:>7.0f}"
            f" {r.broker_cpu_seconds / r.seconds:>9.2f}c"
        )
    print("(server/broker cpu: cores used on average during the measured run; us/req: server CPU per request)")
    print(
        "1-minute load average before each run: "
        + ", ".join(f"{r.load_before:.1f}" for r in results)
        + f" on {os.cpu_count()} cores"
    )
    print()
    for r in results:
        if r is bare:
            continue
        ok = r.rate / bare.rate >= TARGET_RATIO and r.p99_ms <= TARGET_P99_MS and r.failures == 0
        print(
            f"ingress with {r.processes} process(es): {r.rate / bare.rate:.2f}x the bare handler, p99 {r.p99_ms:.1f} ms "
            f"(target >= {TARGET_RATIO}x, p99 <= {TARGET_P99_MS:g} ms, no failures): {'MET' if ok else 'NOT MET'}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per target (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load before each (default 2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--processes", type=int, nargs="+", default=[1, 2], help="ingress process counts to measure (default 1 2)"
    )
    parser.add_argument("--bare-processes", type=int, default=1, help="processes of the bare handler (default 1)")
    parser.add_argument(
        "--linger-ms", type=int, help="HOOKSTREAM_PRODUCER_LINGER_MS for the ingress (default: the setting's)"
    )
    parser.add_argument(
        "--log-level", default="info", help="HOOKSTREAM_LOG_LEVEL for the ingress (default info, as shipped)"
    )
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve_bare is not None:
        serve_bare(args.serve_bare, args.bare_processes)
        return 0
    if shutil.which("wrk") is None:
        print("bench/ingress.py needs wrk (a Debian package): apt-get install -y wrk", file=sys.stderr)
        return 2

    sys.path.insert(0, str(REPO))
    from app import topology
    from app.embedded.broker import EmbeddedBroker
    from app.settings import Settings

    body, signature = signed_body()
    workdir = Path(tempfile.mkdtemp(prefix="hookstream-bench-"))
    body_file = workdir / "body.json"
    body_file.write_bytes(body)
    instances = workdir / "instances.toml"
    instances.write_text(f'[[instance]]\nplugin = "github"\nid = "bench"\nsecret = "{SECRET}"\n')
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, {BODY_BYTES}-byte signed body; logs in {workdir}"
    )
    print(f"machine: {os.cpu_count()} cores shared by wrk, the server and (for the ingress) the broker")

    results: list[Result] = []
    port = free_port()
    bare_server = start_bare(port, args.bare_processes, workdir / "bare.log")
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", bare_server)
        bare = measure(
            "bare aiohttp, 202 without Kafka",
            args.bare_processes,
            f"http://127.0.0.1:{port}",
            body_file,
            signature,
            args,
            bare_server.pid,
        )
        results.append(bare)
        print(f"  bare: {bare.rate:,.0f} req/s, p50 {bare.p50_ms:.1f} ms, p99 {bare.p99_ms:.1f} ms")
    finally:
        stop(bare_server)

    broker = EmbeddedBroker(log_path=workdir / "tansu.log").start()
    try:
        env = {
            **os.environ,
            "HOOKSTREAM_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "HOOKSTREAM_TOPIC_PREFIX": "bench.",
            "HOOKSTREAM_INSTANCES_FILE": str(instances),
            "HOOKSTREAM_INGRESS_HOST": "127.0.0.1",
            "HOOKSTREAM_LOG_LEVEL": args.log_level,
        }
        if args.linger_ms is not None:
            env["HOOKSTREAM_PRODUCER_LINGER_MS"] = str(args.linger_ms)
        settings = Settings(kafka_bootstrap_servers=broker.bootstrap, topic_prefix="bench.")
        _, errors = asyncio.run(topology.apply(settings))
        if errors:
            raise SystemExit(f"could not create the topics: {errors}")
        for processes in args.processes:
            port = free_port()
            server = start_ingress(port, processes, env, workdir / f"ingress-{processes}.log")
            try:
                wait_ready(f"http://127.0.0.1:{port}/readyz", server)
                result = measure(
                    "ingress: github verify + acks=all",
                    processes,
                    f"http://127.0.0.1:{port}",
                    body_file,
                    signature,
                    args,
                    server.pid,
                    broker.process.pid,
                )
            finally:
                stop(server)
            results.append(result)
            print(
                f"  ingress x{processes}: {result.rate:,.0f} req/s, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms"
            )
    finally:
        broker.stop()

    report(results, results[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
