"""Metric labels come from a bounded set, whatever a record holds (app/core/labels.py)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from app.core.labels import OTHER, LabelSet, one_of
from app.stream.metrics import IGNORE_RULE_LABELS, LoopCounter, WorkerMetrics


def test_a_label_set_keeps_its_first_values_and_counts_the_rest_as_other():
    rules = LabelSet(3)
    assert [rules(r) for r in ("ping", "push.tag", "ping", "a", "b", "push.tag", "c")] == [
        "ping",
        "push.tag",
        "ping",
        "a",
        OTHER,
        "push.tag",
        OTHER,
    ]
    assert rules.full


def test_however_many_rules_senders_make_the_ignored_counter_has_a_bounded_number_of_series():
    metrics = WorkerMetrics()
    for i in range(5 * IGNORE_RULE_LABELS):
        metrics.ignored.labels("github", metrics.ignore_rule(f"repository_dispatch.action-{i}")).inc()
    text = generate_latest(metrics.registry).decode()
    series = [line for line in text.splitlines() if line.startswith("hookstream_deliveries_ignored_total{")]
    assert len(series) == IGNORE_RULE_LABELS + 1
    assert f'hookstream_deliveries_ignored_total{{plugin="github",rule="other"}} {4.0 * IGNORE_RULE_LABELS}' in series


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
