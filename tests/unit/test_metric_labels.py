"""Metric labels come from a bounded set, whatever a sender writes (app/core/labels.py)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from app.core.labels import OTHER, ignore_rule_label, one_of
from app.stream.metrics import LoopCounter, WorkerMetrics


@pytest.mark.parametrize(
    "rule, label",
    [
        ("ping", "ping"),
        ("push.untracked_branch", "push.untracked_branch"),
        ("repository_dispatch.deploy-prod", "repository_dispatch"),
        ("repository_dispatch.anything_a_sender_chooses_" + "x" * 40, "repository_dispatch"),
        ("issues.opened", "issues"),
        ("installation.created.no_repositories", "installation"),
        ("linear.Issue", "linear"),
        ("made_up_event.x", OTHER),
        ("unknown", OTHER),
    ],
)
def test_an_ignore_rule_becomes_a_fixed_rule_an_event_family_or_other(rule, label):
    assert ignore_rule_label(rule) == label


def test_a_thousand_repository_dispatch_actions_make_one_series():
    metrics = WorkerMetrics()
    for i in range(1000):
        metrics.ignored.labels("github", ignore_rule_label(f"repository_dispatch.action-{i}")).inc()
    text = generate_latest(metrics.registry).decode()
    series = [line for line in text.splitlines() if line.startswith("hookstream_deliveries_ignored_total{")]
    assert series == ['hookstream_deliveries_ignored_total{plugin="github",rule="repository_dispatch"} 1000.0']


def test_a_value_outside_the_allowed_set_is_other():
    assert one_of("github", ("github", "linear")) == "github"
    assert one_of("evil\nplugin", ("github",)) == OTHER
    assert one_of(None, ("github",)) == OTHER


def test_a_loop_counter_renders_like_a_prometheus_counter():
    registry = CollectorRegistry()
    counter = LoopCounter("x_events", "Events", ["kind"], registry)
    counter.labels("a").inc()
    counter.labels("a").inc(2)
    counter.labels("b").inc()
    text = generate_latest(registry).decode()
    assert 'x_events_total{kind="a"} 3.0' in text and 'x_events_total{kind="b"} 1.0' in text
    assert "# TYPE x_events_total counter" in text
    with pytest.raises(ValueError):
        counter.labels("a", "b")
