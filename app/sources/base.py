"""What a source adapter is: list a request's changes, fetch their content.

An adapter is built per source from the source's config (`get_adapter` in
`app.sources`) and is an async context manager: `aclose()` ends whatever it
holds (an HTTP session). Listing and fetching never decide anything about
documents; they report what the source says, byte-exact.

Errors that make a whole listing or batch impossible (a missing repository, a
revoked installation, a rate limit that outlasts our patience) raise
`SourceError` with a message a person can act on. A single file that cannot be
read is not such an error: `fetch` yields it with its reason, so the batch
counts it as failed and goes on.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Literal, NamedTuple, Sequence

from app.events.sync import FileChange, PlanRequested

ListingMode = Literal["full", "incremental"]


class SourceError(Exception):
    """A source cannot be listed or read. The message says what and, where known, what to do."""


class MissingExtraError(SourceError):
    """An optional dependency is not installed; the message names the `pip install` that cures it."""


@dataclass(frozen=True)
class Listing:
    """The changes a request asks for, as of `commit`.

    `mode_used` is what was actually listed: an incremental request falls back
    to a full listing when its `before` is unknown or unreachable, and
    `fallback_reason` says why.
    """

    files: list[FileChange]
    commit: str | None
    mode_used: ListingMode
    fallback_reason: str | None = None

    @property
    def upserts(self) -> list[FileChange]:
        return [f for f in self.files if f.change == "upsert"]

    @property
    def deletes(self) -> list[FileChange]:
        return [f for f in self.files if f.change == "delete"]


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
    http_timeout_seconds: float = 30.0
    fetch_concurrency: int = 8
    max_retries: int = 4
    # Never wait longer than this for a rate limit to reset: fail the job instead and say so.
    max_rate_limit_wait_seconds: float = 120.0
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    clock: Callable[[], float] = time.time
    # Installation tokens are cached here, so every adapter built from these options shares them.
    token_cache: dict[Any, Any] = field(default_factory=dict)


class SourceAdapter:
    """The interface. Subclasses implement `list_changes` and `fetch`."""

    source_type: str = ""

    async def list_changes(self, request: PlanRequested) -> Listing:
        raise NotImplementedError

    def fetch(self, files: Sequence[FileChange]) -> AsyncIterator[Fetched]:
        """Content for every upsert in `files` (deletes are skipped), in no particular order.

        Use it as `async with contextlib.aclosing(adapter.fetch(files)) as fetched:` when
        the loop may stop early, so the adapter's process or requests end at once.
        """
        raise NotImplementedError

    async def aclose(self) -> None:
        return None

    async def __aenter__(self) -> "SourceAdapter":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
