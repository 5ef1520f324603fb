"""What one processed file batch reports in `BatchCompleted` (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from app.core.documents import Document
from app.events.counts import FileCounts


class BatchCounts(FileCounts):
    """A processed batch's counts (`FileCounts`) and its first errors: its `BatchCompleted`'s."""

    errors: list[str] = []


def count(
    docs: Sequence[Document], failures: Sequence[tuple[str, str]], deleted: int, max_errors: int = 20
) -> BatchCounts:
    """Invariant: every file of the batch is counted once, as processed (text document written),
    skipped (binary or oversize: a metadata-only document written), failed (not readable: nothing
    written) or deleted; `documents_written` is exactly the rows upserted."""
    return BatchCounts(
        processed=sum(1 for d in docs if not d.skipped),
        failed=len(failures),
        deleted=deleted,
        skipped=sum(1 for d in docs if d.skipped),
        documents_written=len(docs),
        bytes=sum(d.size for d in docs),
        errors=[f"{path}: {err}" for path, err in failures[:max_errors]],
    )
