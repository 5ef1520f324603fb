"""The per-source states of the `sources` table, for the worker's timers.

A state this code cannot read (written by another version, or damaged) is counted under
`hookstream_control_ignored{rule="unreadable_state"}` and logged, then passed over: it must
not stop a timer for every other source (an exception in a Faust timer stops the worker).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from app.core.source_state import SourceState

log = logging.getLogger(__name__)


def readable_states(table: Any, metrics: Any, passed_over: str) -> Iterator[SourceState]:
    """Each stored state that decodes; `passed_over` says what an unreadable one misses."""
    for key, raw in list(table.data.items()):
        if raw is None:
            continue
        try:
            state = SourceState.from_json(raw)
        except ValueError as exc:
            metrics.control_ignored.labels("unreadable_state").inc()
            log.error("the state of %r does not decode, %s: %s", key, passed_over, exc)
            continue
        yield state
