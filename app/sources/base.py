"""What a source adapter is: list a request's changes, fetch their content.

An adapter is built per source from the source's config (`get_adapter` in
`app.sources`) and is an async context manager: `aclose()` ends whatever it
holds (an HTTP session). Listing and fetching never decide anything about
documents; they report what the source says, byte-exact.

Listing is level-triggered (`SourceAdapter.list_changes`): the adapter answers
the head of the source's tracked branch and, through `list_diff`, whether the
commit the documents are at is an ancestor of it; `app.core.convergence`
decides between a full listing, a diff and nothing. A request's `after` is
never the target (a late push would roll the documents back).

Errors that make a whole listing or batch impossible (a missing repository, a
revoked installation, a rate limit that outlasts our patience) raise
`SourceError` with a message a person can act on. A single file that cannot be
read is not such an error: `fetch` yields it with its reason, so the batch
counts it as failed and goes on.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from app.core.convergence import head_lags, listing_for
from app.core.retry import RetryPolicy
from app.events.control import ListingKind
from app.events.sync import FileChange, PlanRequested


class SourceError(Exception):
    """A source cannot be listed or read. The message says what and, where known, what to do.

    `transient` says whether trying again later may succeed (a reader process that died, a
    git command killed by a signal): the plan and batch stages retry those with backoff
    (`app.sources.retries.retry_transient`) before they count the failure. A permanent one
    (a missing path, a 404, a bad config) fails at once. An HTTP adapter retries its own
    requests (5xx, 429, timeouts: `Attempts`); what it raises once those are spent is final.
    """

    transient: bool = False


class TransientSourceError(SourceError):
    """A failure that may not happen again: worth retrying (with backoff, a bounded number of times)."""

    transient = True


class MissingExtraError(SourceError):
    """An optional dependency is not installed; the message names the `pip install` that cures it."""


@dataclass(frozen=True)
class Listing:
    """The changes that bring the documents to `commit`, the head of the tracked branch.

    `kind` says how they were listed (`full`, `diff` from the request's `base`, or
    `unchanged`: nothing to do); `reason` says why a diff was not possible when an
    incremental request was listed in full.
    """

    files: list[FileChange]
    commit: str | None
    kind: ListingKind
    reason: str | None = None

    @property
    def upserts(self) -> list[FileChange]:
        return [f for f in self.files if f.change == "upsert"]

    @property
    def deletes(self) -> list[FileChange]:
        return [f for f in self.files if f.change == "delete"]


class FileAt(NamedTuple):
    """One path at one commit (`SourceAdapter.read_file`): its exact bytes; or None, with `problem`
    saying why when the path exists but is not read (a directory, too large), else absent."""

    content: bytes | None
    problem: str | None = None


class Fetched(NamedTuple):
    """One file's content: `content` is the exact bytes, or None with `error` saying why it could not be read."""

    change: FileChange
    content: bytes | None
    error: str | None = None


@dataclass
class SourceOptions:
    """Deployment-wide options the adapters share (built once by the app factory from Settings).

    Secrets live here, never in a source's config: configs travel on Kafka topics.
    `sleep` and `clock` are injectable so rate-limit waits are testable without waiting.
    """

    git_binary: str = "git"
    # `git cat-file --batch` processes one git source reads blobs with at most (one per
    # concurrent fetch; idle ones are kept for the next).
    git_readers: int = 4
    # HOOKSTREAM_GIT_ROOTS: the directories git sources must lie under; empty allows any path.
    git_roots: tuple[str, ...] = ()
    github_api_url: str = "https://api.github.com"
    github_app_id: str | None = None
    github_private_key: str | None = None  # PEM
    # A static token (personal access token) for development, used when no App is configured.
    github_token: str | None = None
    linear_api_url: str = "https://api.linear.app/graphql"
    # A Linear API key or OAuth token for every linear source without its own `token_env`.
    linear_api_key: str | None = None
    # Where a linear source's `token_env` is looked up (the worker passes its environment).
    environ: Mapping[str, str] = field(default_factory=dict)
    http_timeout_seconds: float = 30.0
    fetch_concurrency: int = 8
    # Retries of a transient failure (HOOKSTREAM_RETRY_*): at most `max_retries`, waiting
    # `app.core.retry.RetryPolicy.delay` before each (exponential, half of it random).
    max_retries: int = 4
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 30.0
    # Never wait longer than this for a rate limit to reset: fail the job instead and say so.
    max_rate_limit_wait_seconds: float = 120.0
    # An API that reports a branch head older than a push it announced (a lagging replica) is
    # asked again this many times, waiting 1, 2, 4... seconds, before its answer is taken.
    head_lag_retries: int = 3
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    clock: Callable[[], float] = time.time
    # Draws in [0, 1) for the random half of each backoff (injectable: tests draw 0).
    random: Callable[[], float] = random.random
    # Installation tokens are cached here, so every adapter built from these options shares them.
    token_cache: dict[Any, Any] = field(default_factory=dict)

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_retries, self.retry_base_seconds, self.retry_max_seconds)


