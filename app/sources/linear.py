"""A Linear workspace's issues (with their comments) as documents, through Linear's GraphQL API.

Config: `{"organization_id": "<Linear organization id>", "teams": ["ENG", ...]
optional (team keys; default every team the key can read), "token_env":
"LINEAR_..." optional}`. The credential is never in the config (configs travel
on Kafka): it is `SourceOptions.linear_api_key` (HOOKSTREAM_LINEAR_API_KEY), or
the worker's environment variable named by `token_env`, which must start with
`LINEAR_` or `HOOKSTREAM_LINEAR_` so that a config cannot send another secret
to Linear. The API endpoint comes from the options only, for the same reason.

Documents: one per issue, `issues/<identifier>.md` (`linear_render`); the
FileChange's `blob` is the issue id. An issue moved to another team gets a new
identifier: its old paths (`previousIdentifiers`) are deleted with it.

Listing (`list_issues(since, hints)`):
- `since` None: a full listing, every live issue in scope (archived and trashed
  ones are not listed, so the planner deletes their documents as stale).
- `since` a sync point: the issues updated, archived or commented since then
  (`updatedAt`, `archivedAt`, `comments.some.updatedAt` >= since, archived
  included), plus the issues the hints name, looked up whatever their team.
  Hints are issue ids, identifiers or document paths (`issues/ENG-1.md`). A
  live issue in scope is an upsert; an archived, trashed or out-of-scope one a
  delete; a hinted identifier Linear no longer has a delete (a deleted issue).
  Hints add to the window instead of replacing it: a webhook means "look
  again", so a lost webhook is repaired by the next one for the source.
- Pages: `first: 250`, `after: endCursor` while `hasNextPage`, ordered by
  `createdAt`, which never changes, so an issue updated during the listing
  cannot move between pages and be skipped.

The sync point (`Listing.commit`, ISO 8601 UTC) is the server's clock (`Date`
of the listing's first answer) minus `SYNC_POINT_MARGIN_SECONDS`, and never
earlier than `since`: Linear's clock, not ours, so the worker's skew does not
matter; the margin covers the header's whole-second resolution, writes that
commit after they are stamped, and skew among Linear's servers; the filter is
`>=`, so equal timestamps are listed again, not missed. Issues changed in the
margin are listed again by the next sync (their documents converge, unchanged
content is rewritten with the same hash). Without a `Date`, the newest
`updatedAt` listed minus the margin is used.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.events.sync import FileChange, PlanRequested
from app.sources.base import Fetched, Listing, SourceAdapter, SourceError, SourceOptions
from app.sources.linear_api import Answer, LinearApi
from app.sources.linear_render import ISSUES_DIR, issue_path, render_issue

SYNC_POINT_MARGIN_SECONDS = 120
PAGE_SIZE = 250  # Linear's largest page
FETCH_CHUNK = 25  # issues per content query: 25 x 50 comments stays far below Linear's 10,000 complexity cap
HINT_CHUNK = 50
_IDENTIFIER = re.compile(r"^([A-Za-z0-9_]{1,16})-([0-9]{1,9})$")
_UUID = re.compile(r"^[0-9a-fA-F-]{8,64}$")
_TOKEN_ENV = re.compile(r"^(HOOKSTREAM_)?LINEAR_[A-Z0-9_]{1,100}$")

_LISTED = "id identifier updatedAt archivedAt trashed previousIdentifiers team { key }"
_PAGE = "pageInfo { hasNextPage endCursor }"
_COMMENT = "id body createdAt editedAt parent { id } user { name displayName }"
_ISSUE = (
    "id identifier title description priorityLabel url createdAt startedAt completedAt canceledAt dueDate estimate "
    "archivedAt trashed state { name type } assignee { name displayName } creator { name displayName } "
    "team { key } project { name } "
    f"labels(first: 50) {{ nodes {{ name }} {_PAGE} }} comments(first: 50) {{ nodes {{ {_COMMENT} }} {_PAGE} }}"
)
SCOPE_QUERY = """query HookstreamScope {
  organization { id name }
  teams(first: 250) { nodes { id key name } }
}"""
LIST_QUERY = f"""query HookstreamIssueListing($filter: IssueFilter, $after: String, $includeArchived: Boolean) {{
  issues(first: {PAGE_SIZE}, after: $after, filter: $filter, includeArchived: $includeArchived, orderBy: createdAt) {{
    nodes {{ {_LISTED} }} {_PAGE}
  }}
}}"""
FETCH_QUERY = f"""query HookstreamIssues($ids: [ID!], $first: Int) {{
  issues(first: $first, filter: {{ id: {{ in: $ids }} }}, includeArchived: true) {{ nodes {{ {_ISSUE} }} }}
}}"""
MORE_QUERY = """query HookstreamIssueMore($id: String!, $after: String) {
  issue(id: $id) { %s(first: 100, after: $after) { nodes { %s } pageInfo { hasNextPage endCursor } } }
}"""


class LinearConfig(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    organization_id: str = Field(pattern=r"^[A-Za-z0-9-]{1,64}$")
    teams: tuple[str, ...] = ()
    token_env: str | None = Field(default=None, pattern=_TOKEN_ENV.pattern)


def format_point(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def parse_point(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


class LinearSource(SourceAdapter):
    source_type = "linear"

    def __init__(
        self, config: dict, options: SourceOptions | None = None, session: aiohttp.ClientSession | None = None
    ) -> None:
        try:
            self.config = LinearConfig.model_validate(config)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise SourceError(
                f"linear source config {'.'.join(map(str, err['loc']))}: {err['msg']} "
                '(expected {"organization_id": "...", "teams": ["ENG"], "token_env": "LINEAR_API_KEY_..."})'
            ) from None
        self.options = options or SourceOptions()
        self.api = LinearApi(self.options.linear_api_url, self._token(), self.options, session)
        self._teams_checked = False

    def _token(self) -> str:
        if self.config.token_env is not None:
            token = self.options.environ.get(self.config.token_env)
            if not token:
                raise SourceError(
                    f"linear source {self.config.organization_id}: the worker's environment has no {self.config.token_env} (its token_env)"
                )
            return token
        if not self.options.linear_api_key:
            raise SourceError(
                "no Linear API key: set HOOKSTREAM_LINEAR_API_KEY on the worker, or give the source a token_env"
            )
        return self.options.linear_api_key

    async def aclose(self) -> None:
        await self.api.aclose()

    # -- scope --------------------------------------------------------------

    def _in_scope(self, node: dict[str, Any]) -> bool:
        return not self.config.teams or _name(node.get("team"), "key") in self.config.teams

    def _scope_filter(self) -> dict[str, Any] | None:
        return {"team": {"key": {"in": list(self.config.teams)}}} if self.config.teams else None

    async def _check_scope(self) -> None:
        """The key belongs to the source's organization and can read its teams (once per adapter):
        another workspace's issues must never be written as this source's."""
        if self._teams_checked:
            return
        data = (await self.api.query("HookstreamScope", SCOPE_QUERY, {})).data
        org = _name(data.get("organization"), "id")
        if org != self.config.organization_id:
            raise SourceError(
                f"the Linear API key belongs to organization {org!r}, not to this source's {self.config.organization_id!r}"
            )
        found = {_name(t, "key") for t in _nodes(data.get("teams"))}
        missing = [t for t in self.config.teams if t not in found]
        if missing:
            raise SourceError(
                f"Linear organization {org} has no team(s) {missing} that this key can read (teams found: {sorted(found)})"
            )
        self._teams_checked = True

    # -- listing ------------------------------------------------------------

    async def list_changes(self, request: PlanRequested) -> Listing:
        # `base` is the sync point the documents were last written to completely; a full request lists everything.
        since = request.base if request.mode == "incremental" else None
        return await self.list_issues(since, request.paths)

    async def list_issues(self, since: str | None, hints: Sequence[str]) -> Listing:
        await self._check_scope()
        since_at = parse_point(since) if since else None
        if since and since_at is None:
            listing = await self.list_issues(None, ())
            return Listing(listing.files, listing.commit, "full", f"{since!r} is not a Linear sync point (ISO 8601)")
        if since_at is None:
            nodes, first_answer = await self._list(self._scope_filter(), include_archived=False)
            listed = {issue_path(n["identifier"]): _upsert(n) for n in nodes if self._in_scope(n) and _live(n)}
            return Listing(
                sorted(listed.values(), key=lambda f: f.path), self._sync_point(first_answer, nodes, None), "full"
            )
        window: dict[str, Any] = {
            "or": [
                {"updatedAt": {"gte": format_point(since_at)}},
                {"archivedAt": {"gte": format_point(since_at)}},
                {"comments": {"some": {"updatedAt": {"gte": format_point(since_at)}}}},
            ]
        }
        scope = self._scope_filter()
        nodes, first_answer = await self._list({"and": [scope, window]} if scope else window, include_archived=True)
        changes: dict[str, FileChange] = {}
        for node in nodes:
            self._classify(node, changes)
        await self._resolve_hints(hints, changes)
        files = sorted(changes.values(), key=lambda f: f.path)
        return Listing(files, self._sync_point(first_answer, nodes, since_at), "diff")

    async def _list(
        self, issue_filter: dict[str, Any] | None, include_archived: bool
    ) -> tuple[list[dict[str, Any]], Answer | None]:
        nodes: list[dict[str, Any]] = []
        first: Answer | None = None
        after: str | None = None
        while True:
            answer = await self.api.query(
                "HookstreamIssueListing",
                LIST_QUERY,
                {"filter": issue_filter, "after": after, "includeArchived": include_archived},
            )
            first = first or answer
            connection = answer.data.get("issues")
            page = _nodes(connection)
            nodes.extend(n for n in page if isinstance(n.get("identifier"), str) and isinstance(n.get("id"), str))
            after = _next_cursor(connection)
            if after is None:
                return nodes, first

    def _classify(self, node: dict[str, Any], changes: dict[str, FileChange]) -> None:
        """Upsert a live issue in scope, delete an archived or trashed one; the paths of its old
        identifiers are deleted too. Only paths of the source's teams are ever deleted: a webhook
        about another team's issue must not count deletes of documents this source never had.
        An upsert wins over a delete of the same path."""
        identifiers = [
            p for p in node.get("previousIdentifiers") or [] if isinstance(p, str) and p != node["identifier"]
        ]
        if self._in_scope(node) and _live(node):
            changes[issue_path(node["identifier"])] = _upsert(node)
        else:
            identifiers.append(node["identifier"])
        for identifier in identifiers:
            if self._team_of(identifier):
                changes.setdefault(issue_path(identifier), FileChange(path=issue_path(identifier), change="delete"))

    def _team_of(self, identifier: str) -> bool:
        """Whether `identifier` (e.g. ENG-12) names an issue of one of the source's teams."""
        match = _IDENTIFIER.match(identifier)
        return match is not None and (not self.config.teams or match.group(1).upper() in self.config.teams)

    async def _resolve_hints(self, hints: Sequence[str], changes: dict[str, FileChange]) -> None:
        ids, identifiers = _hint_kinds(hints)
        terms: list[dict[str, Any]] = [{"id": {"in": ids[i : i + HINT_CHUNK]}} for i in range(0, len(ids), HINT_CHUNK)]
        terms += [{"team": {"key": {"eq": key}}, "number": {"eq": number}} for key, number in identifiers]
        found: set[str] = set()
        for start in range(0, len(terms), HINT_CHUNK):
            nodes, _ = await self._list({"or": terms[start : start + HINT_CHUNK]}, include_archived=True)
            for node in nodes:
                found.add(node["identifier"].upper())
                found.update(p.upper() for p in node.get("previousIdentifiers") or [] if isinstance(p, str))
                self._classify(node, changes)
        for key, number in identifiers:
            identifier = f"{key}-{number}"
            if identifier.upper() not in found and self._team_of(identifier):  # Linear no longer has it: deleted
                changes.setdefault(issue_path(identifier), FileChange(path=issue_path(identifier), change="delete"))

    def _sync_point(self, first: Answer | None, nodes: list[dict[str, Any]], since: datetime | None) -> str | None:
        margin = timedelta(seconds=SYNC_POINT_MARGIN_SECONDS)
        if first is not None and first.server_time is not None:
            point: datetime | None = first.server_time - margin
        else:
            stamps = [t for t in (parse_point(str(n.get("updatedAt") or "")) for n in nodes) if t is not None]
            point = max(stamps) - margin if stamps else None
        if since is not None and (point is None or point < since):
            point = since  # never backwards
        return format_point(point) if point is not None else None

    # -- content ------------------------------------------------------------

    async def fetch(self, files: Sequence[FileChange]) -> AsyncGenerator[Fetched, None]:
        upserts = [f for f in files if f.change == "upsert"]
        for start in range(0, len(upserts), FETCH_CHUNK):
            chunk = upserts[start : start + FETCH_CHUNK]
            ids = sorted({c.blob for c in chunk if c.blob})
            answer = await self.api.query("HookstreamIssues", FETCH_QUERY, {"ids": ids, "first": len(ids) or 1})
            by_id = {n["id"]: n for n in _nodes(answer.data.get("issues")) if isinstance(n.get("id"), str)}
            for change in chunk:
                yield await self._document(change, by_id.get(change.blob or ""))

    async def _document(self, change: FileChange, node: dict[str, Any] | None) -> Fetched:
        if not change.blob:
            return Fetched(change, None, f"no Linear issue id for {change.path!r}")
        if node is None:
            return Fetched(change, None, f"Linear has no issue {change.blob} any more (deleted since it was listed)")
        if not _live(node):
            return Fetched(change, None, f"issue {node.get('identifier')} was archived or trashed since it was listed")
        if issue_path(str(node.get("identifier"))) != change.path:
            return Fetched(
                change, None, f"issue {change.blob} is {node.get('identifier')} now (moved since it was listed)"
            )
        labels = await self._all(node, "labels", "name")
        comments = await self._all(node, "comments", _COMMENT)
        return Fetched(change, render_issue(node, labels, comments))

    async def _all(self, node: dict[str, Any], field: str, selection: str) -> list[dict[str, Any]]:
        """Every node of the issue's `field` connection: the first page came with the issue."""
        connection = node.get(field)
        items = list(_nodes(connection))
        after = _next_cursor(connection)
        while after is not None:
            data = (
                await self.api.query(
                    "HookstreamIssueMore", MORE_QUERY % (field, selection), {"id": node["id"], "after": after}
                )
            ).data
            connection = (data.get("issue") or {}).get(field)
            items.extend(_nodes(connection))
            after = _next_cursor(connection)
        return items


