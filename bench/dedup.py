"""The dedup stage's throughput beside its baselines, in one run on this machine.

    python bench/dedup.py [--events 200000] [--keys 100000] [--repeat 1]
                          [--variants noop-stock,noop,stage,quix,quix-bare] [--quix-python PATH]

A fresh embedded tansu broker for each run; `--events` deliveries over `--keys` distinct keys
(generic-hmac deliveries whose ~1 KiB body is a producer `sync.requested`, each
key seen events/keys times, redeliveries inside the 24 h window, shuffled),
produced to a fresh `hookstream.deliveries` before each run; then, one after
another, each in its own process (bench/dedup_children.py):

    noop-stock a Faust no-op agent as Faust ships (create_worker's config, no faust_tuning)
    noop       the same with app/stream/faust_tuning/, as the worker runs: the ceiling
    stage      hookstream's dedup stage: `hookstream worker` running app.stream.dedup
    quix       the same decision (decode, core.intake.process, route, encode) in Quix
               Streams, RocksDB state with changelog, same keys and commit cadence
    quix-bare  Quix deduplicating on the key alone and forwarding raw bytes
    stage-baseline  the stage of another checkout (`--baseline PATH`, e.g. `git worktree add`
               or `git archive` of the commit to compare with), run the same way: a change's
               cost measured before and after in one run (`--variants stage,stage-baseline --repeat 3`)

events/s is taken from the first to the last consumed delivery; events per CPU-second
divides by the process's CPU time over the same span (all its threads), i.e. per core.
Targets (issue 3): stage >= 0.8x the Faust no-op, goal >= 1.0x Quix per core.

The broker and the children share the machine's cores with whatever else runs:
trust ratios taken in one run more than absolute figures (docs/performance.md).

Single levers: `--faust-tuning off` (or some of deliver,monitor,batching,fetchwait,events) runs the
Faust kinds without (parts of) app/stream/faust_tuning/, `--uvloop` on uvloop,
`--faust-conf '{"producer_linger_ms": 5}'` with Faust settings overridden.
`--profile stage` records a py-spy profile (GIL-holding samples) of that run.
Quix needs the `bench` extra: pip install -e '.[bench]' (see pyproject.toml).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHILDREN = Path(__file__).resolve().parent / "dedup_children.py"
VARIANTS = ("noop-stock", "noop", "stage", "quix", "quix-bare", "stage-baseline")
DEFAULT_VARIANTS = VARIANTS[:5]
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
INSTANCE = "bench"


@dataclass
class Run:
    variant: str
    events: int
    seconds: float
    cpu_seconds: float
    report: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def per_cpu(self) -> float:
        return self.events / self.cpu_seconds if self.cpu_seconds > 0 else float("nan")


def deliveries(events: int, keys: int, body_bytes: int, seed: int = 3) -> list[tuple[bytes, bytes]]:
    """`events` encoded deliveries over `keys` keys: every key at least once, shuffled, event
    time growing with the position (so every redelivery falls inside its 24 h window)."""
    import orjson

    from app import codec
    from app.events import Delivery, SyncRequested

    rng = random.Random(seed)
    order = [i % keys for i in range(events)]
    rng.shuffle(order)
    bodies: dict[int, bytes] = {}
    out = []
    for position, i in enumerate(order):
        body = bodies.get(i)
        if body is None:
            paths = []
            event = SyncRequested(
                source_id=f"src-{i % 64}",
                occurred_at=T0,
                request_id=f"req-{i}",
                mode="incremental",
                trigger="producer",
                paths=paths,
                before="0" * 40,
                after=f"{i:040x}",
            )
            size = len(orjson.dumps(event.model_dump(mode="json")))
            while size < body_bytes:
                paths.append(f"docs/section-{i % 97}/page-{len(paths)}.md")
                size += len(paths[-1]) + 3
            event = event.model_copy(update={"paths": paths})
            body = bodies[i] = orjson.dumps(event.model_dump(mode="json"))
        d = Delivery(
            delivery_id=f"d-{i:08d}",
            plugin="generic-hmac",
            instance=INSTANCE,
            received_at=T0 + timedelta(milliseconds=10 * position),
            body=body,
        )
        out.append((codec.encode_key(d.key), codec.encode(d)))
    return out


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=20, max_batch_size=1024 * 1024, max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        pending = []
        for key, value in records:
            pending.append(await producer.send(topic, value=value, key=key))
            if len(pending) >= 20000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def quix_python(explicit: str | None) -> str:
    """An interpreter that has quixstreams (it pins pydantic<2.14, so it may live in a venv of its own)."""
    candidates = [explicit] if explicit else [sys.executable, os.environ.get("HOOKSTREAM_BENCH_QUIX_PYTHON")]
    for python in filter(None, candidates):
        ok = subprocess.run([python, "-c", "import quixstreams"], capture_output=True).returncode == 0
        if ok:
            return python
        if explicit:
            break
    sys.exit(
        "bench/dedup.py: the Quix Streams baselines need quixstreams: pip install -e '.[bench]'\n"
        "  (quixstreams pins pydantic<2.14 and pydantic-settings<2.16: to keep newer ones in this venv,\n"
        "   install it in a venv of its own and pass --quix-python /that/venv/bin/python),\n"
        "  or leave the Quix runs out: --variants noop,stage"
    )


def run_variant(variant: str, args, broker, records, work: Path, instances_file: Path, n: int) -> Run:
    from app import topology
    from app.embedded.ports import free_port
    from app.embedded.supervisor import Child
    from app.settings import Settings

    prefix = f"b{n}."
    settings = Settings(
        kafka_bootstrap_servers=broker.bootstrap,
        topic_prefix=prefix,
        embedded_broker="tansu",
        instances_file=instances_file,
        broker_session_timeout_seconds=6.0,
        worker_data_dir=work / f"state-{n}",
        worker_web_port=free_port(),
        dedup_purge_interval_seconds=3600.0,
    )
    plan, errors = asyncio.run(topology.apply(settings))
    if errors:
        sys.exit(f"topics apply failed: {errors}")
    asyncio.run(produce(broker.bootstrap, settings.topic("hookstream.deliveries"), records))

    report_path = work / f"report-{n}.json"
    env = settings.to_env()
    env.update(
        {
            "BENCH_EVENTS": str(len(records)),
            "BENCH_REPORT": str(report_path),
            "BENCH_FAUST_TUNING": "off" if variant == "noop-stock" else args.faust_tuning,
            "BENCH_UVLOOP": "1" if args.uvloop == "all" or variant in args.uvloop.split(",") else "0",
            "BENCH_FAUST_CONF": args.faust_conf or "",
            "PYTHONPATH": str(args.baseline if variant == "stage-baseline" else REPO),
        }
    )
    python = args.quix_python if variant.startswith("quix") else sys.executable
    log_path = work / f"{variant}-{n}.log"
    kind = {"noop-stock": "noop", "stage-baseline": "stage"}.get(variant, variant)
    children = args.baseline / "bench" / CHILDREN.name if variant == "stage-baseline" else CHILDREN
    child = Child(variant, [python, str(children), kind], env, log_path, stop_timeout=10).start()
    profiler = None
    try:
        deadline = time.monotonic() + args.timeout
        while not report_path.exists():
            if not child.alive:
                sys.exit(f"{variant} exited early; its log ({log_path}):\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                sys.exit(
                    f"{variant} did not consume {len(records)} events within {args.timeout:.0f}s:\n{_tail(log_path)}"
                )
            started = report_path.with_suffix(".started").exists()
            if variant in args.profile and profiler is None and started:
                profiler = _start_profiler(child.process.pid, work / f"{variant}-{n}.speedscope.json", args)
            time.sleep(0.1)
    finally:
        if profiler is not None:
            profiler.wait(timeout=args.profile_seconds + 30)
        child.stop()
    report = json.loads(report_path.read_text())
    (n0, w0, c0), (n1, w1, c1) = report["first"], report["last"]
    return Run(variant, int(n1 - n0), w1 - w0, c1 - c0, report)


def _start_profiler(pid: int, out: Path, args) -> subprocess.Popen:
    candidates = [
        shutil.which("py-spy"),
        Path(sys.executable).parent / "py-spy",
        Path(args.quix_python or "").parent / "py-spy",
    ]
    py_spy = next((str(c) for c in candidates if c and Path(c).is_file()), None)
    if py_spy is None:
        sys.exit("--profile needs py-spy: pip install py-spy")
    cmd = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(args.profile_seconds),
        "--rate",
        "200",
        "--format",
        "speedscope",
        "--output",
        str(out),
        "--nonblocking",
        "--gil",
    ]
    print(f"  profiling pid {pid} for {args.profile_seconds}s -> {out}", flush=True)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "<no log>"


def print_table(runs: list[Run], events: int, keys: int) -> None:
    by: dict[str, list[Run]] = {}
    for r in runs:
        by.setdefault(r.variant, []).append(r)
    med = {v: (statistics.median(r.rate for r in rs), statistics.median(r.per_cpu for r in rs)) for v, rs in by.items()}
    print(f"\n{events:,} deliveries over {keys:,} keys, medians of {max(len(rs) for rs in by.values())} run(s)")
    print(f"{'variant':<10} {'events/s':>10} {'events/cpu-s':>13}  runs (events/s)   checks")
    for v, rs in by.items():
        checks = rs[-1].report
        check = (
            ""
            if v.startswith("noop")
            else f"routed {int(checks.get('routed', 0)):,} dup {int(checks.get('duplicates', 0)):,}"
        )
        print(f"{v:<10} {med[v][0]:>10,.0f} {med[v][1]:>13,.0f}  {' '.join(f'{r.rate:,.0f}' for r in rs):<17} {check}")
    if "stage" in med:
        s = med["stage"]
        for base in ("noop-stock", "noop", "quix", "quix-bare", "stage-baseline"):
            if base in med:
                b = med[base]
                print(f"stage/{base:<9}: {s[0] / b[0]:.2f}x events/s, {s[1] / b[1]:.2f}x per CPU-second")
    print("targets (issue 3): stage >= 0.8x the Faust no-op (floor); stage >= 1.0x Quix per core (goal)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--keys", type=int, default=100_000)
    p.add_argument("--body-bytes", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=1, help="runs of each variant (medians are printed)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    p.add_argument("--baseline", type=Path, help="another checkout whose stage the stage-baseline variant runs")
    p.add_argument("--quix-python", help="interpreter with quixstreams (default: this one)")
    p.add_argument(
        "--faust-tuning",
        default="on",
        help="on, off, or some of deliver,monitor,batching,fetchwait,events (app/stream/faust_tuning/)",
    )
    p.add_argument(
        "--uvloop",
        nargs="?",
        const="all",
        default="",
        help="run on uvloop: all Faust variants, or the comma-separated ones given",
    )
    p.add_argument("--faust-conf", help="JSON object of Faust settings to override (single-lever experiments)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds one run may take")
    p.add_argument("--profile", default="", help="variants to profile with py-spy (comma-separated)")
    p.add_argument("--profile-seconds", type=int, default=15)
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, profiles)")
    args = p.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variant(s) {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    if "stage-baseline" in variants and not (args.baseline and (args.baseline / "bench" / CHILDREN.name).is_file()):
        p.error("stage-baseline needs --baseline PATH, a checkout with bench/dedup_children.py")
    if args.keys > args.events:
        p.error("--keys must not exceed --events")
    if any(v.startswith("quix") for v in variants):
        args.quix_python = quix_python(args.quix_python)
    args.profile = [v for v in args.profile.split(",") if v]

    from app.embedded.broker import EmbeddedBroker

    work = Path(tempfile.mkdtemp(prefix="bench-dedup-"))
    instances_file = work / "instances.toml"
    instances_file.write_text(
        f'[[instance]]\nplugin = "generic-hmac"\nid = "{INSTANCE}"\nsecret = "bench secret"\ndedup_window = "24h"\n'
    )
    t = time.monotonic()
    records = deliveries(args.events, args.keys, args.body_bytes)
    print(
        f"built {len(records):,} deliveries over {args.keys:,} keys "
        f"({sum(len(v) for _, v in records) / len(records):,.0f} B each) in {time.monotonic() - t:.1f}s",
        flush=True,
    )
    runs: list[Run] = []
    try:
        n = 0
        for _ in range(args.repeat):
            for variant in variants:
                n += 1
                # A fresh in-memory broker per run: tansu keeps every record of earlier runs
                # in memory, and a variant run later would pay for the ones before it.
                broker = EmbeddedBroker(log_path=work / f"tansu-{n}.log").start()
                try:
                    run = run_variant(variant, args, broker, records, work, instances_file, n)
                finally:
                    broker.stop()
                runs.append(run)
                print(
                    f"  {variant:<10} {run.rate:>9,.0f} events/s  {run.per_cpu:>9,.0f} events/cpu-s  "
                    f"({run.events:,} events in {run.seconds:.1f}s, cpu {run.cpu_seconds:.1f}s)",
                    flush=True,
                )
    finally:
        if args.keep or args.profile:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_table(runs, args.events, args.keys)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
