"""Routing rules per plugin, on realistic payloads (tests/unit/payloads/github, shaped after GitHub's docs)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from app.events import Delivery, DeliveryRef, SyncRequested
from app.instances import InstanceConfig
from app.plugins import PLUGINS
from app.plugins.base import Ignored, Routed, RoutingError

PAYLOADS = Path(__file__).parent / "payloads" / "github"
RECEIVED_AT = datetime(2024, 5, 2, 10, 21, 7, tzinfo=UTC)
HANDBOOK = "github:186853002"
RUNBOOKS = "github:186853077"


@cache
def _fixture(name: str) -> str:
    return (PAYLOADS / f"{name}.json").read_text()


def payload(name: str, **changes: Any) -> dict[str, Any]:
    """A fixture, with top-level fields replaced (a variant of a realistic payload)."""
    data = json.loads(_fixture(name))
    data.update(copy.deepcopy(changes))
    return data


def delivery(plugin: str, body: bytes, headers: dict[str, str] | None = None, delivery_id: str = "d-1") -> Delivery:
    return Delivery(
        delivery_id=delivery_id,
        plugin=plugin,
        instance="octo",
        received_at=RECEIVED_AT,
        headers=headers or {},
        body=body,
    )


def github(event: str, data: dict[str, Any], delivery_id: str = "d-1") -> Delivery:
    return delivery(
        "github", orjson.dumps(data), {"x-github-event": event, "x-github-delivery": delivery_id}, delivery_id
    )


def instance(plugin: str = "github", **options: Any) -> InstanceConfig:
    return InstanceConfig(plugin=plugin, id="octo", secrets=("s",), options=options)


def route_github(event: str, data: dict[str, Any], **options: Any) -> Routed:
    return PLUGINS["github"].route(github(event, data), instance(**options))


def summary(routed: Routed) -> Ignored | list[dict[str, Any]]:
    """What a rule decided, without the fields every event shares (checked separately)."""
    if routed.ignored is not None:
        assert routed.events == ()
        return routed.ignored
    assert routed.events, "a delivery must route to events or to an Ignored rule"
    return [e.model_dump(exclude={"delivery", "occurred_at", "schema_version"}) for e in routed.events]


def sync(
    mode: str,
    *,
    before: str | None,
    after: str | None,
    paths: list[str] = (),
    trigger: str = "push",
    source_id: str = HANDBOOK,
    branch: str | None = "main",
) -> dict[str, Any]:
    return {
        "type": "sync.requested",
        "source_id": source_id,
        "request_id": "d-1",
        "mode": mode,
        "trigger": trigger,
        "paths": list(paths),
        "before": before,
        "after": after,
        "branch": branch,
        "force": False,
    }


def connected(
    source_id: str, full_name: str, default_branch: str | None = None, installation_id: int | None = 41234567
) -> dict[str, Any]:
    config: dict[str, Any] = {"repository": full_name}
    if installation_id is not None:
        config["installation_id"] = installation_id
    if default_branch is not None:
        config["default_branch"] = default_branch
    return {
        "type": "source.connected",
        "source_id": source_id,
        "source_type": "github",
        "name": full_name,
        "config": config,
    }


def look(source_id: str) -> dict[str, Any]:
    """The request a connection makes: look at the repository (its first sync lists everything)."""
    return {
        **sync("incremental", before=None, after=None, trigger="connect", source_id=source_id, branch=None),
        "request_id": f"d-1/{source_id}",
    }


def disconnected(source_id: str, reason: str) -> dict[str, Any]:
    return {"type": "source.disconnected", "source_id": source_id, "reason": reason}


def shas(name: str) -> dict[str, str]:
    data = payload(name)
    return {"before": data["before"], "after": data["after"]}


SEVERAL = shas("push_several_commits")
SEVERAL_PATHS = ["README.md", "docs/old-process.md", "docs/onboarding.md", "docs/oncall.md", "docs/process.md"]
CONFIG = shas("push_config_change")
UNTRACKED = shas("push_untracked_branch")


def commits(n: int) -> list[dict[str, Any]]:
    one = payload("push_several_commits")["commits"][0]
    return [dict(one, id=f"{i:040x}", added=[f"docs/generated-{i}.md"], modified=[], removed=[]) for i in range(n)]


GITHUB_RULES = [
    # test id, event, payload, options, expected
    (
        "push with several commits syncs their paths incrementally",
        "push",
        payload("push_several_commits"),
        {},
        [sync("incremental", paths=SEVERAL_PATHS, **SEVERAL)],
    ),
    # A push asks to look again; the planner decides between a diff and a full listing (a force
    # push's new head does not contain the documents' commit), so its listed paths are no hints.
    (
        "forced push asks to look again, without path hints",
        "push",
        payload("push_forced"),
        {},
        [sync("incremental", **shas("push_forced"))],
    ),
    # Routing never claims a config status: the planner reads the file at the commit it syncs.
    (
        "push changing the config file syncs in full and claims no config status",
        "push",
        payload("push_config_change"),
        {},
        [sync("full", trigger="config_change", **CONFIG)],
    ),
    (
        "push removing the config file syncs in full and claims no config status",
        "push",
        payload(
            "push_config_change",
            commits=[
                dict(payload("push_config_change")["commits"][0], added=[], modified=[], removed=[".hookstream.yml"])
            ],
        ),
        {},
        [sync("full", trigger="config_change", **CONFIG)],
    ),
    (
        "configured config files replace the defaults",
        "push",
        payload("push_config_change"),
        {"config_files": ["hookstream.yml"]},
        [sync("incremental", paths=[".hookstream.yml", "runbooks/db-failover.md"], **CONFIG)],
    ),
    (
        "a configured config file changed by a push counts",
        "push",
        payload("push_several_commits"),
        {"config_files": ["README.md"]},
        [sync("full", trigger="config_change", **SEVERAL)],
    ),
    ("branch deletion is ignored by rule", "push", payload("push_branch_deleted"), {}, Ignored("push.branch_deleted")),
    ("tag deletion is ignored by its own rule", "push", payload("push_tag_deleted"), {}, Ignored("push.tag_deleted")),
    (
        "deletion of another kind of ref is ignored by its own rule",
        "push",
        payload("push_tag_deleted", ref="refs/notes/commits"),
        {},
        Ignored("push.other_ref_deleted"),
    ),
    # Which branch a source tracks is the source's (the orchestrator answers other branches by rule).
    (
        "push to another branch names its branch for the source to judge",
        "push",
        payload("push_untracked_branch"),
        {},
        [sync("incremental", paths=["docs/draft.md"], branch="feature/new-layout", **UNTRACKED)],
    ),
    (
        "an instance's tracked branch filters pushes to other branches",
        "push",
        payload("push_untracked_branch"),
        {"tracked_branch": "main"},
        Ignored("push.untracked_branch"),
    ),
    (
        "a configured tracked branch routes pushes to it",
        "push",
        payload("push_untracked_branch"),
        {"tracked_branch": "feature/new-layout"},
        [sync("incremental", paths=["docs/draft.md"], branch="feature/new-layout", **UNTRACKED)],
    ),
    (
        "push to the default branch is untracked when another branch is configured",
        "push",
        payload("push_several_commits"),
        {"tracked_branch": "release"},
        Ignored("push.untracked_branch"),
    ),
    (
        "push to a tag is ignored by rule",
        "push",
        payload("push_several_commits", ref="refs/tags/v1.2.0"),
        {},
        Ignored("push.tag"),
    ),
    (
        "push with more commits than listed gives no path hints",
        "push",
        payload("push_more_commits_than_listed"),
        {},
        [sync("incremental", **shas("push_more_commits_than_listed"))],
    ),
    (
        "push listing GitHub's maximum of commits gives no path hints",
        "push",
        payload("push_several_commits", commits=commits(2048)),
        {},
        [sync("incremental", **SEVERAL)],
    ),
    (
        "push listing one commit fewer than the maximum syncs incrementally",
        "push",
        payload("push_several_commits", commits=commits(2047)),
        {},
        [sync("incremental", paths=sorted(f"docs/generated-{i}.md" for i in range(2047)), **SEVERAL)],
    ),
    (
        "push creating the tracked branch names no before and gives no hints",
        "push",
        payload("push_several_commits", created=True, before="0" * 40),
        {},
        [sync("incremental", before=None, after=SEVERAL["after"])],
    ),
    (
        "push moving the branch without listing commits gives no hints",
        "push",
        payload("push_several_commits", commits=[]),
        {},
        [sync("incremental", **SEVERAL)],
    ),
    (
        "push that moves nothing is ignored by rule",
        "push",
        payload("push_several_commits", commits=[], after=SEVERAL["before"]),
        {},
        Ignored("push.no_change"),
    ),
    (
        "installation created connects every repository and looks at each",
        "installation",
        payload("installation_created"),
        {},
        [
            connected(HANDBOOK, "octo-org/handbook"),
            connected(RUNBOOKS, "octo-org/runbooks"),
            look(HANDBOOK),
            look(RUNBOOKS),
        ],
    ),
    (
        "an instance's config files travel in the sources it connects",
        "installation",
        payload("installation_created"),
        {"config_files": ["docs/hookstream.yml"]},
        [
            {
                **connected(HANDBOOK, "octo-org/handbook"),
                "config": {
                    **connected(HANDBOOK, "octo-org/handbook")["config"],
                    "config_files": ["docs/hookstream.yml"],
                },
            },
            {
                **connected(RUNBOOKS, "octo-org/runbooks"),
                "config": {
                    **connected(RUNBOOKS, "octo-org/runbooks")["config"],
                    "config_files": ["docs/hookstream.yml"],
                },
            },
            look(HANDBOOK),
            look(RUNBOOKS),
        ],
    ),
    (
        "installation unsuspended connects every repository again",
        "installation",
        payload("installation_suspend", action="unsuspend"),
        {},
        [
            connected(HANDBOOK, "octo-org/handbook"),
            connected(RUNBOOKS, "octo-org/runbooks"),
            look(HANDBOOK),
            look(RUNBOOKS),
        ],
    ),
    (
        "installation deleted disconnects every repository",
        "installation",
        payload("installation_deleted"),
        {},
        [disconnected(HANDBOOK, "installation.deleted"), disconnected(RUNBOOKS, "installation.deleted")],
    ),
    (
        "installation suspended disconnects every repository",
        "installation",
        payload("installation_suspend"),
        {},
        [disconnected(HANDBOOK, "installation.suspend"), disconnected(RUNBOOKS, "installation.suspend")],
    ),
    (
        "installation without listed repositories is ignored by rule",
        "installation",
        payload("installation_created", repositories=[]),
        {},
        Ignored("installation.created.no_repositories"),
    ),
    (
        "other installation actions are ignored by rule",
        "installation",
        payload("installation_new_permissions_accepted"),
        {},
        Ignored("installation.new_permissions_accepted"),
    ),
    (
        "repositories added to an installation are connected",
        "installation_repositories",
        payload("installation_repositories_added"),
        {},
        [connected("github:190222333", "octo-org/adr"), look("github:190222333")],
    ),
    (
        "repositories removed from an installation are disconnected",
        "installation_repositories",
        payload("installation_repositories_removed"),
        {},
        [disconnected(RUNBOOKS, "installation_repositories.removed")],
    ),
    (
        "renamed repository keeps its source id and updates its name",
        "repository",
        payload("repository_renamed"),
        {},
        [
            {
                "type": "source.updated",
                "source_id": HANDBOOK,
                "name": "octo-org/team-handbook",
                "config": {"repository": "octo-org/team-handbook", "default_branch": "main"},
            }
        ],
    ),
    (
        "transferred repository keeps its source id and updates its name",
        "repository",
        payload("repository_transferred"),
        {},
        [
            {
                "type": "source.updated",
                "source_id": HANDBOOK,
                "name": "octo-org/handbook",
                "config": {"repository": "octo-org/handbook", "default_branch": "main"},
            }
        ],
    ),
    (
        "archived repository is disconnected",
        "repository",
        payload("repository_archived"),
        {},
        [disconnected(HANDBOOK, "repository.archived")],
    ),
    (
        "deleted repository is disconnected",
        "repository",
        payload("repository_deleted"),
        {},
        [disconnected(HANDBOOK, "repository.deleted")],
    ),
    (
        "unarchived repository is connected again",
        "repository",
        payload("repository_archived", action="unarchived"),
        {},
        [connected(HANDBOOK, "octo-org/handbook", default_branch="main"), look(HANDBOOK)],
    ),
    (
        "other repository actions are ignored by rule",
        "repository",
        payload("repository_deleted", action="edited"),
        {},
        Ignored("repository.edited"),
    ),
    ("ping is ignored by rule", "ping", payload("ping"), {}, Ignored("ping")),
    (
        "an unknown event is ignored by a rule naming event and action",
        "issues",
        payload("issues_opened"),
        {},
        Ignored("issues.opened"),
    ),
    ("an unknown event without an action is ignored by a rule naming it", "fork", payload("ping"), {}, Ignored("fork")),
    (
        "an event GitHub does not document is ignored under one bounded rule",
        "weird event/../x",
        payload("issues_opened"),
        {},
        Ignored("unknown_event"),
    ),
    (
        "a rule name never holds more than safe characters",
        "issues",
        payload("issues_opened", action="a b" * 50),
        {},
        Ignored("issues." + "a_b" * 21 + "a"),
    ),
    (
        "a repository dispatch is ignored without its sender-chosen action",
        "repository_dispatch",
        payload("repository_dispatch"),
        {},
        Ignored("repository_dispatch"),
    ),
    (
        "a repository dispatch of another event type is counted under the same rule",
        "repository_dispatch",
        payload("repository_dispatch", action="deploy-42"),
        {},
        Ignored("repository_dispatch"),
    ),
]


@pytest.mark.parametrize(
    "event, data, options, expected", [row[1:] for row in GITHUB_RULES], ids=[row[0] for row in GITHUB_RULES]
)
def test_github_routing_rule(event, data, options, expected):
    assert summary(route_github(event, data, **options)) == expected


@pytest.mark.parametrize(
    "event, data",
    [(row[1], row[2]) for row in GITHUB_RULES if isinstance(row[4], list)],
    ids=[row[0] for row in GITHUB_RULES if isinstance(row[4], list)],
)
def test_every_routed_github_event_names_its_delivery_and_occurs_when_received(event, data):
    d = github(event, data, delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    routed = PLUGINS["github"].route(d, instance())
    for e in routed.events:
        assert e.delivery == DeliveryRef(key="github/octo/72d3162e-cc78-11e3-81ab-4c9367dc0958")
        assert e.occurred_at == RECEIVED_AT
        if isinstance(e, SyncRequested):
            # A redelivery asks the same request: the delivery id, per repository when it connects several.
            assert e.request_id in (d.delivery_id, f"{d.delivery_id}/{e.source_id}")
    # A redelivery routes to the very same events: routing is a pure function of the delivery.
    assert PLUGINS["github"].route(d, instance()) == routed


def test_github_form_encoded_payload_routes_like_json():
    data = payload("push_several_commits")
    form = urlencode({"payload": json.dumps(data)}).encode()
    d = delivery("github", form, {"x-github-event": "push"})
    assert PLUGINS["github"].route(d, instance()) == route_github("push", data)


def _without(data: dict[str, Any], *path: str) -> dict[str, Any]:
    data = copy.deepcopy(data)
    inner = data
    for key in path[:-1]:
        inner = inner[key]
    del inner[path[-1]]
    return data


@pytest.mark.parametrize(
    "headers, body, reason",
    [
        ({}, orjson.dumps(payload("ping")), "missing x-github-event"),
        ({"x-github-event": "push"}, b"<html>not json</html>", "not a JSON object"),
        ({"x-github-event": "push"}, b'["a", "list"]', "not a JSON object"),
        (
            {"x-github-event": "push"},
            orjson.dumps(_without(payload("push_several_commits"), "repository")),
            "payload.repository",
        ),
        (
            {"x-github-event": "push"},
            orjson.dumps(_without(payload("push_several_commits"), "repository", "id")),
            "no numeric id",
        ),
        ({"x-github-event": "push"}, orjson.dumps(_without(payload("push_several_commits"), "ref")), "payload.ref"),
        (
            {"x-github-event": "push"},
            orjson.dumps(payload("push_several_commits", commits={"not": "a list"})),
            "payload.commits",
        ),
        ({"x-github-event": "push"}, orjson.dumps(payload("push_several_commits", after=42)), "not a commit id"),
        (
            {"x-github-event": "push"},
            orjson.dumps(payload("push_several_commits", commits=[{"added": "README.md"}])),
            "added is not a list",
        ),
        (
            {"x-github-event": "installation"},
            orjson.dumps(payload("installation_created", repositories=[{"id": 1}])),
            "no full_name",
        ),
        (
            {"x-github-event": "repository"},
            orjson.dumps(_without(payload("repository_renamed"), "repository", "full_name")),
            "no full_name",
        ),
    ],
)
def test_a_github_delivery_that_cannot_be_read_is_a_routing_error(headers, body, reason):
    with pytest.raises(RoutingError, match=reason):
        PLUGINS["github"].route(delivery("github", body, headers), instance())


def test_github_options_that_do_not_validate_make_routing_errors_not_crashes():
    with pytest.raises(RoutingError, match="options.config_files"):
        route_github("push", payload("push_several_commits"), config_files="README.md")


def test_push_without_a_default_branch_still_names_its_branch():
    data = _without(payload("push_several_commits"), "repository", "default_branch")
    assert summary(route_github("push", data))[0]["branch"] == "main"


# --- producer events: standard-webhooks and generic-hmac -----------------------

PRODUCER_PLUGINS = ("standard-webhooks", "generic-hmac")
REQUEST = {
    "type": "sync.requested",
    "source_id": "git:handbook",
    "occurred_at": "2024-05-02T10:00:00Z",
    "request_id": "manual-7",
    "mode": "full",
    "trigger": "manual",
}


@pytest.mark.parametrize("plugin", PRODUCER_PLUGINS)
def test_a_producer_event_routes_as_itself_with_its_delivery_attached(plugin):
    d = delivery(plugin, orjson.dumps(REQUEST), delivery_id="msg_1")
    (event,) = PLUGINS[plugin].route(d, instance(plugin)).events
    assert isinstance(event, SyncRequested)
    assert event.delivery == DeliveryRef(key=f"{plugin}/octo/msg_1")
    assert (
        event.model_dump(
            mode="json", exclude={"delivery", "schema_version", "paths", "before", "after", "branch", "force"}
        )
        == REQUEST
    )


@pytest.mark.parametrize("plugin", PRODUCER_PLUGINS)
def test_a_producer_events_own_delivery_reference_is_kept(plugin):
    own = {"type": "delivery.ref", "key": "upstream/k", "partition": 3, "offset": 99}
    d = delivery(plugin, orjson.dumps({**REQUEST, "delivery": own}))
    (event,) = PLUGINS[plugin].route(d, instance(plugin)).events
    assert event.delivery == DeliveryRef(key="upstream/k", partition=3, offset=99)


@pytest.mark.parametrize("plugin", PRODUCER_PLUGINS)
@pytest.mark.parametrize(
    "event",
    [
        {
            "type": "source.connected",
            "source_id": "git:handbook",
            "occurred_at": "2024-05-02T10:00:00Z",
            "source_type": "git",
            "config": {"path": "/srv/handbook"},
        },
        {"type": "source.disconnected", "source_id": "git:handbook", "occurred_at": "2024-05-02T10:00:00Z"},
    ],
)
def test_every_producer_event_type_routes(plugin, event):
    (routed,) = PLUGINS[plugin].route(delivery(plugin, orjson.dumps(event)), instance(plugin)).events
    assert routed.type == event["type"]


@pytest.mark.parametrize("plugin", PRODUCER_PLUGINS)
@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        orjson.dumps({**REQUEST, "type": "sync.planned"}),  # an internal fact, not a producer event
        orjson.dumps({k: v for k, v in REQUEST.items() if k != "request_id"}),
        orjson.dumps({**REQUEST, "mode": "everything"}),
        orjson.dumps({**REQUEST, "unexpected": True}),
    ],
)
def test_a_body_that_is_not_a_valid_producer_event_is_a_routing_error(plugin, body):
    with pytest.raises(RoutingError, match="not a hookstream producer event"):
        PLUGINS[plugin].route(delivery(plugin, body), instance(plugin))


# --- linear ----------------------------------------------------------------------

ORG = "8a5f2c3e-7b1d-4e9a-b6c0-1d2e3f4a5b6c"
TEAM = {"id": "team-eng", "key": "ENG", "name": "Engineering"}


def linear_payload(kind: str, action: str, data: dict[str, Any], organization: object = ORG) -> dict[str, Any]:
    """Linear's EntityWebhookPayload (the fields routing reads, plus the ones it must not need)."""
    return {
        "action": action,
        "type": kind,
        "data": data,
        "organizationId": organization,
        "createdAt": "2024-05-02T10:21:07.000Z",
        "url": "https://linear.app/acme/issue/ENG-12",
        "webhookId": "wh-1",
        "webhookTimestamp": 1714645267000,
        "actor": {"id": "user-1", "type": "user", "name": "Grace"},
    }


