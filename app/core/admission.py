"""Which control records the fold admits, and at what time: the clock and the state bound, pure.

A sender chooses a record's `occurred_at`; it must not choose the fold's clock.
`fold_record` folds at the record's broker timestamp (the time the log holds for
it: the send time of hookstream's own producer — the ingress, the worker, the
CLI — or the append time on a topic configured with LogAppendTime; replaying the
topic gives the same clock, so the same state). `occurred_at` is what the sender
says, kept on the records for people to read:

- a record dated more than `Policy.max_clock_skew` after its broker time is
  refused with a reason (a request is answered `sync.rejected`), never folded:
  a request dated in the year 9000 can neither hold an idempotency key for ever
  nor expire every other key of its source, and no date arithmetic overflows.
  An old date is fine (a delivery replayed days later keeps its `received_at`);
- a record whose broker timestamp is missing or outside the years 1970-8999 (a
  producer may set any 64-bit value) is refused too. A caller without a broker
  (`broker_time=None`: a test, a tool) folds at `occurred_at`.

The state bound: a record from outside the pipeline (a request, a connection,
an update) that would make the source's stored state larger than
`Policy.max_state_bytes` is refused and the state stays as it was (a changelog
record the broker refuses would stop the worker). Records the stages produce
(plans, batch completions, deadlines) are always folded: their size is bounded
by construction, and a job must be able to finish.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.core.effects import Effect, Refused
from app.core.policy import Policy
from app.core.source_state import SourceState, fold
from app.events import ControlRecord
from app.events.control import SourceConfigChanged, SourceConnected, SourceUpdated, SyncRequested
from app.events.sync import SyncRejected

_EXTERNAL = (SyncRequested, SourceConnected, SourceUpdated, SourceConfigChanged)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Kafka timestamps are milliseconds since the epoch; later than this, a deadline or an expiry a fold
# adds to it could pass the year 9999, where datetimes end.
_LAST = datetime(9000, 1, 1, tzinfo=UTC)
_LAST_MS = int((_LAST - _EPOCH).total_seconds() * 1000)


def broker_datetime(timestamp_ms: int | float | None) -> datetime | None:
    """A record's broker timestamp (milliseconds since the epoch) as a datetime; None when absent or
    outside what a datetime can hold (a producer may set any 64-bit value)."""
    if timestamp_ms is None or not 0 <= timestamp_ms < _LAST_MS:
        return None
    return _EPOCH + timedelta(milliseconds=timestamp_ms)


def clock(occurred_at: datetime, broker_time: datetime | None, policy: Policy) -> tuple[datetime, str | None]:
    """(the fold's time for a record, why it is refused or None)."""
    if broker_time is None:
        if occurred_at >= _LAST:
            return occurred_at, f"occurred_at {occurred_at.isoformat()} is later than a fold can count from"
        return occurred_at, None
    if occurred_at - broker_time > policy.max_clock_skew:
        return broker_time, (
            f"occurred_at {occurred_at.isoformat()} is more than {_duration(policy.max_clock_skew)} "
            f"after the broker's time for the record ({broker_time.isoformat()}): check the sender's clock"
        )
    return broker_time, None


def fold_record(
    state: SourceState | None,
    event: ControlRecord,
    broker_time: datetime | None,
    offset: int | None,
    policy: Policy,
    missing_time: bool = False,
) -> tuple[SourceState | None, list[Effect]]:
    """Fold `event` at its broker time, refusing what the clock rule or the state bound refuses.

    `missing_time`: the record came from the broker but carried no usable timestamp (refused).
    Returns the state to store (None: nothing to store) and the effects to send.
    """
    if offset is not None and state is not None and state.last_offset is not None and offset <= state.last_offset:
        return state, []
    now, refusal = clock(event.occurred_at, broker_time, policy)
    if missing_time:
        now, refusal = (
            min(event.occurred_at, _LAST - timedelta(days=1)),
            "the record has no broker timestamp a clock can hold",
        )
    if refusal is None:
        new_state, effects = fold(state, event, now, offset, policy)
        if not isinstance(event, _EXTERNAL) or len(new_state.to_json()) <= policy.max_state_bytes:
            return new_state, effects
        refusal = (
            f"folding it would make the source's state {len(new_state.to_json())} bytes, "
            f"over the bound of {policy.max_state_bytes} (HOOKSTREAM_MAX_SOURCE_STATE_BYTES)"
        )
    return _refuse(state, event, now, offset, refusal)


def _refuse(
    state: SourceState | None, event: ControlRecord, now: datetime, offset: int | None, reason: str
) -> tuple[SourceState | None, list[Effect]]:
    effects: list[Effect] = [Refused(event.type, reason)]
    if isinstance(event, SyncRequested):
        effects.append(
            SyncRejected(source_id=event.source_id, occurred_at=now, request_ids=[event.request_id], reason=reason)
        )
    if state is not None and offset is not None:
        state = state.model_copy(update={"last_offset": offset})
    return state, effects


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    return f"{seconds // 3600} h" if seconds % 3600 == 0 and seconds >= 3600 else f"{seconds} s"