class SourceAdapter:
    """The interface. Subclasses implement `head`, `list_full`, `list_diff` and `fetch` (or
    `list_changes` itself, for sources that have no commits)."""

    source_type: str = ""
    # Whether the source is a repository whose config file (`.hookstream.yml`) the planner reads
    # at the commit it converges to (`read_file`), to decide which paths are written.
    reads_config_files: bool = False
    # Whether `head()` may answer an older commit than a push just announced (a remote API).
    head_may_lag: bool = False
    options: SourceOptions

    async def head(self) -> str:
        """The commit at the head of the tracked branch; SourceError when there is none."""
        raise NotImplementedError

    async def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether `ancestor` is `descendant` or one of its ancestors (False when either is unknown)."""
        raise NotImplementedError

    async def list_full(self, commit: str) -> list[FileChange]:
        """Every file at `commit`."""
        raise NotImplementedError

    async def list_diff(self, base: str, commit: str) -> tuple[list[FileChange] | None, str | None]:
        """The changes from `base` to `commit`, or (None, why) when only a full listing is right:
        `base` unknown, or not an ancestor of `commit` (a force push), or the diff incomplete."""
        raise NotImplementedError

    async def list_changes(self, request: PlanRequested) -> Listing:
        """What brings the documents from `request.base` to the head of the tracked branch."""
        head = await self._converged_head(request.after)
        base = request.base
        kind = listing_for(request.mode, base, head)
        if kind == "unchanged":
            return Listing([], head, "unchanged")
        reason = None
        if kind == "diff":
            assert base is not None
            files, reason = await self.list_diff(base, head)
            if files is not None:
                return Listing(files, head, "diff")
        elif request.mode == "incremental":
            reason = "the commit the documents are at is unknown (a first sync, or the last job did not complete)"
        return Listing(await self.list_full(head), head, "full", reason)

    async def _converged_head(self, after: str | None) -> str:
        head = await self.head()
        if not self.head_may_lag or after is None:
            return head
        for attempt in range(self.options.head_lag_retries):
            if not head_lags(after, head, await self.is_ancestor(head, after)):
                break
            await self.options.sleep(2.0**attempt)
            head = await self.head()
        return head

    async def read_file(self, commit: str, path: str, max_bytes: int) -> FileAt:
        """The file at `path` in `commit`, if it is a file of at most `max_bytes` (sources with
        `reads_config_files`). SourceError when the source cannot be read at all."""
        raise NotImplementedError

    def fetch(self, files: Sequence[FileChange]) -> AsyncGenerator[Fetched, None]:
        """Content for every upsert in `files` (deletes are skipped), in no particular order.

        Use it as `async with contextlib.aclosing(adapter.fetch(files)) as fetched:` when
        the loop may stop early, so the adapter's process or requests end at once.
        """
        raise NotImplementedError

    async def aclose(self) -> None:
        return None

    async def __aenter__(self) -> SourceAdapter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
