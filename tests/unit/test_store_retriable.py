"""Which PostgreSQL errors the stages try again (PostgreSQL's state) and which dead-letter (the data's)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors
from psycopg_pool import PoolTimeout

from app.store.db import retriable
from app.stream.poison import is_infrastructure


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.OperationalError("connection refused"),  # no SQLSTATE: the client could not connect
        errors.ConnectionFailure("x"),
        errors.AdminShutdown("x"),
        errors.TooManyConnections("x"),
        errors.DiskFull("x"),
        errors.LockNotAvailable("x"),
        errors.QueryCanceled("x"),
        PoolTimeout("no connection within 5 s"),
        psycopg.InterfaceError("the connection is closed"),
    ],
)
def test_postgresqls_own_state_is_tried_again(exc):
    assert retriable(exc) and is_infrastructure(exc)


@pytest.mark.parametrize(
    "exc",
    [
        errors.ProgramLimitExceeded("index row size 3000 exceeds btree version 4 maximum 2704"),
        errors.StatementTooComplex("x"),
        errors.UntranslatableCharacter("x"),
        psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"),
        ValueError("x"),
    ],
)
def test_what_the_data_caused_is_not_tried_again(exc):
    assert not retriable(exc) and not is_infrastructure(exc)
