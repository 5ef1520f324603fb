"""One log line per job state change, with the ids to find everything else by (`hookstream trace`).

`JobLog.folded(record, effects)` runs after the orchestrator sent a control
record's effects: a job queued, started, coalesced into, cancelled or completed
logs one line at info with the job id, source id, request ids and the
deliveries they came from (text: `key=value` words; JSON: fields). A request
deduplicated or rejected changes no job: it logs at debug (pushes for
repositories no source follows would log a line each); the delivery ledger and
`hookstream trace` keep every answer. Nothing is logged per delivery by the
dedup stage.

The delivery of a request is on its `SyncRequested`; a later line of the same
job (its start after a queue, its completion) finds it in a bounded memory of
the requests this worker folded, and says none when the worker restarted since.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from app.events import (
    SyncCancelled,
    SyncCoalesced,
    SyncCompleted,
    SyncDeduplicated,
    SyncQueued,
    SyncRejected,
    SyncRequested,
    SyncStarted,
)

log = logging.getLogger("hookstream.jobs")

MEMORY = 10_000
_LOGGED = (SyncQueued, SyncStarted, SyncCoalesced, SyncCancelled, SyncRejected, SyncCompleted, SyncDeduplicated)


class JobLog:
    def __init__(self, memory: int = MEMORY) -> None:
        self.memory = memory
        self.deliveries: OrderedDict[str, str] = OrderedDict()

    def folded(self, record: Any, effects: Iterable[Any]) -> None:
        if isinstance(record, SyncRequested) and record.delivery is not None:
            self.deliveries[record.request_id] = record.delivery.key
            while len(self.deliveries) > self.memory:
                self.deliveries.popitem(last=False)
        for effect in effects:
            if isinstance(effect, _LOGGED):
                self.line(effect)

    def line(self, effect: Any) -> None:
        request_ids = list(effect.request_ids)
        keys = [self.deliveries[r] for r in request_ids if r in self.deliveries]
        fields = {
            "event": effect.type,
            "job_id": effect.job_id,
            "source_id": effect.source_id,
            "request_ids": request_ids,
            "delivery_keys": keys,
        }
        words = [
            f"job={effect.job_id or '-'}",
            f"source={effect.source_id}",
            f"requests={','.join(request_ids) or '-'}",
            f"deliveries={','.join(keys) or '-'}",
        ]
        if isinstance(effect, SyncCompleted):
            fields.update(
                status=effect.status,
                files_listed=effect.files_listed,
                processed=effect.processed,
                failed=effect.failed,
                documents_written=effect.documents_written,
                duration_ms=effect.duration_ms,
            )
            words += [
                f"status={effect.status}",
                f"processed={effect.processed}",
                f"failed={effect.failed}",
                f"duration_ms={effect.duration_ms}",
            ]
        elif isinstance(effect, (SyncRejected, SyncCancelled)):
            fields["reason"] = effect.reason
            words.append(f"reason={effect.reason!r}")
        level = logging.DEBUG if isinstance(effect, (SyncDeduplicated, SyncRejected)) else logging.INFO
        log.log(level, "%s %s", effect.type, " ".join(words), extra=fields)
