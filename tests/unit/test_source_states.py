"""The worker's timers read every source state through one place that passes over an unreadable one."""

from __future__ import annotations

from types import SimpleNamespace

from app.core.source_state import SourceState
from app.stream.metrics import WorkerMetrics
from app.stream.source_states import readable_states


def test_an_unreadable_state_is_counted_and_passed_over_and_the_others_are_read(caplog):
    good = SourceState(source_id="git:a")
    table = SimpleNamespace(data={b"git:a": good.to_json(), b"git:b": b'{"source_id": 42', b"git:c": None})
    metrics = WorkerMetrics()
    assert list(readable_states(table, metrics, "it is not in the sync gauges")) == [good]
    assert metrics.registry.get_sample_value("hookstream_control_ignored_total", {"rule": "unreadable_state"}) == 1
    assert "git:b" in caplog.text and "it is not in the sync gauges" in caplog.text
