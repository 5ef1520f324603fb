"""How every hookstream process logs: one line per record, text or JSON (HOOKSTREAM_LOG_FORMAT), no secrets.

`configure(level, fmt, secrets)` sets up the root logger of a command;
`dict_config(...)` is the same as a `logging.config.dictConfig` dict, for the
Faust worker (which sets up logging itself, from that dict). Both put
`Redact` on the handler: every configured secret value (tokens, webhook
secrets, the database password) and anything shaped like a signature or a
bearer token is replaced by `***` in the final line, whatever logged it.

A JSON line is an object: `ts`, `level`, `logger`, `message`, and every field
given as `extra={...}` (job log lines carry `job_id`, `source_id`,
`request_ids`, `delivery_keys`); `exc` holds a traceback.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"
MASK = "***"

# Signatures as providers send them (GitHub's sha256=/sha1= hex, Standard Webhooks' v1,<base64>,
# generic HMAC hex or base64 after a prefix) and bearer tokens: masked even when no setting names them.
_SHAPES = re.compile(
    r"(?P<keep>\b(?:sha1|sha256|sha512)=|\bv1[,=]|\bBearer\s+|\btoken=|\bsignature=)(?P<secret>[A-Za-z0-9+/=_\-.]{8,})",
    re.IGNORECASE,
)
_MIN_SECRET = 4  # shorter configured values would mask ordinary words

# LogRecord's own attributes: everything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class Redact(logging.Filter):
    """Mask secret values and signature-shaped text in the record's final message (and traceback)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= _MIN_SECRET}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return _SHAPES.sub(lambda m: m.group("keep") + MASK, text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        for name, value in list(vars(record).items()):
            if name not in _STANDARD and isinstance(value, str):
                setattr(record, name, self.redact(value))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                out[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        return orjson.dumps(out, default=str).decode()


def dict_config(level: str, fmt: str, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """A `logging.config.dictConfig` dict: the root logger to stderr, in `fmt`, redacted."""
    formatter: dict[str, Any] = {"()": JsonFormatter} if fmt == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"hookstream": formatter},
        "filters": {"redact": {"()": Redact, "secrets": list(secrets)}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "hookstream",
                "filters": ["redact"],
                "stream": sys.stderr,
            }
        },
        "root": {"level": level_number(level), "handlers": ["default"]},
    }


def configure(level: str = "info", fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    import logging.config

    logging.config.dictConfig(dict_config(level, fmt, secrets))


LEVELS = ("debug", "info", "warning", "error", "critical")


def level_number(level: str) -> int:
    """The number of a level named in any case; ValueError naming the choices for anything else
    (never a silent info: `getattr(logging, ...)` would also take `root` or `basic_format`)."""
    name = level.strip().lower()
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}: one of {', '.join(LEVELS)}")
    return logging.getLevelNamesMapping()[name.upper()]


def secrets_of(settings: Any, instances: Any = None) -> list[str]:
    """Every secret value the settings and the plugin instances hold."""
    from urllib.parse import urlsplit

    found: list[str] = []
    for name in ("events_token", "github_token", "linear_api_key", "console_token", "console_write_token"):
        value = getattr(settings, name, None)
        if value is not None:
            found.append(value.get_secret_value())
    try:
        password = urlsplit(settings.database_url).password
    except ValueError:
        password = None
    if password:
        found.append(password)
    for instance in (instances or {}).values():
        found.extend(s.get_secret_value() for s in instance.secrets)
    return found
