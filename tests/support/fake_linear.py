"""A local HTTP server answering in Linear's documented GraphQL shapes, for source and end-to-end tests.

Every query is parsed, validated and executed by graphql-core against `SCHEMA`,
a subset of Linear's published schema (same type, field, argument and input
names and types), so a query Linear would reject (an unknown field, a wrong
argument type) fails here too. It serves one organization's teams, issues,
labels and comments from memory with cursor pagination (`first`/`after`,
`pageInfo`), Linear's issue filters (the comparators the adapter uses),
`includeArchived`, archived, trashed, deleted and moved issues; and on demand
the failures Linear documents: rate limits (HTTP 429, or HTTP 400 with a
`RATELIMITED` error, with the `X-RateLimit-*` headers, resets in epoch
milliseconds) and 5xx answers. Time comes from a `FakeClock`, shared with the
client, for timestamps, the `Date` header and rate-limit resets.

It also builds webhook payloads in Linear's documented shape (`action`, `type`,
`data`, `organizationId`, `webhookTimestamp`, ...) for the data it holds.

Binds 127.0.0.1 on a free port; nothing leaves the machine.
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import graphql
import orjson
from aiohttp import web

from tests.support.fake_github import FakeClock

SCHEMA_SDL = """
scalar DateTime
scalar DateTimeOrDuration
scalar TimelessDate
enum PaginationOrderBy { createdAt updatedAt }

type PageInfo { startCursor: String endCursor: String hasPreviousPage: Boolean! hasNextPage: Boolean! }
type Organization { id: ID! name: String! urlKey: String! }
type Team { id: ID! key: String! name: String! }
type TeamConnection { nodes: [Team!]! pageInfo: PageInfo! }
type User { id: ID! name: String! displayName: String! }
type WorkflowState { id: ID! name: String! type: String! }
type Project { id: ID! name: String! }
type IssueLabel { id: ID! name: String! }
type IssueLabelConnection { nodes: [IssueLabel!]! pageInfo: PageInfo! }
type Comment {
  id: ID! body: String! createdAt: DateTime! updatedAt: DateTime! editedAt: DateTime archivedAt: DateTime
  parent: Comment user: User issue: Issue
}
type CommentConnection { nodes: [Comment!]! pageInfo: PageInfo! }
type Issue {
  id: ID! identifier: String! number: Float! title: String! description: String
  priority: Float! priorityLabel: String! url: String!
  createdAt: DateTime! updatedAt: DateTime! archivedAt: DateTime trashed: Boolean
  startedAt: DateTime completedAt: DateTime canceledAt: DateTime dueDate: TimelessDate estimate: Float
  previousIdentifiers: [String!]!
  state: WorkflowState! assignee: User creator: User team: Team! project: Project
  labels(after: String, before: String, filter: IssueLabelFilter, first: Int, includeArchived: Boolean, last: Int,
         orderBy: PaginationOrderBy): IssueLabelConnection!
  comments(after: String, before: String, filter: CommentFilter, first: Int, includeArchived: Boolean, last: Int,
           orderBy: PaginationOrderBy): CommentConnection!
}
type IssueConnection { nodes: [Issue!]! pageInfo: PageInfo! }

input IDComparator { eq: ID in: [ID!] neq: ID nin: [ID!] }
input IssueIDComparator { eq: ID in: [ID!] neq: ID nin: [ID!] }
input StringComparator { eq: String in: [String!] neq: String nin: [String!] startsWith: String }
input NumberComparator { eq: Float gt: Float gte: Float in: [Float!] lt: Float lte: Float neq: Float nin: [Float!] }
input DateComparator {
  eq: DateTimeOrDuration gt: DateTimeOrDuration gte: DateTimeOrDuration in: [DateTimeOrDuration!]
  lt: DateTimeOrDuration lte: DateTimeOrDuration neq: DateTimeOrDuration nin: [DateTimeOrDuration!]
}
input NullableDateComparator {
  eq: DateTimeOrDuration gt: DateTimeOrDuration gte: DateTimeOrDuration in: [DateTimeOrDuration!]
  lt: DateTimeOrDuration lte: DateTimeOrDuration neq: DateTimeOrDuration nin: [DateTimeOrDuration!] null: Boolean
}
input TeamFilter { and: [TeamFilter!] or: [TeamFilter!] id: IDComparator key: StringComparator name: StringComparator }
input IssueLabelFilter { id: IDComparator name: StringComparator }
input CommentFilter { and: [CommentFilter!] or: [CommentFilter!] id: IDComparator createdAt: DateComparator updatedAt: DateComparator }
input CommentCollectionFilter {
  and: [CommentCollectionFilter!] or: [CommentCollectionFilter!] every: CommentFilter some: CommentFilter
  id: IDComparator createdAt: DateComparator updatedAt: DateComparator length: NumberComparator
}
input IssueFilter {
  and: [IssueFilter!] or: [IssueFilter!] id: IssueIDComparator number: NumberComparator team: TeamFilter
  createdAt: DateComparator updatedAt: DateComparator archivedAt: NullableDateComparator comments: CommentCollectionFilter
}

