"""Migrations against the real PostgreSQL: applied in order, recorded, idempotent."""

from __future__ import annotations

import psycopg

from app.store.db import migrate, migration_files
from tests.support.services import isolated_settings


async def test_migrations_apply_once_and_are_recorded(broker, postgres):
    s = isolated_settings(broker.bootstrap, postgres.url)
    first = await migrate(s)
    assert first == [name for name, _ in migration_files()]
    assert await migrate(s) == []
    async with await psycopg.AsyncConnection.connect(s.database_url) as conn:
        rows = await (
            await conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (s.database_schema,)
            )
        ).fetchall()
    tables = {r[0] for r in rows}
    assert {"schema_migrations", "applied_offsets", "sources", "documents", "sync_jobs", "dlq"} <= tables
