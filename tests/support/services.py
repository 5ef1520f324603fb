"""The session's real services: one tansu broker and one PostgreSQL, started from PyPI packages."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.settings import Settings

T = TypeVar("T")


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


def isolated_settings(bootstrap: str, database_url: str, **overrides) -> Settings:
    """Settings with a topic prefix and schema of the test's own."""
    prefix = unique_prefix()
    values = dict(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        embedded_broker="tansu",
        database_url=database_url,
        database_schema="s_" + prefix.strip(".").lower(),
        broker_session_timeout_seconds=6.0,
    )
    values.update(overrides)
    return Settings(**values)


async def wait_until(
    predicate: Callable[[], Awaitable[T] | T], timeout: float = 30.0, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll `predicate` until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        last = result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last value: {last!r})")
        await asyncio.sleep(interval)
