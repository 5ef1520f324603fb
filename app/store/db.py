"""The async psycopg pool and the migrations runner.

Every hookstream table lives in `settings.database_schema`; tests and the
projection rebuild use their own schema, so one server serves many isolated
stores.
"""

from __future__ import annotations

import logging
from importlib import resources

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

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


async def in_transaction(pool, work, what: str = "write", max_backoff: float = 5.0):
    """Run `await work(conn)` in one transaction, retried while PostgreSQL is unreachable.

    A stage blocks (and does not ack its message) rather than skip a write, so
    nothing is reported that was not written.
    """
    import asyncio

    backoff = 0.1
    while True:
        try:
            async with pool.connection() as conn:
                async with conn.transaction():
                    return await work(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            log.warning("PostgreSQL unavailable during %s (%s); retrying in %.1fs", what, exc.__class__.__name__, backoff)
            await asyncio.sleep(backoff)
            backoff = min(max_backoff, backoff * 2)
