"""TableWriter and Output (faust_tuning point 4) write a table as Faust's own `table[key] = value` and
`del table[key]` do.

The same sequence of writes and deletes goes, on the real broker, once through Faust's Table and
once through hookstream's TableWriter, each into the worker's dedup table on topics of
its own. Then what the world holds is compared: the changelog records as read back
from the broker (partition, key, value, in order), the persisted offset of every
changelog partition in RocksDB (what recovery starts from), and the RocksDB contents.
The persisted offset must also be the offset of the partition's last changelog record.
"""

from __future__ import annotations

import weakref

from faust.streams import _current_event
from faust.types import TP, Message

from app import topology
from app.stream.app import create_worker
from tests.support.kafka import read_all
from tests.support.services import isolated_settings, wait_until

CHANGELOG = "hookstream.dedup.changelog"


def _writes() -> list[tuple[bytes, bytes | None, int]]:
    """(key, value, source partition): overwrites, empty and large values (several produce batches
    per partition), deletes (value None) of stored keys, every partition of the table."""
    writes: list[tuple[bytes, bytes | None, int]] = []
    for i in range(400):
        key = b"github/main/d%03d" % (i % 90)
        value = b"v%d-" % i + (b"x" * 300_000 if i % 97 == 5 else b"y" * (i % 7))
        deleted = i >= 90 and i % 13 == 11  # every key was written by then
        writes.append((key, None if deleted else b"" if i % 50 == 7 else value, (i % 90) % 8))
    return writes


async def _run(broker, postgres, tmp_path, write) -> dict:
    settings = isolated_settings(broker.bootstrap, postgres.url, worker_data_dir=tmp_path)
    _, errors = await topology.apply(settings)
    assert not errors
    worker = create_worker(settings, instances={})
    app, table = worker.app, worker.topics["dedup_table"]
    deliveries = settings.topic("hookstream.deliveries")
    await app.producer.start()
    reads = []
    try:
        for offset, (key, value, partition) in enumerate(_writes()):
            # The agent's current event: the partition both paths write the table's changelog to.
            message = Message(deliveries, partition, offset, 0.0, 0, [], key, value, None)
            event = app.create_event(key, value, [], message)
            token = _current_event.set(weakref.ref(event))
            try:
                reads.append(await write(app, table, key, value, partition))
            finally:
                _current_event.reset(token)
        await app.producer.flush()
        records = await read_all(settings, CHANGELOG, min_count=len(_writes()), decode=False, timeout=60)
        last = {}
        for _, _, partition, offset in records:
            last[partition] = max(offset, last.get(partition, -1))
        changelog = settings.topic(CHANGELOG)
        store = table.data

        def persisted():
            return {p: store.persisted_offset(TP(changelog, p)) for p in range(8)}

        await wait_until(
            lambda: persisted() == {p: last.get(p) for p in range(8)},
            timeout=30,
            what="every acknowledged changelog record's offset persisted",
        )
        contents = {
            p: sorted((k, v) for k, v in store._db_for_partition(p).items() if k != store.offset_key) for p in range(8)
        }
        return {
            "changelog": sorted((partition, offset, key, value) for key, value, partition, offset in records),
            "persisted": persisted(),
            "contents": contents,
            "reads": reads,
        }
    finally:
        await app.producer.stop()


async def _fausts(app, table, key, value, partition):
    before = table.get(key)
    if value is None:
        del table[key]
    else:
        table[key] = value
    return before


async def _tuned(app, table, key, value, partition):
    from app.stream import faust_tuning

    writer = getattr(table, "_test_writer", None)
    if writer is None:
        writer = table._test_writer = faust_tuning.TableWriter(table)  # one per agent, as in the dedup agent
    before = writer.get(key, partition)
    if value is None:
        await writer.write(key, None, partition)
    else:
        await writer.set(key, value)
    return before


async def test_table_writer_writes_the_changelog_and_persisted_offsets_fausts_table_writes(broker, postgres, tmp_path):
    fausts = await _run(broker, postgres, tmp_path / "faust", _fausts)
    tuned = await _run(broker, postgres, tmp_path / "tuned", _tuned)
    assert len(tuned["changelog"]) == len(_writes())
    assert tuned["changelog"] == fausts["changelog"]
    assert tuned["persisted"] == fausts["persisted"]
    assert set(tuned["persisted"]) == set(range(8)) and None not in tuned["persisted"].values()
    assert tuned["contents"] == fausts["contents"]
    assert tuned["reads"] == fausts["reads"]
    assert any(value is None for _, _, _, value in tuned["changelog"])  # the tombstones are there
    # ... and both are what was written: the last value of each key, in its event's partition.
    expected: dict[int, dict[bytes, bytes]] = {}
    for key, value, partition in _writes():
        if value is None:
            expected.get(partition, {}).pop(key, None)
        else:
            expected.setdefault(partition, {})[key] = value
    assert tuned["contents"] == {p: sorted(expected.get(p, {}).items()) for p in range(8)}
