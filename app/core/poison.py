"""A record an agent cannot apply, and its dead letter: pure.

Every agent dead-letters a record it cannot apply (it does not decode, it is
refused before it is applied, or applying it raised) and goes on: nothing stops
a stage, nothing vanishes (docs/architecture.md, invariant 7). The stages, as a
dead letter names them:

- `decode`: the bytes are not a record of the topic;
- `validate`: a record refused before anything is applied (a control record keyed
  by another source than its own; a value PostgreSQL cannot hold);
- `route`, `dedup`: the dedup/routing stage (`app.core.intake`);
- `fold`: the orchestrator's fold raised, or an effect it made cannot be sent;
- `project`: a PostgreSQL projection refused the record;
- `plan`, `batch`: a plan or a file batch that still failed after its retries.

A dead letter is bounded (`MAX_DEAD_LETTER_BYTES`): a record too large to be
carried whole keeps its first bytes only, `truncated`, and says where it is.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from app.events import DeadLettered, Delivery
from app.events.bounds import MAX_KEY_LENGTH

# The largest dead letter sent: below Apache Kafka's default record limit (1 MiB) on
# hookstream.dlq, whatever the failed record's own topic allows (deliveries: 1.5 MB).
MAX_DEAD_LETTER_BYTES = 900 * 1024
# The largest record an agent sends as an effect: Faust's producer refuses larger requests, and
# 1 MiB is Apache Kafka's default record limit.
MAX_RECORD_BYTES = 1_000_000
MAX_ERROR_LENGTH = 2000
# Ints beyond this do not fit the read model's bigint columns (nor, in JSON, most parsers).
MAX_INT64 = 2**63 - 1


# The record header `hookstream dlq redrive` sets on a record it republishes (every topic but the
# deliveries, whose records carry `redrive_of`): the id of its dead letter. The stage that applies
# the record confirms it (`RedriveAccepted`), and that retires the row.
REDRIVE_HEADER = "hookstream-redrive-of"
# The header on the file batches of a plan request that was redriven: its job ended when the plan
# failed (and a job that ends before its batches lists them as cancelled), but the operator asked
# for the plan again, so its batches are written (the write fences still keep newer documents).
REDRIVEN_PLAN_HEADER = "hookstream-redriven-plan"


class CannotApply(Exception):
    """Raised inside an agent's work for a record it must not (or cannot) apply: dead-letter it at `stage`."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


def reason_of(exc: BaseException) -> str:
    """An exception as a dead letter's reason: its type and message, one string, bounded."""
    if isinstance(exc, CannotApply):
        return exc.reason[:MAX_ERROR_LENGTH]
    text = str(exc).strip()
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:MAX_ERROR_LENGTH]


def id_of(logical_topic: str, key: bytes | None, value: bytes) -> str:
    """One dead letter per record: the same bytes on the same topic (a replay, a redrive that
    failed again) converge on one row; a redrive is told apart by its position, not its id."""
    digest = hashlib.sha256(logical_topic.encode())
    digest.update(b"\0" + (key or b"") + b"\0")
    digest.update(value)
    return digest.hexdigest()[:24]


def key_text(key: bytes | None) -> str:
    """A consumed record's key as a dead letter (and the ledger) keeps it: the failed record's key
    is anything its producer wrote, so it is cut to a delivery key's bound (an index entry, a
    label in a table), undecodable bytes replaced; NULs are the projections' to replace."""
    return (key or b"")[: 4 * MAX_KEY_LENGTH].decode("utf-8", "replace")[:MAX_KEY_LENGTH]


