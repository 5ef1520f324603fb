"""The processes bench/dedup.py measures, one per run: `python bench/dedup_children.py KIND`.

    noop       a Faust no-op agent on hookstream.deliveries, built by create_worker
               (the same Faust, producer and consumer config as the real worker)
    stage      the real dedup stage: `hookstream worker` with app.stream.dedup only
    quix       hookstream's dedup decision (codec decode, core.intake.process, routing)
               in Quix Streams, state in Quix's RocksDB store with its changelog
    quix-bare  Quix's own ceiling for a dedup: key seen? (state get/set) -> forward raw bytes

Settings come from HOOKSTREAM_* variables; the bench's own knobs from BENCH_*:
BENCH_EVENTS (events to wait for), BENCH_REPORT (where to write the JSON report),
BENCH_FAUST_TUNING=off|on|deliver,monitor,batching,fetchwait,events (which parts of app.stream.faust_tuning;
`events` only changes the no-op agent: the stage's agents always use it),
BENCH_UVLOOP=1 (run the Faust kinds on uvloop), BENCH_FAUST_CONF (a JSON object of
Faust App settings merged over create_worker's: single-lever experiments),
BENCH_CPROFILE=1 (cProfile the worker's main thread, written beside the report).

A probe thread samples the number of consumed events every 20 ms and writes wall
clock and process CPU time (all threads: librdkafka's and RocksDB's count too) at the
first sample that saw an event and at the one that saw the last.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

EVENTS = int(os.environ.get("BENCH_EVENTS", "0"))
REPORT = Path(os.environ.get("BENCH_REPORT", "/dev/null"))
_cprofile = None


def start_probe(count: Callable[[], float], extra: Callable[[], dict] | None = None) -> None:
    def run() -> None:
        first = None
        while True:
            n = count()
            if n and first is None:
                first = (n, time.time(), time.process_time())
                REPORT.with_suffix(".started").touch()
            if n >= EVENTS:
                last = (n, time.time(), time.process_time())
                time.sleep(1.0)  # let the last events' effects land before reading counters
                report = {"first": first, "last": last, **(extra() if extra else {})}
                if _cprofile is not None:
                    _cprofile.disable()
                    _cprofile.dump_stats(str(REPORT.with_suffix(".pstats")))
                tmp = REPORT.with_suffix(".tmp")
                tmp.write_text(json.dumps(report))
                tmp.replace(REPORT)
                return
            time.sleep(0.02)

    threading.Thread(target=run, name="bench-probe", daemon=True).start()


def _counter_total(counter) -> float:
    return sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total"))


def run_faust(kind: str) -> None:
    import argparse

    import app.stream.app as stream_app

    try:
        import app.stream.faust_tuning as tuning
    except ModuleNotFoundError:  # a checkout from before the tuning (a "before" run)
        tuning = None
    parts = os.environ.get("BENCH_FAUST_TUNING", "on") if tuning is not None else "off"
    install_tuning = tuning.install if tuning is not None else (lambda app, *_: None)
    if (
        tuning is not None and parts != "on"
    ):  # "off", or some of deliver,monitor,batching,fetchwait,events (single-lever runs)
        chosen = set(parts.split(","))

        def install_tuning(app, fetch_max_wait_ms=None):
            if "fetchwait" in chosen and fetch_max_wait_ms is not None:
                tuning.install_fetch_wait(fetch_max_wait_ms)
            if "deliver" in chosen:
                tuning.install_fast_deliver()
            if "batching" in chosen:
                tuning.install_node_batching()
            if "monitor" in chosen:
                app.conf.Monitor = tuning.LeanMonitor

        tuning.install = install_tuning
    tuned = parts != "off"
    if os.environ.get("BENCH_UVLOOP") == "1":
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    overrides = json.loads(os.environ.get("BENCH_FAUST_CONF") or "{}")

    if overrides:
        import faust

        class App(faust.App):  # create_worker's settings, then the overrides
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **{**kwargs, **overrides})

        faust.App = App
    original = stream_app.create_worker

    def create_worker(settings, instances=None):
        worker = original(settings, instances)
        if tuned:
            install_tuning(worker.app, settings.consumer_fetch_max_wait_ms)  # idempotent: create_worker installs it too
        return worker

    if kind == "noop":
        stream_app.STREAM_MODULES = ()
        consumed = [0]

        def create(settings, instances=None):
            worker = create_worker(settings, instances)
            deliveries = worker.topic("hookstream.deliveries")

            # The stage's agents iterate with faust_tuning.events (point 8) when it is on.
            lean = tuned and hasattr(tuning, "events") and (parts == "on" or "events" in parts.split(","))
            iterate = tuning.events if lean else (lambda stream: stream.events())

            @worker.app.agent(deliveries, name="noop", concurrency=1)
            async def noop(stream):
                async for _event in iterate(stream):
                    consumed[0] += 1

            start_probe(lambda: consumed[0])
            return worker
    else:
        # The dedup stage alone: other agents (orchestration, projections) would consume
        # its output on the same core and measure something else.
        stream_app.STREAM_MODULES = ("app.stream.dedup",)

        def create(settings, instances=None):
            worker = create_worker(settings, instances)
            m = worker.metrics
            start_probe(
                lambda: _counter_total(m.received),
                lambda: {
                    "routed": _counter_total(m.routed),
                    "duplicates": _counter_total(m.duplicates),
                    "dead_lettered": _counter_total(m.dead_lettered),
                },
            )
            return worker

    stream_app.create_worker = create
    from app.cli.worker import cmd_worker

    if os.environ.get("BENCH_CPROFILE") == "1":  # deterministic profile of the main thread
        import cProfile

        global _cprofile
        _cprofile = cProfile.Profile()
        _cprofile.enable()

    cmd_worker(argparse.Namespace(web_port=None, data_dir=None, loglevel="warning"))


def run_quix(kind: str) -> None:
    try:
        from quixstreams import Application, message_context
        from quixstreams.models.serializers import Serializer
    except ImportError:
        sys.exit("quixstreams is missing: pip install -e '.[bench]'")
    from app.settings import Settings

    settings = Settings()
    group = f"{settings.topic_prefix}quix-{kind}"
    quix = Application(
        broker_address=settings.kafka_bootstrap_servers,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=str(settings.worker_data_dir),
        # The same commit cadence as the Faust worker (broker_commit_every=1000, interval 1 s).
        commit_interval=1.0,
        commit_every=1000,
        loglevel="WARNING",
        processing_guarantee="at-least-once",
    )

    class SecondOfPair(Serializer):
        def __call__(self, value, ctx):
            return value[1]

    source = quix.topic(settings.topic("hookstream.deliveries"), key_deserializer="bytes", value_deserializer="bytes")
    sink = quix.topic(
        settings.topic("hookstream.sync.control"), key_serializer="bytes", value_serializer=SecondOfPair()
    )
    consumed = [0]
    extra: dict = {"routed": 0, "duplicates": 0}

    if kind == "quix-bare":

        def dedup(value, key, timestamp, headers, state):
            consumed[0] += 1
            if state.get("seen") is not None:
                extra["duplicates"] += 1
                return []
            state.set("seen", 1)
            extra["routed"] += 1
            return [(key, value)]
    else:
        from app import codec
        from app.core import intake
        from app.core.dedup import DedupEntry
        from app.events import Delivery
        from app.plugins import get_plugin

        instances = settings.instances()
        topic_name = settings.topic("hookstream.deliveries")

        def router_for(delivery):
            instance = instances.get((delivery.plugin, delivery.instance))
            if instance is None:
                return None, None
            plugin = get_plugin(delivery.plugin)
            return instance.dedup_window_seconds, (lambda d: plugin.route(d, instance))

        def dedup(value, key, timestamp, headers, state):
            consumed[0] += 1
            ctx = message_context()
            delivery = codec.decode(Delivery, value)
            stored = state.get("entry")
            entry = DedupEntry(*stored[:4], tuple(stored[4])) if stored is not None else None
            window, route = router_for(delivery)
            outcome = intake.process(delivery, entry, ctx.partition, ctx.offset, topic_name, window, route)
            if outcome.store is intake.DELETE:
                state.delete("entry")
            elif isinstance(outcome.store, DedupEntry):
                e = outcome.store
                state.set("entry", [e.seen_at, e.expires_at, e.partition, e.offset, list(e.epochs)])
            if outcome.counted == "duplicate":
                extra["duplicates"] += 1
            elif outcome.counted == "routed":
                extra["routed"] += 1
            # Every send goes to the control topic here: the bench's data never dead-letters.
            return [(codec.encode_key(s.key), codec.encode(s.record)) for s in outcome.sends]

    sdf = quix.dataframe(source)
    sdf = sdf.apply(dedup, stateful=True, metadata=True, expand=True)
    sdf.to_topic(sink, key=lambda pair: pair[0])
    start_probe(lambda: consumed[0], lambda: dict(extra))
    quix.run()


def main() -> None:
    kind = sys.argv[1]
    if kind in ("noop", "stage"):
        run_faust(kind)
    elif kind in ("quix", "quix-bare"):
        run_quix(kind)
    else:
        sys.exit(f"unknown kind {kind!r}: noop, stage, quix, quix-bare")


if __name__ == "__main__":
    main()
