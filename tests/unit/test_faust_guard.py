"""The guard of app/stream/faust_tuning: a correctness patch that cannot install stops the worker.

An upgrade is simulated by changing what the guard expects of a target (its sha256,
or the installed versions it reads); the real check runs against the installed code.
tests/integration/test_faust_guard_worker.py does the same with a changed Faust on
disk and `hookstream worker` in a child process.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import tomllib
from pathlib import Path

import pytest

from app.instances import ConfigError
from app.settings import Settings
from app.stream import faust_tuning
from app.stream.app import create_worker
from app.stream.faust_tuning import guard

ROOT = Path(__file__).resolve().parents[2]


def _changed(*points: int) -> tuple[guard.Patch, ...]:
    """The patch table as if the code behind `points` had changed upstream."""
    return tuple(
        dataclasses.replace(
            p, targets=tuple(dataclasses.replace(t, sha256="0" * 64) if t.sha256 else t for t in p.targets)
        )
        if p.point in points
        else p
        for p in guard.PATCHES
    )


def _worker(tmp_path):
    return create_worker(Settings(worker_data_dir=tmp_path, topic_prefix="p."), instances={})


def test_every_patch_is_classified_and_the_correctness_ones_are_those_a_guarantee_needs():
    kinds = {p.point: p.kind for p in guard.PATCHES}
    assert sorted(kinds) == list(range(1, 10))
    assert {point for point, kind in kinds.items() if kind == "correctness"} == {3, 4, 5, 6}


def test_every_target_matches_the_installed_code():
    """The table is written against what is installed: a pin change without re-validation fails here."""
    assert guard.installed_versions() == guard.WRITTEN_AGAINST
    assert {p.point: guard.problems(p) for p in guard.PATCHES} == {p.point: [] for p in guard.PATCHES}


def test_the_versions_written_against_are_pinned_exactly_and_locked():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = dict(re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", d).groups() for d in project["dependencies"] if "==" in d)
    locked = dict(
        line.strip().split("==")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    for name in ("faust-streaming", "aiokafka"):
        assert pins[name] == guard.WRITTEN_AGAINST[name], name
    for name, version in guard.WRITTEN_AGAINST.items():
        assert locked[name] == version, name


@pytest.mark.parametrize("point", [3, 4, 5, 6])
def test_a_correctness_patch_that_cannot_install_stops_the_worker_naming_the_versions(monkeypatch, tmp_path, point):
    monkeypatch.setattr(guard, "PATCHES", _changed(point))
    with pytest.raises(guard.UnsafeDependencies) as raised:
        _worker(tmp_path)
    message = str(raised.value)
    assert isinstance(raised.value, ConfigError)  # the CLI prints it as one message, exit code 2
    assert "the worker will not start" in message
    assert "on faust-streaming 0.15.3, aiokafka 0.14.0" in message
    assert "written against faust-streaming 0.15.3, aiokafka 0.14.0" in message
    assert f"point {point} (" in message and "changed" in message
    assert [line for line in message.splitlines() if line.startswith("  point ")] == [
        line for line in message.splitlines() if f"point {point} (" in line
    ]


def test_the_message_names_the_installed_versions_when_they_differ(monkeypatch):
    monkeypatch.setattr(guard, "PATCHES", _changed(6))
    monkeypatch.setattr(
        guard,
        "installed_versions",
        lambda: {"faust-streaming": "0.16.0", "aiokafka": "0.15.1", "mode-streaming": "0.7.1"},
    )
    with pytest.raises(guard.UnsafeDependencies, match=r"on faust-streaming 0\.16\.0, aiokafka 0\.15\.1"):
        guard.require()


def test_code_that_is_gone_or_no_longer_called_is_reported(monkeypatch):
    gone = guard.Patch(
        6,
        "test",
        "correctness",
        (
            guard.Target("faust.transport.consumer:Consumer._fill_gap", "0" * 64),
            guard.Target("faust.transport.consumer:Consumer._drain_messages", calls="self._fill_gap("),
        ),
    )
    assert guard.problems(gone) == [
        "faust.transport.consumer:Consumer._fill_gap is gone",
        "faust.transport.consumer:Consumer._drain_messages no longer calls self._fill_gap",
    ]


def test_compiled_code_is_pinned_by_the_package_version():
    patch = next(p for p in guard.PATCHES if p.point == 8)
    assert guard.problems(patch) == []
    assert guard.problems(patch, {**guard.installed_versions(), "faust-streaming": "0.16.0"}) == [
        "faust.streams:_CStreamIterator has no source to compare and faust-streaming is not 0.15.3"
    ]


def test_a_speed_patch_that_cannot_install_falls_back_to_fausts_path_with_a_warning(monkeypatch, tmp_path, caplog):
    from faust import Topic
    from faust.sensors import Monitor

    monkeypatch.setattr(guard, "PATCHES", _changed(2, 8, 9))
    with caplog.at_level(logging.WARNING, logger=guard.__name__):
        app = _worker(tmp_path).app
    assert app.conf.Topic is Topic and app.conf.Monitor is Monitor
    topic = app.topic("p.t", key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    stream = app.stream(topic)
    assert faust_tuning.events(stream).__qualname__ == "Stream.events"
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [re.match(r"faust_tuning point (\d)", m).group(1) for m in warned] == ["2", "8", "9"]
    assert all(
        "written against faust-streaming 0.15.3" in m and "installed faust-streaming 0.15.3" in m for m in warned
    )


def test_with_every_patch_installable_the_worker_runs_the_tuned_paths(tmp_path):
    app = _worker(tmp_path).app
    assert app.conf.Topic is faust_tuning.BytesTopic and app.conf.Monitor is faust_tuning.LeanMonitor
    stream = app.stream(
        app.topic("p.t", key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    )
    assert faust_tuning.events(stream).__qualname__ != "Stream.events"
