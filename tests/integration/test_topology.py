"""Topics apply/diff against the real broker."""

from __future__ import annotations

from app import topology
from app.core.topology import TopicSpec
from tests.support.services import isolated_settings


async def test_apply_creates_every_declared_topic_then_reports_in_sync(broker, postgres):
    s = isolated_settings(broker.bootstrap, postgres.url)
    first, errors = await topology.apply(s)
    assert not errors
    declared = topology.load_specs(s.topics_dir, s.topic_prefix)
    assert {t.name for t in first.missing} == {t.name for t in declared}
    again, errors = await topology.apply(s)
    assert again.in_sync and not errors


async def test_diff_reports_a_partition_mismatch_it_cannot_fix(broker, postgres):
    s = isolated_settings(broker.bootstrap, postgres.url)
    declared = topology.load_specs(s.topics_dir, s.topic_prefix)
    wrong = declared[0]
    admin = topology.admin_client(s)
    await admin.start()
    try:
        await topology.create(admin, [TopicSpec(wrong.name, wrong.partitions + 1, 1, dict(wrong.config))])
        _, plan = await topology.plan(s, admin)
    finally:
        await admin.close()
    assert [d.what for d in plan.differences] == ["partitions"]
    assert plan.differences[0].topic == wrong.name
    assert len(plan.missing) == len(declared) - 1


async def test_require_topics_names_the_command_to_run(broker, postgres):
    s = isolated_settings(broker.bootstrap, postgres.url)
    try:
        await topology.require_topics(s, ["hookstream.deliveries"])
    except topology.MissingTopics as exc:
        assert "hookstream topics apply" in str(exc)
        assert exc.names == [s.topic("hookstream.deliveries")]
    else:
        raise AssertionError("missing topics were not reported")


async def test_replication_comes_from_the_settings_for_apply_and_diff_alike(broker, postgres):
    """One broker here: topics are created with the settings' 1 and 1; the same cluster checked with a
    three-broker profile's settings (3 and 2) differs on every topic in exactly those two."""
    s = isolated_settings(broker.bootstrap, postgres.url, topic_replication_factor=1, topic_min_insync_replicas=1)
    _, errors = await topology.apply(s)
    assert not errors
    admin = topology.admin_client(s)
    await admin.start()
    try:
        specs, plan = await topology.plan(s, admin)
        state = await topology.cluster_state(admin, [spec.name for spec in specs])
        three = s.model_copy(update={"topic_replication_factor": 3, "topic_min_insync_replicas": 2})
        _, plan_three = await topology.plan(three, admin)
    finally:
        await admin.close()
    assert plan.in_sync
    assert {name: (t.replication_factor, t.config.get("min.insync.replicas")) for name, t in state.items()} == {
        spec.name: (1, "1") for spec in specs
    }
    assert sorted((d.topic, d.what, d.declared, d.actual) for d in plan_three.differences) == sorted(
        [(spec.name, "replication factor", "3", "1") for spec in specs]
        + [(spec.name, "config min.insync.replicas", "2", "1") for spec in specs]
    )
