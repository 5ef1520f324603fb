"""One Linear issue and its comments as one markdown document (pure).

Invariant: the same issue data renders to the same bytes, so a document's
content hash changes only when something it shows changes. Hence: labels are
sorted, comments ordered by (createdAt, id), absent fields left out, and the
issue's `updatedAt` is not shown (Linear bumps it for changes the document does
not show, such as a sort order; showing it would rewrite and re-embed the
document for nothing). Front-matter values are JSON, which is valid YAML.
"""

from __future__ import annotations

from typing import Any

import orjson

ISSUES_DIR = "issues"


def issue_path(identifier: str) -> str:
    return f"{ISSUES_DIR}/{identifier}.md"


def _person(user: Any) -> str | None:
    if not isinstance(user, dict):
        return None
    return user.get("displayName") or user.get("name")


def _name(value: Any, key: str = "name") -> Any:
    return value.get(key) if isinstance(value, dict) else None


def render_issue(issue: dict[str, Any], labels: list[dict[str, Any]], comments: list[dict[str, Any]]) -> bytes:
    """The document of `issue` (a node of the fetch query) with all its `labels` and `comments`."""
    front: list[tuple[str, Any]] = [
        ("id", issue.get("id")),
        ("identifier", issue.get("identifier")),
        ("title", issue.get("title")),
        ("team", _name(issue.get("team"), "key")),
        ("state", _name(issue.get("state"))),
        ("state_type", _name(issue.get("state"), "type")),
        ("priority", issue.get("priorityLabel")),
        ("labels", sorted({label["name"] for label in labels if isinstance(label.get("name"), str)}) or None),
        ("assignee", _person(issue.get("assignee"))),
        ("creator", _person(issue.get("creator"))),
        ("project", _name(issue.get("project"))),
        ("estimate", issue.get("estimate")),
        ("due", issue.get("dueDate")),
        ("created_at", issue.get("createdAt")),
        ("started_at", issue.get("startedAt")),
        ("completed_at", issue.get("completedAt")),
        ("canceled_at", issue.get("canceledAt")),
        ("url", issue.get("url")),
    ]
    lines = ["---"]
    lines += [f"{key}: {orjson.dumps(value).decode()}" for key, value in front if value is not None]
    lines += ["---", "", f"# {issue.get('identifier')}: {issue.get('title') or ''}".rstrip(), ""]
    description = (issue.get("description") or "").strip()
    lines += [description or "_No description._", ""]
    ordered = sorted(comments, key=lambda c: (str(c.get("createdAt") or ""), str(c.get("id") or "")))
    if ordered:
        lines += ["## Comments", ""]
    for comment in ordered:
        reply = " (reply)" if isinstance(comment.get("parent"), dict) else ""
        edited = f", edited {comment['editedAt']}" if comment.get("editedAt") else ""
        lines += [
            f"### {_person(comment.get('user')) or 'Unknown author'}, {comment.get('createdAt')}{edited}{reply}",
            "",
        ]
        lines += [(comment.get("body") or "").strip(), ""]
    return "\n".join(lines).encode("utf-8")
