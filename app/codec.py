"""The one place bytes become models and models become bytes (orjson + pydantic).

Everything else in hookstream handles frozen models; a record that does not
decode raises `DecodeError` with a message a human can act on.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, TypeVar

import orjson
from pydantic import TypeAdapter, ValidationError

from app.events import TOPIC_RECORDS, ProducerEvent, Record

M = TypeVar("M", bound=Record)


class DecodeError(ValueError):
    """Bytes that are not a valid hookstream record. `errors` holds pydantic's details, if any."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


def encode(record: Record) -> bytes:
    return orjson.dumps(record.model_dump(mode="json", exclude_none=False))


def encode_key(key: str) -> bytes:
    return key.encode("utf-8")


def decode_key(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="replace")


@lru_cache(maxsize=None)
def _adapter(target: Any) -> TypeAdapter:
    return TypeAdapter(target)


def _load(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc}") from None


def validate(target: Any, data: Any) -> Any:
    try:
        return _adapter(target).validate_python(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        summary = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errors[:5])
        raise DecodeError(f"does not match the model: {summary}", errors) from None


def decode(target: type[M] | Any, raw: bytes | str) -> M:
    """Decode `raw` into `target` (a model class or an annotated union)."""
    return validate(target, _load(raw))


def decode_topic(logical_topic: str, raw: bytes) -> Record:
    """Decode a record consumed from `logical_topic` (the name without the prefix)."""
    try:
        target = TOPIC_RECORDS[logical_topic]
    except KeyError:
        raise DecodeError(f"unknown topic {logical_topic!r}") from None
    return decode(target, raw)


def decode_producer_event(raw: bytes | str | dict[str, Any]) -> Record:
    """A domain event sent by a producer (POST /events, `hookstream send event`)."""
    data = raw if isinstance(raw, dict) else _load(raw)
    return validate(ProducerEvent, data)
