"""Every table is co-partitioned with the topic it is keyed by (STYLE rule 4).

A table's changelog partition must be its source topic's partition: the dedup
entry for a delivery key and the delivery itself, the source state and the
source's control events, always land together.
"""

from __future__ import annotations

import pytest

from app.settings import Settings
from app.topology import load_specs

# (table changelog, the topic whose records update it)
TABLES = [
    ("hookstream.dedup.changelog", "hookstream.deliveries"),
    ("hookstream.sources.changelog", "hookstream.sync.control"),
]


@pytest.mark.parametrize("changelog, source", TABLES)
def test_declared_changelog_and_source_topic_have_the_same_partitions(changelog, source):
    specs = {s.name: s for s in load_specs(Settings().topics_dir)}
    assert specs[changelog].partitions == specs[source].partitions
    assert specs[changelog].config.get("cleanup.policy") == "compact"
    assert specs[changelog].key == specs[source].key or specs[source].key in specs[changelog].key


def test_the_worker_builds_its_tables_with_the_declared_partitions(tmp_path):
    from app.stream.app import create_worker

    settings = Settings(worker_data_dir=tmp_path, embedded_broker="")
    worker = create_worker(settings, instances={})
    specs = {s.name: s for s in load_specs(settings.topics_dir)}
    tables = {t.changelog_topic.get_topic_name(): t for t in worker.app.tables.values()}
    for changelog, source in TABLES:
        table = tables[settings.topic(changelog)]
        assert table.partitions == specs[source].partitions, changelog


def test_the_outcomes_topic_is_partitioned_like_the_deliveries():
    """The dedup stage writes each copy's outcome to the partition the copy was read from."""
    specs = {s.name: s for s in load_specs(Settings().topics_dir)}
    outcomes, deliveries = specs["hookstream.deliveries.outcomes"], specs["hookstream.deliveries"]
    assert (outcomes.partitions, outcomes.key) == (deliveries.partitions, deliveries.key)
