"""A Linear issue's document: pure rendering, pinned byte for byte."""

from __future__ import annotations

from app.sources.linear_render import issue_path, render_issue

ISSUE = {
    "id": "9b3c0001-7e21-4c2d-9f00-5a1b2c3d4e5f",
    "identifier": "ENG-12",
    "title": 'Crash on "save"',
    "description": "Steps:\n\n1. open\n2. save\n",
    "priorityLabel": "High",
    "url": "https://linear.app/acme/issue/ENG-12",
    "createdAt": "2024-05-02T10:00:00.000Z",
    "updatedAt": "2024-05-03T09:00:00.000Z",
    "startedAt": None,
    "completedAt": None,
    "canceledAt": None,
    "dueDate": "2024-05-10",
    "estimate": 3.0,
    "archivedAt": None,
    "trashed": None,
    "state": {"name": "In Progress", "type": "started"},
    "assignee": {"name": "Grace Hopper", "displayName": "grace"},
    "creator": {"name": "Ada Lovelace", "displayName": "ada"},
    "team": {"key": "ENG"},
    "project": None,
}
LABELS = [{"name": "ui"}, {"name": "bug"}, {"name": "ui"}]
COMMENTS = [
    {
        "id": "c2",
        "body": "Fixed in #7.",
        "createdAt": "2024-05-02T12:00:00.000Z",
        "editedAt": None,
        "parent": {"id": "c1"},
        "user": {"name": "Ada Lovelace", "displayName": "ada"},
    },
    {
        "id": "c1",
        "body": "Reproduced.\n",
        "createdAt": "2024-05-02T11:00:00.000Z",
        "editedAt": "2024-05-02T11:05:00.000Z",
        "parent": None,
        "user": None,
    },
]

EXPECTED = """---
id: "9b3c0001-7e21-4c2d-9f00-5a1b2c3d4e5f"
identifier: "ENG-12"
title: "Crash on \\"save\\""
team: "ENG"
state: "In Progress"
state_type: "started"
priority: "High"
labels: ["bug","ui"]
assignee: "grace"
creator: "ada"
estimate: 3.0
due: "2024-05-10"
created_at: "2024-05-02T10:00:00.000Z"
url: "https://linear.app/acme/issue/ENG-12"
---

# ENG-12: Crash on "save"

Steps:

1. open
2. save

## Comments

### Unknown author, 2024-05-02T11:00:00.000Z, edited 2024-05-02T11:05:00.000Z

Reproduced.

### ada, 2024-05-02T12:00:00.000Z (reply)

Fixed in #7.
"""


def test_an_issue_renders_to_front_matter_description_and_comments_in_order():
    assert render_issue(ISSUE, LABELS, COMMENTS).decode() == EXPECTED


def test_the_same_issue_in_another_order_renders_the_same_bytes_and_updated_at_is_not_shown():
    moved = {**ISSUE, "updatedAt": "2030-01-01T00:00:00.000Z"}
    assert render_issue(moved, list(reversed(LABELS)), list(reversed(COMMENTS))) == render_issue(
        ISSUE, LABELS, COMMENTS
    )


def test_an_issue_without_a_description_or_comments_says_so():
    text = render_issue({**ISSUE, "description": None}, [], []).decode()
    assert text.endswith('# ENG-12: Crash on "save"\n\n_No description._\n') and "## Comments" not in text
    assert issue_path("ENG-12") == "issues/ENG-12.md"
