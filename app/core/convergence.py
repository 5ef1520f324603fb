"""How a planner converges a source's documents on its tracked branch: pure decisions.

Syncs are level-triggered. A request means "look again"; what to write follows
from two facts the adapter answers (the fold and this module never ask the
world): the head of the tracked branch, and whether the commit the documents are
at (`base`: written completely by the last job that succeeded with no failed
file) is an ancestor of it. Invariants:

- the target is the head, never a push's `after` (a late push cannot roll the
  documents back);
- a diff is taken only from `base`, and only when `base` is an ancestor of the
  target; unknown `base` (a first sync, a failed, cancelled or timed-out last
  job), a force push or an unreachable commit list everything;
- documents already at the head are left alone (`unchanged`: "already synced").
"""

from __future__ import annotations

from typing import Any

from app.events.control import ListingKind, SyncMode


def tracked_branch(config: dict[str, Any]) -> str | None:
    """The branch a source follows: `branch` when configured, else a GitHub repository's
    `default_branch`; None when neither is known (a git source follows its HEAD)."""
    for key in ("branch", "default_branch"):
        value = config.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def untracked_push(request_branch: str | None, config: dict[str, Any]) -> bool:
    """Whether a push to `request_branch` is for another branch than the one the source tracks."""
    tracked = tracked_branch(config)
    return request_branch is not None and tracked is not None and request_branch != tracked


def listing_for(mode: SyncMode, base: str | None, head: str) -> ListingKind:
    """How to list a job's changes, given the documents' commit `base` and the branch `head`.

    `diff` means: the difference from `base`, provided the adapter finds `base` to be an
    ancestor of `head`; otherwise (a force push, an unreachable commit) a full listing.
    A `full` request always lists everything.
    """
    if mode == "full" or base is None:
        return "full"
    if base == head:
        return "unchanged"
    return "diff"


def head_lags(after: str | None, head: str, head_is_ancestor_of_after: bool) -> bool:
    """Whether the branch head a source reports is behind a push it has already announced
    (`after` descends from `head`): an API answering from a replica that has not caught up.
    The planner then waits (bounded) and asks again rather than syncing an older head."""
    return after is not None and after != head and head_is_ancestor_of_after
