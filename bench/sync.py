"""Full sync of a real git repository, end to end, beside the raw limit measured in the same run.

    python bench/sync.py [--files 10000] [--batch-size 50] [--workers 1] [--rounds 3] [--timeline]

Raw limit: read every blob with one `git cat-file --batch`, build the same documents
(sha256, language, title, text or binary) and write the same rows with PostgreSQL COPY
into a table shaped like `documents` (logged, same primary key): what a sync cannot beat.
hookstream: SyncRequested on the control topic → plan → batches → documents
upserted → SyncCompleted, on the embedded broker and PostgreSQL, with real worker
processes. The two alternate for `--rounds` rounds (each sync a new source, all rows
written anew); prints the medians in files/s and MB/s, the ratio (target ≥ 0.5×) with
each round's, and the peak resident memory of each worker (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from app import topology
from app.core.documents import to_document
from app.embedded.broker import EmbeddedBroker
from app.embedded.postgres import EmbeddedPostgres
from app.store.db import migrate
from tests.support import gitrepo
from tests.support.flows import completions, connected, requested, send_control
from tests.support.services import isolated_settings
from tests.support.stack import WorkerProcess


def raw_limit(repo: Path, commit: str, url: str, table: str = "raw_documents") -> tuple[float, int, int]:
    """Seconds to read every blob with one cat-file --batch and COPY the rows; (seconds, files, bytes)."""
    tree = gitrepo.tree_of(repo, commit)
    started = time.perf_counter()
    proc = subprocess.Popen(
        ["git", "-C", str(repo), "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    ids = "".join(f"{oid}\n" for _, oid, _ in tree.values()).encode()
    out, _ = proc.communicate(ids)
    rows, pos, total = [], 0, 0
    for path in tree:
        header_end = out.index(b"\n", pos)
        size = int(out[pos:header_end].split()[2])
        content = out[header_end + 1 : header_end + 1 + size]
        pos = header_end + 1 + size + 1
        doc = to_document(path, content, 1024 * 1024)
        rows.append((doc.path, doc.content, doc.sha256, doc.size, doc.language, doc.title, doc.is_binary))
        total += size
    with psycopg.connect(url) as conn:
        # The same rows into a table shaped like `documents` (logged, same primary key): a TEMP
        # table would skip WAL and the index and flatter the limit.
        conn.execute(
            f"CREATE TABLE {table} (source_id text, path text, content text, sha256 text, size bigint, "
            "language text, title text, is_binary boolean, PRIMARY KEY (source_id, path))"
        )
        with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(("raw", *row))
        conn.commit()
    return time.perf_counter() - started, len(rows), total


class CompletionWatcher:
    """Stays assigned to sync.completed and stops the clock the moment the record arrives."""

    def __init__(self, settings) -> None:
        from aiokafka import AIOKafkaConsumer

        self.settings = settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=5,
        )

    async def start(self) -> None:
        from aiokafka.structs import TopicPartition

        await self.consumer.start()
        topic = self.settings.topic("hookstream.sync.completed")
        tps = [TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic) or range(8))]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)

    async def wait_for(self, source_id: str, timeout: float):
        from app import codec
        from app.events import SyncCompleted

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for messages in (await self.consumer.getmany(timeout_ms=50)).values():
                for m in messages:
                    record = codec.decode(SyncCompleted, m.value)
                    if record.source_id == source_id:
                        return record
        raise TimeoutError(f"no sync.completed for {source_id} within {timeout}s")

    async def stop(self) -> None:
        await self.consumer.stop()


async def timeline(settings, since_ms: int) -> list[str]:
    """Where the time went: for each topic a sync crosses, when its first and last record
    after `since_ms` were produced (record timestamps, ms after the request)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    lines = []
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        for name in (
            "hookstream.sync.control",
            "hookstream.sync.plans",
            "hookstream.files.batches",
            "hookstream.sync.events",
            "hookstream.sync.completed",
        ):
            topic = settings.topic(name)
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or range(8))]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            stamps: list[int] = []
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for messages in (await consumer.getmany(timeout_ms=200)).values():
                    stamps += [m.timestamp for m in messages if m.timestamp >= since_ms]
            if stamps:
                stamps.sort()
                lines.append(
                    f"  {name:28} {len(stamps):6} records  first +{stamps[0] - since_ms:5} ms  "
                    f"last +{stamps[-1] - since_ms:5} ms"
                )
                if len(stamps) > 50:  # many records: how many were produced in each 100 ms
                    h = collections.Counter((t - since_ms) // 100 for t in stamps)
                    lines.append("     per 100 ms: " + " ".join(str(h.get(i, 0)) for i in range(min(h), max(h) + 1)))
    finally:
        await consumer.stop()
    return lines


def peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


async def rounds(broker, pg, repo: Path, commit: str, args, tmp: Path):
    """`args.rounds` rounds, each the raw limit then a hookstream full sync of a new source
    (so each writes all its rows anew); the workers stay up across rounds."""
    s = isolated_settings(broker.bootstrap, pg.url, batch_size=args.batch_size)
    await topology.apply(s)
    await migrate(s)
    workers = [
        WorkerProcess(
            s,
            tmp / f"rocks{i}",
            tmp / f"worker{i}.log",
        ).start()
        for i in range(args.workers)
    ]
    results = []
    try:
        # Warm-up: a tiny source, so group joins and table recovery are not in the figure.
        small = tmp / "small"
        gitrepo.build_repo(small, files={"a.md": b"# a\n"})
        await send_control(s, connected("git:warmup", small), requested("git:warmup", "full"))
        await completions(s, "git:warmup", timeout=120)
        watcher = CompletionWatcher(s)
        await watcher.start()
        try:
            for n in range(1, args.rounds + 1):
                raw = raw_limit(repo, commit, pg.url, f"raw_documents_{n}")
                source = f"git:bench-{n}"
                started = time.perf_counter()
                started_ms = int(time.time() * 1000)
                await send_control(s, connected(source, repo), requested(source, "full"))
                done = await watcher.wait_for(source, timeout=900)
                seconds = time.perf_counter() - started
                print(
                    f"round {n}: raw limit {raw[0]:.2f}s, hookstream {seconds:.2f}s, ratio {raw[0] / seconds:.2f}x",
                    flush=True,
                )
                if args.timeline:
                    print("timeline (record timestamps after the request):")
                    print("\n".join(await timeline(s, started_ms)))
                results.append((raw, seconds, done))
        finally:
            await watcher.stop()
        peaks = [peak_rss_mib(w.child.process.pid) for w in workers]
        return results, peaks
    finally:
        for w in workers:
            w.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="raw limit and sync measured this many times, "
        "alternating; the figures are the medians (this kind of machine varies by +-25%% run to run)",
    )
    parser.add_argument(
        "--timeline", action="store_true", help="print when each topic's first and last record of the sync was produced"
    )
    parser.add_argument("--keep-logs", type=Path, help="copy the broker and worker logs here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hookstream-bench-") as tmpdir:
        tmp = Path(tmpdir)
        repo = tmp / "repo"
        t = time.perf_counter()
        (commit,) = gitrepo.build_repo(repo, files=gitrepo.synthetic_files(args.files, seed=42))
        print(f"repository: {args.files} files generated in {time.perf_counter() - t:.1f}s")
        broker = EmbeddedBroker(log_path=tmp / "broker.log").start()
        pg = EmbeddedPostgres(tmp / "pg").start()
        try:
            results, peaks = asyncio.run(rounds(broker, pg, repo, commit, args, tmp))
        finally:
            pg.stop()
            broker.stop()
            if args.keep_logs:
                import shutil

                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for log in tmp.glob("*.log"):
                    shutil.copy(log, args.keep_logs / log.name)

    raw_s = statistics.median(r[0][0] for r in results)
    sync_s = statistics.median(r[1] for r in results)
    _, raw_files, raw_bytes = results[0][0]
    done = results[-1][2]
    mb = raw_bytes / 1e6
    print()
    print(f"medians of {len(results)} round(s)             {'seconds':>8} {'files/s':>9} {'MB/s':>7}")
    print(f"{'raw limit (cat-file --batch + COPY)':34} {raw_s:8.2f} {raw_files / raw_s:9.0f} {mb / raw_s:7.1f}")
    print(f"{'hookstream full sync, end to end':34} {sync_s:8.2f} {done.files_listed / sync_s:9.0f} {mb / sync_s:7.1f}")
    print()
    print(
        f"ratio: {raw_s / sync_s:.2f}x the raw limit (target >= 0.5x); per round: "
        + ", ".join(f"{r[0][0] / r[1]:.2f}x" for r in results)
    )
    print(
        f"sync.completed: status={done.status} files={done.files_listed} processed={done.processed} "
        f"skipped={done.skipped} failed={done.failed} batches={done.batches} bytes={done.bytes}"
    )
    print(
        f"batch size {args.batch_size}, {args.workers} worker(s); peak worker RSS: "
        + ", ".join(f"{p:.0f} MiB" for p in peaks)
    )


if __name__ == "__main__":
    main()
