"""What a record an agent cannot apply becomes (app.core.poison), and the retry policy (app.core.retry),
table-driven; the bounded retries of the sources (app.sources.retries) with an injected sleep."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime

import pytest

from app import codec
from app.core import poison
from app.core.retry import RetryPolicy
from app.events import Delivery, SourceConnected, SyncRequested
from app.sources import SourceError, SourceOptions, TransientSourceError
from app.sources.git import GitCommandError
from app.sources.retries import retry_transient

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def letter(value: bytes, original: Delivery | None = None, limit: int = poison.MAX_DEAD_LETTER_BYTES):
    return poison.dead_letter(
        dead_letter_id=poison.id_of("hookstream.sync.control", b"k", value),
        stage="fold",
        error="boom",
        key=b"k",
        value=value,
        topic="p.hookstream.sync.control",
        partition=3,
        offset=41,
        failed_at=T0,
        original=original,
        limit=limit,
    )


def test_a_dead_letter_id_names_the_record_by_its_topic_key_and_bytes():
    ids = {
        poison.id_of("a", b"k", b"v"),
        poison.id_of("b", b"k", b"v"),
        poison.id_of("a", b"K", b"v"),
        poison.id_of("a", b"k", b"V"),
        poison.id_of("a", None, b"v"),
    }
    assert len(ids) == 5 and all(len(i) == 24 for i in ids)
    assert poison.id_of("a", b"k", b"v") == poison.id_of("a", b"k", b"v")


def test_a_small_record_is_kept_whole_and_can_be_found_again():
    record = letter(b'{"not": "a control record"}')
    assert (record.raw, record.truncated, record.original, record.stage, record.key) == (
        b'{"not": "a control record"}',
        False,
        None,
        "fold",
        "k",
    )
    assert (record.source_topic, record.source_partition, record.source_offset) == ("p.hookstream.sync.control", 3, 41)


@pytest.mark.parametrize("size", [200_000, 1_400_000])
def test_a_record_too_large_for_a_dead_letter_keeps_its_first_bytes_and_says_where_it_is(size):
    value = b"x" * size
    record = letter(value, limit=100_000)
    encoded = codec.encode(record)
    assert len(encoded) <= 100_000
    assert record.truncated and record.raw == value[: len(record.raw)] and len(record.raw) > 50_000
    assert f"{size} bytes" in record.error and "p.hookstream.sync.control[3]@41" in record.error
    assert record.error.startswith("boom")


def test_a_delivery_too_large_for_a_dead_letter_is_kept_as_its_first_bytes_not_as_a_delivery():
    delivery = Delivery(delivery_id="d", plugin="generic-hmac", instance="a", received_at=T0, body=b"\xff" * 800_000)
    value = codec.encode(delivery)
    record = letter(value, original=delivery)
    assert record.original is None and record.truncated and value.startswith(record.raw)
    assert len(codec.encode(record)) <= poison.MAX_DEAD_LETTER_BYTES
    small = letter(
        codec.encode(delivery.model_copy(update={"body": b"x"})), original=delivery.model_copy(update={"body": b"x"})
    )
    assert small.original is not None and small.raw is None and not small.truncated


def connected(**fields) -> SourceConnected:
    """Built without validation: the models refuse these values now, records written before (or by
    hand, straight to the topic with an older model) may still carry them."""
    return SourceConnected.model_construct(
        **{
            "source_id": "git:x",
            "occurred_at": T0,
            "source_type": "git",
            "name": None,
            "config": {},
            "delivery": None,
            **fields,
        }
    )


@pytest.mark.parametrize(
    "record, problem",
    [
        (connected(config={"path": "/repo", "depth": 3, "ok": [1.5, True, None]}), None),
        (connected(name="a\x00b"), "name contains a NUL"),
        (connected(config={"path": "/r\x00"}), "config.path contains a NUL"),
        (connected(config={"lists": [{"deep": "\x00"}]}), "config.lists[0].deep contains a NUL"),
        (connected(config={"k\x00": 1}), "a key in config contains a NUL"),
        (connected(config={"x": math.inf}), "config.x is inf"),
        (connected(config={"x": math.nan}), "config.x is nan"),
        (connected(config={"x": 2**63}), "config.x is a 64-bit integer, beyond"),
        (connected(config={"x": -(2**63) + 1}), None),
        (
            SyncRequested.model_construct(
                source_id="s", occurred_at=T0, request_id="r", mode="full", trigger="t", paths=["a", "b\x00"]
            ),
            "paths[1] contains a NUL",
        ),
    ],
)
def test_what_postgresql_cannot_hold_is_named_before_it_is_folded(record, problem):
    found = poison.unstorable(record)
    assert (found is None) if problem is None else (found is not None and problem in found), found


@pytest.mark.parametrize(
    "key, source_id, problem",
    [
        (b"git:x", "git:x", None),
        (None, "git:x", "it has no key"),
        (b"git:y", "git:x", "keyed b'git:y' is for source 'git:x'"),
        ("git:é".encode(), "git:é", None),
    ],
)
def test_a_control_record_must_be_keyed_by_its_source_id(key, source_id, problem):
    found = poison.control_key_problem(key, source_id)
    assert (found is None) if problem is None else (problem in found)


def test_a_reason_names_the_error_and_is_bounded():
    assert poison.reason_of(OverflowError("date value out of range")) == "OverflowError: date value out of range"
    assert poison.reason_of(KeyError()) == "KeyError"
    assert poison.reason_of(poison.CannotApply("validate", "why")) == "why"
    assert len(poison.reason_of(ValueError("x" * 5000))) == poison.MAX_ERROR_LENGTH


# -- the retry policy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "retry, draw, expected",
    [
        (0, 0.0, 0.25),
        (0, 0.999, 0.49975),
        (1, 0.0, 0.5),
        (3, 1.0, 4.0),
        (10, 0.0, 15.0),
        (10, 1.0, 30.0),
        (500, 0.5, 22.5),
    ],
)
def test_each_wait_is_half_fixed_half_drawn_and_grows_to_its_ceiling(retry, draw, expected):
    assert RetryPolicy(6, 0.5, 30.0).delay(retry, draw) == pytest.approx(expected)


def test_a_policy_allows_its_attempts_and_its_total_wait_has_a_floor():
    policy = RetryPolicy(3, 0.5, 30.0)
    assert [policy.allows(n) for n in range(5)] == [True, True, True, False, False]
    assert policy.floor_total() == pytest.approx(0.25 + 0.5 + 1.0)
    assert not RetryPolicy(0).allows(0)


def run(coro):
    return asyncio.run(coro)


def options(sleeps: list[float], attempts: int = 2) -> SourceOptions:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return SourceOptions(
        sleep=sleep, random=lambda: 0.0, max_retries=attempts, retry_base_seconds=1.0, retry_max_seconds=10.0
    )


def failing(*errors: Exception):
    pending = list(errors)

    async def work():
        if pending:
            raise pending.pop(0)
        return "done"

    return work


def test_a_transient_failure_is_retried_with_backoff_until_it_goes_through():
    sleeps: list[float] = []
    assert (
        run(retry_transient(failing(TransientSourceError("died"), TransientSourceError("died")), options(sleeps), "x"))
        == "done"
    )
    assert sleeps == [0.5, 1.0]


def test_a_transient_failure_past_the_bound_raises_saying_how_often_it_was_tried():
    sleeps: list[float] = []
    with pytest.raises(SourceError, match="still failing after 3 attempts") as exc:
        run(retry_transient(failing(*[TransientSourceError("died")] * 5), options(sleeps), "x"))
    assert not exc.value.transient and len(sleeps) == 2


def test_a_permanent_failure_is_not_retried():
    sleeps: list[float] = []
    with pytest.raises(SourceError, match="does not exist"):
        run(retry_transient(failing(SourceError("path does not exist")), options(sleeps), "x"))
    assert sleeps == []


@pytest.mark.parametrize("returncode, transient", [(-9, True), (-15, True), (1, False), (128, False)])
def test_a_git_command_killed_by_a_signal_is_transient(returncode, transient):
    assert GitCommandError(("ls-tree",), returncode, b"").transient is transient


def test_a_dead_letters_key_is_cut_to_a_delivery_keys_bound_whatever_its_producer_wrote():
    from app.events.bounds import MAX_KEY_LENGTH

    hostile = b"a" * 100_000 + b"\x00\xff"
    record = poison.dead_letter(
        dead_letter_id="x",
        stage="decode",
        error="e",
        key=hostile,
        value=b"v",
        topic="t",
        partition=0,
        offset=1,
        failed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert record.key == "a" * MAX_KEY_LENGTH
    assert poison.key_text(b"k\x00\xff") == "k\x00\ufffd"  # NULs are replaced where rows are written
    assert poison.key_text(None) == ""
