"""The async psycopg pool and the migrations runner.

Every hookstream table lives in `settings.database_schema`; tests and the
projection rebuild use their own schema, so one server serves many isolated
stores.
"""

from __future__ import annotations

import logging
import random
from importlib import resources

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from app.core.retry import RetryPolicy
from app.settings import Settings

log = logging.getLogger(__name__)

_LOCK_ID = 0x686F6F6B  # "hook": serializes concurrent migrators


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) of every migration, in order."""
    folder = resources.files("app.store") / "migrations"
    files = sorted((p.name, p.read_text(encoding="utf-8")) for p in folder.iterdir() if p.name.endswith(".sql"))
    return files


def _conninfo_with_schema(settings: Settings) -> tuple[str, dict]:
    return settings.database_url, {"options": f"-c search_path={settings.database_schema}"}


def open_pool(settings: Settings, min_size: int = 1, max_size: int = 8) -> AsyncConnectionPool:
    """A pool whose connections use the configured schema. Caller opens (`await pool.open()`)."""
    url, kwargs = _conninfo_with_schema(settings)
    return AsyncConnectionPool(url, kwargs=kwargs, min_size=min_size, max_size=max_size, open=False)


async def connect(settings: Settings) -> psycopg.AsyncConnection:
    url, kwargs = _conninfo_with_schema(settings)
    return await psycopg.AsyncConnection.connect(url, **kwargs)


async def migrate(settings: Settings) -> list[str]:
    """Apply pending migrations in order, each in its own transaction; returns the names applied."""
    applied_now: list[str] = []
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        schema = sql.Identifier(settings.database_schema)
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        await conn.execute(sql.SQL("SET search_path TO {}").format(schema))
        await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            rows = await (await conn.execute("SELECT name FROM schema_migrations")).fetchall()
            done = {r[0] for r in rows}
            for name, text in migration_files():
                if name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(text)
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
                log.info("applied migration %s to schema %s", name, settings.database_schema)
                applied_now.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied_now


async def drop_schema(conn: psycopg.AsyncConnection, schema: str) -> None:
    """Drop `schema` and everything in it (a dev reset, a rebuild's candidate or old tables)."""
    await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


class StoreUnavailable(Exception):
    """PostgreSQL stayed unreachable through every retry a bounded write allows."""


# How long one attempt of a bounded write waits for a pool connection (PostgreSQL down: the
# pool keeps trying to reconnect meanwhile) before the attempt counts as failed.
CONNECT_WAIT_SECONDS = 5.0


def retriable(exc: BaseException) -> bool:
    """Whether a psycopg error is PostgreSQL's state, not the statement's: the connection
    failed or broke, the server is shutting down or short of resources, a lock or a timeout
    (try the work again as it is). A program limit (SQLSTATE class 54: an index row or a
    statement past what PostgreSQL can hold) is the data's fault: trying again fails again."""
    if isinstance(exc, psycopg.InterfaceError):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    return not (exc.sqlstate or "").startswith("54")


async def in_transaction(pool, work, what: str = "write", max_backoff: float = 5.0, retry: RetryPolicy | None = None):
    """Run `await work(conn)` in one transaction, retried while PostgreSQL is unreachable.

    Without `retry` it retries for as long as it takes: a stage blocks (and does not ack
    its message) rather than skip a write, so nothing is reported that was not written.
    With `retry` (the plan and batch stages: HOOKSTREAM_RETRY_*), it gives up after
    `retry.attempts` retries with `StoreUnavailable`, and the stage counts the failure.
    Only connection failures are retried; any other error (PostgreSQL refused the data)
    is raised at once: trying again cannot help.

    A connection lost while committing leaves it unknown whether the transaction
    committed: then `retry` no longer bounds it, the work is tried again until PostgreSQL
    answers (every write here is idempotent), since nothing could be counted truthfully
    before. Giving up is only for a write that certainly did not happen.
    """
    import asyncio

    backoff = 0.1
    failures = 0
    uncertain = False
    while True:
        committing = False
        try:
            async with pool.connection(timeout=CONNECT_WAIT_SECONDS if retry is not None else None) as conn:
                async with conn.transaction():
                    result = await work(conn)
                    committing = True
                return result
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if not retriable(exc):
                raise
            uncertain = uncertain or committing
            if retry is None or uncertain:
                delay, backoff = backoff, min(max_backoff, backoff * 2)
            elif retry.allows(failures):
                delay = retry.delay(failures, random.random())
            else:
                raise StoreUnavailable(
                    f"PostgreSQL unavailable during {what} after {failures + 1} attempts "
                    f"({exc.__class__.__name__}: {str(exc).strip()[:200]})"
                ) from None
            failures += 1
            log.warning("PostgreSQL unavailable during %s (%s); retrying in %.1fs", what, exc.__class__.__name__, delay)
            await asyncio.sleep(delay)