ISSUE_DATA = {
    "id": "9b3c0001-7e21-4c2d-9f00-5a1b2c3d4e5f",
    "identifier": "ENG-12",
    "title": "Crash on save",
    "number": 12,
    "previousIdentifiers": [],
    "teamId": "team-eng",
    "team": TEAM,
    "updatedAt": "2024-05-02T10:21:06.512Z",
}
COMMENT_DATA = {
    "id": "c0ffee01-1111-4222-8333-444455556666",
    "body": "Still broken",
    "issueId": ISSUE_DATA["id"],
    "updatedAt": "2024-05-02T10:21:06.900Z",
    "issue": {
        "id": ISSUE_DATA["id"],
        "identifier": "ENG-12",
        "title": "Crash on save",
        "teamId": "team-eng",
        "team": TEAM,
        "url": "https://linear.app/acme/issue/ENG-12",
    },
}


def linear_sync(paths: list[str], after: str | None) -> dict[str, Any]:
    return {
        "type": "sync.requested",
        "source_id": f"linear:{ORG}",
        "request_id": "d-1",
        "mode": "incremental",
        "trigger": "webhook",
        "paths": paths,
        "before": None,
        "after": after,
        "branch": None,
        "force": False,
    }


LINEAR_RULES = [
    (
        "an issue created syncs it",
        linear_payload("Issue", "create", ISSUE_DATA),
        [linear_sync(["ENG-12"], ISSUE_DATA["updatedAt"])],
    ),
    (
        "an issue updated syncs it",
        linear_payload("Issue", "update", ISSUE_DATA),
        [linear_sync(["ENG-12"], ISSUE_DATA["updatedAt"])],
    ),
    (
        "an issue removed syncs it (the adapter finds it gone)",
        linear_payload("Issue", "remove", ISSUE_DATA),
        [linear_sync(["ENG-12"], ISSUE_DATA["updatedAt"])],
    ),
    (
        "a moved issue hints its old identifiers too",
        linear_payload(
            "Issue", "update", {**ISSUE_DATA, "identifier": "OPS-3", "previousIdentifiers": ["ENG-12", "ENG-12"]}
        ),
        [linear_sync(["OPS-3", "ENG-12"], ISSUE_DATA["updatedAt"])],
    ),
    (
        "an issue without an identifier hints its id",
        linear_payload("Issue", "update", {"id": ISSUE_DATA["id"]}),
        [linear_sync([ISSUE_DATA["id"]], None)],
    ),
    (
        "a comment created syncs its issue",
        linear_payload("Comment", "create", COMMENT_DATA),
        [linear_sync(["ENG-12"], COMMENT_DATA["updatedAt"])],
    ),
    (
        "a comment removed syncs its issue",
        linear_payload("Comment", "remove", COMMENT_DATA),
        [linear_sync(["ENG-12"], COMMENT_DATA["updatedAt"])],
    ),
    (
        "a comment without its issue object hints the issue id",
        linear_payload("Comment", "update", {**COMMENT_DATA, "issue": None}),
        [linear_sync([ISSUE_DATA["id"]], COMMENT_DATA["updatedAt"])],
    ),
    (
        "a comment on a project update is ignored by rule",
        linear_payload("Comment", "create", {"id": "c-2", "body": "x", "projectUpdateId": "pu-1"}),
        Ignored("linear.Comment.not_on_issue"),
    ),
    (
        "another documented type is ignored by a rule naming it",
        linear_payload("Project", "update", {"id": "p-1"}),
        Ignored("linear.Project"),
    ),
    (
        "a type Linear does not document is ignored under one bounded rule",
        linear_payload("Weird/Type", "update", {}),
        Ignored("linear.other"),
    ),
    (
        "a delivery without a type is ignored under the bounded rule",
        {"action": "remove", "webhookTimestamp": 1},
        Ignored("linear.other"),
    ),
]


