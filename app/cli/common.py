"""What every command shares: settings loading, logging setup, and failing with a clear message."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Awaitable, NoReturn, TypeVar

from pydantic import ValidationError

from app.settings import ConfigError, Settings

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
        return Settings(_env_file=env_file) if env_file is not None else Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "HOOKSTREAM_" + "_".join(str(p) for p in err["loc"]).upper()
        raise CliError(f"{name}: {err['msg']}", 2) from None


def setup_logging(level: str = "info", settings: Settings | None = None, instances=None) -> None:
    """Log to stderr in HOOKSTREAM_LOG_FORMAT, with the settings' secrets masked (app/logs.py)."""
    from app import logs

    logs.configure(level, settings.log_format if settings is not None else "text",
                   logs.secrets_of(settings, instances) if settings is not None else ())
    # Faust/aiokafka build debug records per event when the root logger is at DEBUG (PERF.md).
    for name in ("aiokafka", "kafka"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


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


def one_line(text: str | None, width: int) -> str:
    """`text` folded onto one line, cut to `width` characters with an ellipsis."""
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"
