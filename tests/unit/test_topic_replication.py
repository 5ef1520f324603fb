"""Replication is the cluster's: the settings set it for every declared topic; topics/*.toml cannot."""

from __future__ import annotations

import pytest

from app import topology
from app.core.topology import TopicSpec, with_replication
from app.instances import ConfigError
from app.settings import Settings


def test_every_topic_gets_the_replication_factor_and_min_insync_replicas_and_keeps_its_other_configs():
    specs = [TopicSpec("a", 8, 1, {"cleanup.policy": "compact"}), TopicSpec("b", 4, 1, {"min.insync.replicas": "1"})]
    assert with_replication(specs, 3, 2) == [
        TopicSpec("a", 8, 3, {"cleanup.policy": "compact", "min.insync.replicas": "2"}),
        TopicSpec("b", 4, 3, {"min.insync.replicas": "2"}),
    ]


@pytest.mark.parametrize("replication_factor, min_insync", [(1, 2), (3, 4), (3, 0)])
def test_min_insync_replicas_must_fit_the_replication_factor(replication_factor, min_insync):
    with pytest.raises(ValueError, match="min.insync.replicas must be between 1 and the replication factor"):
        with_replication([TopicSpec("a", 8, 1)], replication_factor, min_insync)


def test_the_declared_topology_takes_the_settings():
    specs = topology.declared(Settings(topic_replication_factor=3, topic_min_insync_replicas=2, topic_prefix="p."))
    assert specs and all(s.replication_factor == 3 and s.config["min.insync.replicas"] == "2" for s in specs)
    assert all(s.name.startswith("p.hookstream.") for s in specs)
    default = topology.declared(Settings())
    assert {(s.replication_factor, s.config["min.insync.replicas"]) for s in default} == {(1, "1")}


def test_an_impossible_min_insync_replicas_is_a_configuration_error():
    with pytest.raises(ConfigError, match="HOOKSTREAM_TOPIC_MIN_INSYNC_REPLICAS"):
        topology.declared(Settings(topic_replication_factor=1, topic_min_insync_replicas=2))


@pytest.mark.parametrize(
    "line, setting",
    [
        ("replication_factor = 1\n", "HOOKSTREAM_TOPIC_REPLICATION_FACTOR"),
        ('[config]\n"min.insync.replicas" = "1"\n', "HOOKSTREAM_TOPIC_MIN_INSYNC_REPLICAS"),
    ],
)
def test_a_topic_file_that_declares_replication_is_refused_naming_the_setting(tmp_path, line, setting):
    (tmp_path / "t.toml").write_text(f'name = "t"\nkey = "k"\nvalue = "v"\npartitions = 8\n{line}')
    with pytest.raises(ConfigError, match=f"t.toml: .* is set for the whole cluster, not per topic: use {setting}"):
        topology.load_specs(tmp_path)


def test_no_shipped_topic_file_hard_codes_replication():
    for spec in topology.load_specs(Settings().topics_dir):
        assert "min.insync.replicas" not in spec.config, spec.name
