"""Consumer groups in tests: commit a group's offsets, read them back, run a CLI command, fill partitions."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from app.cli.main import main
from app.settings import Settings


async def hookstream(settings: Settings, monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    """Run `hookstream ARGV` with these settings in the environment; (exit code, stdout, stderr)."""
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def fill(settings: Settings, logical: str, counts: dict[int, int], linger_ms: int = 20) -> None:
    """Write counts[p] records to partition p, all sent before any is awaited, so that with
    `linger_ms` the producer puts several records in one batch (docs/local-broker.md, row 1)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=linger_ms)
    await producer.start()
    try:
        futures = [
            await producer.send(settings.topic(logical), value=f"r{i}".encode(), key=b"k", partition=p)
            for p, n in counts.items()
            for i in range(n)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def commit(settings: Settings, group: str, offsets: dict[tuple[str, int], int]) -> None:
    """Commit offsets for an empty `group` (topics given by their declared names)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = {TopicPartition(settings.topic(t), p): o for (t, p), o in offsets.items()}
        consumer.assign(list(tps))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in tps.items()})
    finally:
        await consumer.stop()


async def committed(settings: Settings, group: str, logical: str, partitions: int = 8) -> dict[int, int]:
    """partition -> committed offset of `group` on a declared topic (-1 for none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        tps = [TopicPartition(settings.topic(logical), p) for p in range(partitions)]
        found = await admin.list_consumer_group_offsets(group, partitions=tps)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in found.items()}