@pytest.mark.parametrize("body, expected", [r[1:] for r in LINEAR_RULES], ids=[r[0] for r in LINEAR_RULES])
def test_linear_routing_rule(body, expected):
    assert summary(PLUGINS["linear"].route(delivery("linear", orjson.dumps(body)), instance("linear"))) == expected


def test_a_linear_sync_request_names_its_delivery_and_occurs_when_received():
    (event,) = (
        PLUGINS["linear"]
        .route(
            delivery("linear", orjson.dumps(linear_payload("Issue", "create", ISSUE_DATA)), delivery_id="lin-d-9"),
            instance("linear"),
        )
        .events
    )
    assert (event.delivery, event.occurred_at, event.request_id) == (
        DeliveryRef(key="linear/octo/lin-d-9"),
        RECEIVED_AT,
        "lin-d-9",
    )


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"\x00\x01", "not a JSON object"),
        (
            orjson.dumps(linear_payload("Issue", "create", ISSUE_DATA, organization=None)),
            "without a usable organizationId",
        ),
        (
            orjson.dumps(linear_payload("Issue", "create", ISSUE_DATA, organization="../etc")),
            "without a usable organizationId",
        ),
        (orjson.dumps({**linear_payload("Issue", "create", ISSUE_DATA), "data": "x"}), "without a data object"),
        (orjson.dumps(linear_payload("Issue", "update", {"title": "no id"})), "neither an identifier nor an id"),
    ],
)
def test_a_linear_delivery_that_cannot_be_routed_is_a_routing_error(body, reason):
    with pytest.raises(RoutingError, match=reason):
        PLUGINS["linear"].route(delivery("linear", body), instance("linear"))