def _name(value: Any, key: str = "name") -> Any:
    return value.get(key) if isinstance(value, dict) else None


def _nodes(connection: Any) -> list[dict[str, Any]]:
    nodes = connection.get("nodes") if isinstance(connection, dict) else None
    if not isinstance(nodes, list):
        raise SourceError(f"Linear's answer is not a connection in the documented shape: {str(connection)[:200]}")
    return [n for n in nodes if isinstance(n, dict)]


def _next_cursor(connection: Any) -> str | None:
    info = connection.get("pageInfo") if isinstance(connection, dict) else None
    if isinstance(info, dict) and info.get("hasNextPage") is True:
        cursor = info.get("endCursor")
        if not isinstance(cursor, str) or not cursor:
            raise SourceError("Linear says there is a next page but gives no endCursor")
        return cursor
    return None


def _live(node: dict[str, Any]) -> bool:
    return node.get("archivedAt") is None and not node.get("trashed")


def _upsert(node: dict[str, Any]) -> FileChange:
    return FileChange(path=issue_path(node["identifier"]), change="upsert", blob=node["id"])


def _hint_kinds(hints: Sequence[str]) -> tuple[list[str], list[tuple[str, int]]]:
    """(issue ids, (team key, number) of identifiers) named by the hints; other hints are ignored."""
    ids: list[str] = []
    identifiers: list[tuple[str, int]] = []
    for hint in dict.fromkeys(hints):
        value = hint.removeprefix(f"{ISSUES_DIR}/").removesuffix(".md")
        match = _IDENTIFIER.match(value)
        if match:
            identifiers.append((match.group(1).upper(), int(match.group(2))))
        elif _UUID.match(value):
            ids.append(value)
    return ids, identifiers
