"""The base every wire model shares: frozen, strict about unknown fields, versioned.

`schema_version` names the layout a record was written in; only known versions
decode (1 today), so a record from a newer writer is refused, never misread.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema


class Record(BaseModel):
    """A record on a hookstream topic. Subclasses set `type` as a Literal."""

    # allow_inf_nan=False: a float field refuses NaN and ±Infinity (JSON has neither).
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, allow_inf_nan=False)

    schema_version: Literal[1] = 1

    if TYPE_CHECKING:
        # What the subclasses' own `type: Literal[...]` fields have in common, for the type
        # checker only: pydantic never sees it, so it adds no field, schema or wire byte.
        type: str


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
    return datetime.now(UTC)
