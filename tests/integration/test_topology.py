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
