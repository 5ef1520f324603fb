"""What every command shares: settings loading, logging setup, and failing with a clear message.

Failures a user can act on become one line and a non-zero exit, never a
traceback: `CliError` raised by a command, and the few exception classes that
only ever mean "a service this command needs is unreachable" (`expected_failure`
maps them, for every command at once). Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

from pydantic import ValidationError

from app.instances import ConfigError
from app.settings import Settings

T = TypeVar("T")


class CliError(Exception):
    """A failure the user can act on: printed as `hookstream: error: …`, exit code `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def load_settings() -> Settings:
    """The settings from the environment, over those of a `hookstream dev` running here (its dev.env)."""
    from app.embedded.devstate import running_env_file

    env_file = running_env_file()
    try:
        return Settings(_env_file=env_file) if env_file is not None else Settings()  # type: ignore[call-arg]  # pydantic-settings' own init keyword
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "HOOKSTREAM_" + "_".join(str(p) for p in err["loc"]).upper()
        raise CliError(f"{name}: {err['msg']}", 2) from None


def expected_failure(exc: BaseException) -> CliError | None:
    """The one-line message for an exception that means a broker or database is unreachable
    or None when `exc` is not such a failure (then it is a bug and keeps its traceback)."""
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError

    if isinstance(exc, (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError)):
        where = (
            os.environ.get("HOOKSTREAM_KAFKA_BOOTSTRAP_SERVERS")
            or Settings.model_fields["kafka_bootstrap_servers"].default
        )
        return CliError(
            f"cannot reach the Kafka broker at {where} (HOOKSTREAM_KAFKA_BOOTSTRAP_SERVERS): {type(exc).__name__}; is it running?"
        )
    import psycopg

    if isinstance(exc, psycopg.OperationalError):
        # The first line names host and port, never the password of the URL.
        reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        return CliError(f"cannot reach PostgreSQL (HOOKSTREAM_DATABASE_URL): {reason}")
    return None


def setup_logging(level: str = "info", settings: Settings | None = None, instances=None) -> None:
    """Log to stderr in HOOKSTREAM_LOG_FORMAT, with the settings' secrets masked (app/logs.py)."""
    from app import logs

    logs.configure(
        level,
        settings.log_format if settings is not None else "text",
        logs.secrets_of(settings, instances) if settings is not None else (),
    )
    # Faust/aiokafka build debug records per event when the root logger is at DEBUG (docs/performance.md).
    for name in ("aiokafka", "kafka"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


async def on_read_model(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """`await work(conn)` on a connection to the read model's schema (the functions of `app.store`),
    or a CliError that says what to do: PostgreSQL cannot be reached, or its tables are missing
    or out of date."""
    import psycopg

    from app.store.db import connect

    try:
        conn = await connect(settings)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CliError(f"cannot reach PostgreSQL at HOOKSTREAM_DATABASE_URL: {reason}") from None
    try:
        return await work(conn)
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
        raise CliError(
            f"the read model in schema {settings.database_schema} is missing or out of date "
            f"({str(exc).strip().splitlines()[0]}): run `hookstream db migrate`",
            2,
        ) from None
    finally:
        await conn.close()


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def fail(message: str, code: int = 1) -> NoReturn:
    raise CliError(message, code)


def config_error(exc: ConfigError) -> CliError:
    return CliError(str(exc), 2)


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _port(text: str, lowest: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not lowest <= value <= 65535:
        free = " (0, a free port, cannot be used here)" if value == 0 else ""
        raise argparse.ArgumentTypeError(f"{value} is not a port: give {lowest} to 65535{free}")
    return value


def port(text: str) -> int:
    """argparse type: a TCP port, 0 (a free one) to 65535."""
    return _port(text, 0)


def fixed_port(text: str) -> int:
    """argparse type: a TCP port, 1 to 65535, for a server other processes must find at a known port."""
    return _port(text, 1)


def masked(secret: str) -> str:
    """A secret as it may be printed: its first two characters at most, then ***."""
    return (secret[:2] if len(secret) >= 12 else "") + "***"


def one_line(text: str | None, width: int) -> str:
    """`text` folded onto one line, cut to `width` characters with an ellipsis."""
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"
