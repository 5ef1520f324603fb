"""The base every wire model shares: frozen, strict about unknown fields, versioned."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema


class Record(BaseModel):
    """A record on a hookstream topic. Subclasses set `type` as a Literal."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_version: int = 1


def _b64_to_bytes(value: object) -> object:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError as exc:  # binascii.Error is a ValueError
            raise ValueError(f"not valid base64: {exc}") from None
    return value


# Raw bytes that travel byte-exact: standard base64 (no line breaks) on the wire.
RawBytes = Annotated[
    bytes,
    BeforeValidator(_b64_to_bytes),
    PlainSerializer(lambda b: base64.b64encode(b).decode("ascii"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]

Timestamp = AwareDatetime


def utcnow() -> datetime:
    """The wall clock, for edges only (ingress, CLI). Folds take time from events."""
    return datetime.now(timezone.utc)
