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