def dead_letter(
    *,
    dead_letter_id: str,
    stage: str,
    error: str,
    key: bytes | None,
    value: bytes,
    topic: str,
    partition: int | None,
    offset: int | None,
    failed_at: datetime,
    original: Delivery | None = None,
    limit: int = MAX_DEAD_LETTER_BYTES,
) -> DeadLettered:
    """The dead letter of the record `value` consumed at `topic[partition]@offset`, at most `limit` bytes encoded.

    A record of the deliveries topic that decoded is kept as `original` (a redrive
    republishes it as a delivery); every other as `raw`.
    """
    record = DeadLettered(
        dead_letter_id=dead_letter_id,
        key=key_text(key),
        stage=stage,
        error=error[:MAX_ERROR_LENGTH],
        failed_at=failed_at,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        original=original,
        raw=None if original is not None else value,
    )
    return bounded(record, value, limit)


def bounded(record: DeadLettered, value: bytes, limit: int = MAX_DEAD_LETTER_BYTES) -> DeadLettered:
    """`record` when it encodes within `limit` bytes; else the same dead letter keeping only the
    first bytes of the failed record (`value`) as `raw`, `truncated`, its error saying so."""
    size = len(record.__pydantic_serializer__.to_json(record))
    if size <= limit:
        return record
    note = (
        f" [the record is {len(value)} bytes, too large to keep whole: its first bytes are kept; "
        f"it is at {record.source_topic}[{record.source_partition}]@{record.source_offset}]"
    )
    shell = record.model_copy(
        update={
            "original": None,
            "raw": b"",
            "truncated": True,
            "error": record.error[: MAX_ERROR_LENGTH - len(note)] + note,
        }
    )
    room = limit - len(shell.__pydantic_serializer__.to_json(shell)) - 16
    keep = max(0, room) // 4 * 3  # raw travels base64-encoded: 4 characters per 3 bytes
    return shell.model_copy(update={"raw": value[:keep]})


def control_key_problem(key: bytes | None, source_id: str) -> str | None:
    """Why a control record must not be folded under `key`, or None.

    Every control record is keyed by its source id: that key picks the partition, and
    the partition holds the source's one state. A record keyed otherwise (or not at
    all) would fold into another source's state, or start a second state of its own
    on another partition."""
    if key is None:
        return f"a control record must be keyed by its source id ({source_id[:200]!r}); it has no key"
    if key != source_id.encode("utf-8", "surrogatepass"):
        return (
            f"a control record keyed {key[:200]!r} is for source {source_id[:200]!r}: it must be keyed by its source id"
        )
    return None


def unstorable(record: BaseModel) -> str | None:
    """Why PostgreSQL could not hold a value of `record` (so its projections would fail), or None.

    text and jsonb cannot hold NUL characters, jsonb no NaN or infinities, a bigint
    nothing beyond 2**63 - 1. Checked before a record is folded, so that the worker's
    state never takes a record its read model would refuse.
    """
    return _problem(record.model_dump(mode="python", exclude_defaults=False), "")


def _problem(value: Any, where: str) -> str | None:
    if isinstance(value, str):
        return (
            f"{where or 'a value'} contains a NUL character (PostgreSQL text cannot hold it)"
            if "\x00" in value
            else None
        )
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return (
            f"{where or 'a value'} is a {value.bit_length()}-bit integer, beyond a 64-bit one"
            if abs(value) > MAX_INT64
            else None
        )
    if isinstance(value, float):
        return (
            None
            if math.isfinite(value)
            else f"{where or 'a value'} is {value} (JSON and PostgreSQL have no such number)"
        )
    if isinstance(value, dict):
        for k, v in value.items():
            path = f"{where}.{_name(k)}" if where else _name(k)
            if isinstance(k, str) and "\x00" in k:
                return f"a key in {where or 'the record'} contains a NUL character (PostgreSQL jsonb cannot hold it)"
            found = _problem(v, path)
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _problem(v, f"{where}[{i}]")
            if found is not None:
                return found
    return None


def _name(key: Any) -> str:
    """A key as it is named in a reason: control characters escaped, at most 60 characters."""
    return str(key).encode("unicode_escape").decode("ascii")[:60]
