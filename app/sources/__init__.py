"""Source adapters: `git` (a local repository), `github` (the REST API), `linear` (issues, GraphQL).

async with get_adapter(plan.source_type, plan.source_config, options) as adapter:
    listing = await adapter.list_changes(plan)
    async with contextlib.aclosing(adapter.fetch(listing.upserts)) as fetched:
        async for change, content, error in fetched:
            ...
"""

from __future__ import annotations

from typing import Any

from app.sources.base import (
    Fetched,
    FileAt,
    Listing,
    MissingExtraError,
    SourceAdapter,
    SourceError,
    SourceOptions,
    TransientSourceError,
)

__all__ = [
    "FileAt",
    "Fetched",
    "Listing",
    "MissingExtraError",
    "SourceAdapter",
    "SourceError",
    "SourceOptions",
    "TransientSourceError",
    "get_adapter",
]

SOURCE_TYPES = ("git", "github", "linear")


def get_adapter(source_type: str, config: dict[str, Any], options: SourceOptions | None = None) -> SourceAdapter:
    """The adapter for one source. Raises SourceError for an unknown type or a bad config."""
    if source_type == "git":
        from app.sources.git import GitSource

        return GitSource(config, options)
    if source_type == "github":
        from app.sources.github import GitHubSource

        return GitHubSource(config, options)
    if source_type == "linear":
        from app.sources.linear import LinearSource

        return LinearSource(config, options)
    raise SourceError(f"unknown source type {source_type!r}; known types: {', '.join(SOURCE_TYPES)}")
