"""Session fixtures: one real broker and one real PostgreSQL for the whole run; each test
gets its own topic prefix and schema (tests/support/services.py)."""

from __future__ import annotations

import logging

import pytest

from app.embedded.broker import EmbeddedBroker
from app.embedded.postgres import EmbeddedPostgres
from tests.support.services import isolated_settings


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    b = EmbeddedBroker(log_path=tmp_path_factory.mktemp("broker") / "tansu.log")
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    pg.start()
    yield pg
    pg.stop()


@pytest.fixture
async def settings(broker, postgres):
    """Isolated settings with the topology applied and the schema migrated."""
    from app import topology
    from app.store.db import migrate

    s = isolated_settings(broker.bootstrap, postgres.url)
    plan, errors = await topology.apply(s)
    assert not errors, errors
    await migrate(s)
    return s


@pytest.fixture(autouse=True)
def _quiet_kafka_logs():
    for name in ("aiokafka", "kafka", "faust", "mode"):
        logging.getLogger(name).setLevel(logging.WARNING)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """The fault suite's table of figures (tests/faults), gathered from the reports'
    user_properties so that it also works when the scenarios ran in xdist workers."""
    import json

    from tests.faults.checker import Figures, table

    seen: dict[str, Figures] = {}
    lines: dict[str, None] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if name == "fault_figures":
                    seen[json.dumps(value, sort_keys=True, default=str)] = Figures(**value)
                elif name == "summary_line":
                    lines[value] = None
    if lines:
        # Figures other tests print (the convergence property, the history replay).
        terminalreporter.section("figures")
        for line in lines:
            terminalreporter.write_line(line)
    figures = list(seen.values())
    if not figures:
        return
    terminalreporter.section("fault suite figures")
    for line in table(figures):
        terminalreporter.write_line(line)
    total = sum(f.acknowledged for f in figures)
    seconds = sum(f.seconds for f in figures)
    terminalreporter.write_line(
        f"{len(figures)} scenarios, {total} acknowledged deliveries, {seconds:.0f} s of scenarios"
    )