type Query {
  organization: Organization!
  teams(after: String, before: String, filter: TeamFilter, first: Int, includeArchived: Boolean, last: Int,
        orderBy: PaginationOrderBy): TeamConnection!
  issues(after: String, before: String, filter: IssueFilter, first: Int, includeArchived: Boolean, last: Int,
         orderBy: PaginationOrderBy): IssueConnection!
  issue(id: String!): Issue!
}
"""
SCHEMA = graphql.build_schema(SCHEMA_SDL)
MAX_PAGE = 250
PRIORITY_LABELS = {0: "No priority", 1: "Urgent", 2: "High", 3: "Medium", 4: "Low"}


def iso(at: float) -> str:
    moment = datetime.fromtimestamp(at, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _epoch(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class Comment:
    id: str
    body: str
    created_at: float
    updated_at: float
    user: str
    edited_at: float | None = None
    parent: str | None = None


@dataclass
class Issue:
    id: str
    team: str  # key
    number: int
    title: str
    created_at: float
    updated_at: float
    description: str | None = None
    state: str = "Todo"
    state_type: str = "unstarted"
    priority: int = 0
    labels: list[str] = field(default_factory=list)
    assignee: str | None = None
    project: str | None = None
    archived_at: float | None = None
    trashed: bool = False
    previous_identifiers: list[str] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)

    @property
    def identifier(self) -> str:
        return f"{self.team}-{self.number}"


class FakeLinear:
    """One Linear organization. Tests change it through the methods below, as people would in Linear."""

    def __init__(
        self, clock: FakeClock | None = None, api_key: str = "lin_api_test_key", organization_id: str = "org-6d0f1a2b"
    ) -> None:
        self.clock = clock or FakeClock()
        self.api_key = api_key
        self.organization_id = organization_id
        self.teams: dict[str, str] = {}  # key -> name
        self.issues: dict[str, Issue] = {}
        self.deleted: set[str] = set()
        self.failures: list[str] = []  # queued: "rate_limit", "complexity_limit", "server_error"
        self.requests: list[dict[str, Any]] = []  # every GraphQL request body
        self.send_date = True
        self._ids = itertools.count(1)
        self._numbers: dict[str, itertools.count] = {}
        self.runner: web.AppRunner | None = None
        self.url = ""

    # -- the organization's data --------------------------------------------------

    def _tick(self) -> float:
        self.clock.now += 1.0  # every change a second apart: updatedAt orders them
        return self.clock.now

    def add_team(self, key: str, name: str | None = None) -> None:
        self.teams[key] = name or key.title()
        self._numbers[key] = itertools.count(1)

    def add_issue(self, team: str, title: str, **fields: Any) -> Issue:
        at = self._tick()
        issue = Issue(
            id=f"9b3c{next(self._ids):04d}-7e21-4c2d-9f00-5a1b2c3d4e5f",
            team=team,
            number=next(self._numbers[team]),
            title=title,
            created_at=at,
            updated_at=at,
            **fields,
        )
        self.issues[issue.id] = issue
        return issue

    def by_identifier(self, identifier: str) -> Issue:
        for issue in self.issues.values():
            if issue.identifier == identifier:
                return issue
        raise KeyError(f"the fake has no issue {identifier}")

    def update(self, identifier: str, **fields: Any) -> Issue:
        issue = self.by_identifier(identifier)
        for name, value in fields.items():
            setattr(issue, name, value)
        issue.updated_at = self._tick()
        return issue

    def comment(self, identifier: str, body: str, user: str = "Grace Hopper") -> Comment:
        """A new comment; like Linear, it does not change the issue's updatedAt."""
        issue = self.by_identifier(identifier)
        at = self._tick()
        made = Comment(
            id=f"c0ffee{next(self._ids):04d}-1111-4222-8333-444455556666",
            body=body,
            created_at=at,
            updated_at=at,
            user=user,
        )
        issue.comments.append(made)
        return made

    def archive(self, identifier: str, trash: bool = False) -> Issue:
        issue = self.by_identifier(identifier)
        issue.archived_at = issue.updated_at = self._tick()
        issue.trashed = trash
        return issue

    def delete(self, identifier: str) -> Issue:
        """Deleted for good: Linear no longer answers for it."""
        issue = self.by_identifier(identifier)
        del self.issues[issue.id]
        self.deleted.add(issue.id)
        return issue

    def move(self, identifier: str, team: str) -> Issue:
        issue = self.by_identifier(identifier)
        issue.previous_identifiers.append(issue.identifier)
        issue.team, issue.number = team, next(self._numbers[team])
        issue.updated_at = self._tick()
        return issue

    def live(self, teams: tuple[str, ...] = ()) -> list[Issue]:
        return [
            i
            for i in self.issues.values()
            if i.archived_at is None and not i.trashed and (not teams or i.team in teams)
        ]

    # -- webhooks -------------------------------------------------------------------

    def webhook(self, action: str, issue: Issue, comment: Comment | None = None) -> dict[str, Any]:
        """An `EntityWebhookPayload` for an Issue (or, with `comment`, a Comment) change."""
        team = {"id": f"team-{issue.team}", "key": issue.team, "name": self.teams[issue.team]}
        if comment is None:
            kind, data = (
                "Issue",
                {
                    "id": issue.id,
                    "identifier": issue.identifier,
                    "title": issue.title,
                    "number": issue.number,
                    "previousIdentifiers": list(issue.previous_identifiers),
                    "priority": issue.priority,
                    "priorityLabel": PRIORITY_LABELS[issue.priority],
                    "createdAt": iso(issue.created_at),
                    "updatedAt": iso(issue.updated_at),
                    "archivedAt": iso(issue.archived_at) if issue.archived_at else None,
                    "trashed": issue.trashed or None,
                    "teamId": team["id"],
                    "team": team,
                    "stateId": f"state-{issue.state}",
                    "state": {
                        "id": f"state-{issue.state}",
                        "name": issue.state,
                        "type": issue.state_type,
                        "color": "#bec2c8",
                    },
                    "labelIds": [],
                    "labels": [],
                    "subscriberIds": [],
                    "reactionData": {},
                    "sortOrder": 0.0,
                    "prioritySortOrder": 0.0,
                    "url": f"https://linear.app/acme/issue/{issue.identifier}",
                },
            )
        else:
            kind, data = (
                "Comment",
                {
                    "id": comment.id,
                    "body": comment.body,
                    "createdAt": iso(comment.created_at),
                    "updatedAt": iso(comment.updated_at),
                    "issueId": issue.id,
                    "userId": f"user-{comment.user}",
                    "reactionData": {},
                    "issue": {
                        "id": issue.id,
                        "identifier": issue.identifier,
                        "title": issue.title,
                        "teamId": team["id"],
                        "team": team,
                        "url": f"https://linear.app/acme/issue/{issue.identifier}",
                    },
                },
            )
        return {
            "action": action,
            "type": kind,
            "data": data,
            "organizationId": self.organization_id,
            "createdAt": iso(self.clock.now),
            "url": data.get("url") or data["issue"]["url"],
            "webhookId": "0b6c7e5e-2f2c-4c1b-9d3e-8a7f6e5d4c3b",
            "webhookTimestamp": int(self.clock.now * 1000),
            "actor": {"id": "user-grace", "type": "user", "name": "Grace Hopper"},
        }

    # -- GraphQL ---------------------------------------------------------------------

    def _issue_view(self, issue: Issue) -> dict[str, Any]:
        comments = sorted(issue.comments, key=lambda c: (c.created_at, c.id))
        return {
            "id": issue.id,
            "identifier": issue.identifier,
            "number": float(issue.number),
            "title": issue.title,
            "description": issue.description,
            "priority": float(issue.priority),
            "priorityLabel": PRIORITY_LABELS[issue.priority],
            "url": f"https://linear.app/acme/issue/{issue.identifier}",
            "createdAt": iso(issue.created_at),
            "updatedAt": iso(issue.updated_at),
            "archivedAt": iso(issue.archived_at) if issue.archived_at else None,
            "trashed": issue.trashed or None,
            "startedAt": None,
            "completedAt": None,
            "canceledAt": None,
            "dueDate": None,
            "estimate": None,
            "previousIdentifiers": list(issue.previous_identifiers),
            "state": {"id": f"state-{issue.state}", "name": issue.state, "type": issue.state_type},
            "assignee": _user(issue.assignee),
            "creator": _user("Ada Lovelace"),
            "team": {"id": f"team-{issue.team}", "key": issue.team, "name": self.teams[issue.team]},
            "project": {"id": "project-1", "name": issue.project} if issue.project else None,
            "labels": lambda info, **args: _connection([{"id": f"label-{n}", "name": n} for n in issue.labels], args),
            "comments": lambda info, **args: _connection([self._comment_view(c) for c in comments], args),
        }

    def _comment_view(self, comment: Comment) -> dict[str, Any]:
        return {
            "id": comment.id,
            "body": comment.body,
            "createdAt": iso(comment.created_at),
            "updatedAt": iso(comment.updated_at),
            "editedAt": iso(comment.edited_at) if comment.edited_at else None,
            "archivedAt": None,
            "parent": {"id": comment.parent} if comment.parent else None,
            "user": _user(comment.user),
        }

    def _root(self) -> dict[str, Any]:
        def issues(
            info: Any,
            filter: dict | None = None,
            includeArchived: bool | None = None,
            orderBy: str | None = None,
            **page: Any,
        ):
            chosen = [
                i
                for i in self.issues.values()
                if (includeArchived or i.archived_at is None) and _issue_matches(i, filter)
            ]
            key = (lambda i: (i.updated_at, i.id)) if orderBy == "updatedAt" else (lambda i: (i.created_at, i.id))
            return _connection([self._issue_view(i) for i in sorted(chosen, key=key)], page)

        def issue(info: Any, id: str):
            found = self.issues.get(id) or next((i for i in self.issues.values() if i.identifier == id), None)
            if found is None:
                raise graphql.GraphQLError(
                    "Entity not found: Issue",
                    extensions={
                        "code": "INVALID_INPUT",
                        "type": "invalid input",
                        "userPresentableMessage": "Could not find referenced Issue.",
                    },
                )
            return self._issue_view(found)

        def teams(info: Any, filter: dict | None = None, **page: Any):
            chosen = [
                {"id": f"team-{k}", "key": k, "name": n}
                for k, n in sorted(self.teams.items())
                if _team_matches(k, n, filter)
            ]
            return _connection(chosen, page)

        return {
            "organization": {"id": self.organization_id, "name": "Acme", "urlKey": "acme"},
            "issues": issues,
            "issue": issue,
            "teams": teams,
        }

    def _headers(self, remaining: int = 4999) -> dict[str, str]:
        reset_ms = str(int((self.clock.now + 60) * 1000))
        headers = {
            "X-RateLimit-Requests-Limit": "5000",
            "X-RateLimit-Requests-Remaining": str(remaining),
            "X-RateLimit-Requests-Reset": reset_ms,
            "X-Complexity": "12",
            "X-RateLimit-Complexity-Limit": "3000000",
            "X-RateLimit-Complexity-Remaining": "2999000",
            "X-RateLimit-Complexity-Reset": reset_ms,
        }
        if self.send_date:
            headers["Date"] = format_datetime(datetime.fromtimestamp(self.clock.now, tz=UTC), usegmt=True)
        return headers

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") not in (self.api_key, f"Bearer {self.api_key}"):
            body = {
                "errors": [
                    {
                        "message": "Authentication required, not authenticated",
                        "extensions": {"code": "AUTHENTICATION_ERROR", "type": "authentication error"},
                    }
                ]
            }
            return web.json_response(body, status=401, headers=self._headers(), dumps=_dumps)
        payload = orjson.loads(await request.read())
        self.requests.append(payload)
        if self.failures:
            return self._failure(self.failures.pop(0))
        result = await graphql.graphql(
            SCHEMA,
            payload["query"],
            root_value=self._root(),
            variable_values=payload.get("variables"),
            operation_name=payload.get("operationName"),
        )
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [e.formatted for e in result.errors]
        # Linear answers a query it cannot run (validation, invalid input) with HTTP 400.
        status = 400 if result.errors and result.data is None else 200
        return web.json_response(body, status=status, headers=self._headers(), dumps=_dumps)

    def _failure(self, kind: str) -> web.Response:
        if kind == "rate_limit":  # the request budget: HTTP 429, its remaining 0, its reset in epoch ms
            headers = {
                **self._headers(remaining=0),
                "X-RateLimit-Requests-Reset": str(int((self.clock.now + 30) * 1000)),
            }
            body = {
                "errors": [
                    {"message": "Rate limit exceeded", "extensions": {"code": "RATELIMITED", "type": "ratelimited"}}
                ]
            }
            return web.json_response(body, status=429, headers=headers, dumps=_dumps)
        if kind == "complexity_limit":  # the complexity budget: HTTP 400 with a RATELIMITED error
            headers = {
                **self._headers(),
                "X-RateLimit-Complexity-Remaining": "0",
                "X-RateLimit-Complexity-Reset": str(int((self.clock.now + 12) * 1000)),
            }
            body = {"errors": [{"message": "Query complexity budget exhausted", "extensions": {"code": "RATELIMITED"}}]}
            return web.json_response(body, status=400, headers=headers, dumps=_dumps)
        if kind == "server_error":
            return web.Response(
                status=503,
                text="<html><body>503 Service Temporarily Unavailable</body></html>",
                content_type="text/html",
            )
        raise ValueError(f"unknown failure {kind!r}")

    async def start(self) -> FakeLinear:
        app = web.Application()
        app.router.add_post("/graphql", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/graphql"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _user(name: str | None) -> dict[str, Any] | None:
    return {"id": f"user-{name}", "name": name, "displayName": name.split()[0].lower()} if name else None


def _connection(items: list[dict[str, Any]], page: dict[str, Any]) -> dict[str, Any]:
    """Forward cursor pagination: the cursor is the position after the page's last node, opaque to clients."""
    first = page.get("first") or 50
    if first > MAX_PAGE:
        raise graphql.GraphQLError(f"first must be at most {MAX_PAGE}", extensions={"code": "INVALID_INPUT"})
    start = int(base64.b64decode(page["after"]).decode()) if page.get("after") else 0
    chosen = items[start : start + first]
    end = start + len(chosen)
    return {
        "nodes": chosen,
        "pageInfo": {
            "hasNextPage": end < len(items),
            "hasPreviousPage": start > 0,
            "startCursor": base64.b64encode(str(start).encode()).decode() if chosen else None,
            "endCursor": base64.b64encode(str(end).encode()).decode() if chosen else None,
        },
    }


def _compare(value: Any, comparator: dict[str, Any] | None, dates: bool = False) -> bool:
    if not comparator:
        return True
    norm = (lambda v: _epoch(v) if isinstance(v, str) else v) if dates else (lambda v: v)
    value = norm(value) if value is not None else None
    for op, operand in comparator.items():
        if op == "null":
            ok = (value is None) is operand
        elif value is None:
            ok = op in ("neq", "nin")
        elif op in ("in", "nin"):
            ok = (value in [norm(o) for o in operand]) is (op == "in")
        else:
            operand = norm(operand)
            ok = {
                "eq": value == operand,
                "neq": value != operand,
                "gt": value > operand,
                "gte": value >= operand,
                "lt": value < operand,
                "lte": value <= operand,
                "startsWith": str(value).startswith(str(operand)),
            }[op]
        if not ok:
            return False
    return True


def _logic(filter: dict[str, Any], test: Any) -> bool:
    if "and" in filter and not all(test(f) for f in filter["and"]):
        return False
    if "or" in filter and not any(test(f) for f in filter["or"]):
        return False
    return True


def _team_matches(key: str, name: str, f: dict | None) -> bool:
    if not f:
        return True
    return (
        _logic(f, lambda g: _team_matches(key, name, g))
        and _compare(f"team-{key}", f.get("id"))
        and _compare(key, f.get("key"))
        and _compare(name, f.get("name"))
    )


def _comment_matches(comment: Comment, f: dict | None) -> bool:
    if not f:
        return True
    return (
        _logic(f, lambda g: _comment_matches(comment, g))
        and _compare(comment.id, f.get("id"))
        and _compare(comment.created_at, f.get("createdAt"), dates=True)
        and _compare(comment.updated_at, f.get("updatedAt"), dates=True)
    )


def _issue_matches(issue: Issue, f: dict | None) -> bool:
    if not f:
        return True
    comments = f.get("comments")
    if comments and "some" in comments and not any(_comment_matches(c, comments["some"]) for c in issue.comments):
        return False
    if comments and "every" in comments and not all(_comment_matches(c, comments["every"]) for c in issue.comments):
        return False
    return (
        _logic(f, lambda g: _issue_matches(issue, g))
        and _compare(issue.id, f.get("id"))
        and _compare(float(issue.number), f.get("number"))
        and _team_matches(issue.team, "", {k: v for k, v in (f.get("team") or {}).items() if k != "name"})
        and _compare(issue.created_at, f.get("createdAt"), dates=True)
        and _compare(issue.updated_at, f.get("updatedAt"), dates=True)
        and _compare(issue.archived_at, f.get("archivedAt"), dates=True)
    )
