"""GitHub deliveries -> control events. Pure: the delivery and the instance in, events out.

Invariants:
- sourceId is `github:<repository id>`: ids survive renames and transfers.
- A delivery routes to events or to an `Ignored` rule, never to nothing; what
  cannot be read raises `RoutingError` (it is dead-lettered).
- Every event carries `DeliveryRef(key=delivery.key)` and occurs at the
  delivery's `received_at`; a SyncRequested's request id is the delivery id
  (`<delivery id>/<source id>` for the request of each repository a delivery
  connects), so a redelivery asks for the same request.
- A push asks the source to look again (`incremental`: the planner diffs from
  the commit the documents are at to the tracked branch's head, or lists
  everything when it must); it names its branch, and the orchestrator answers a
  push to a branch the source does not track with a counted rule. Its changed
  paths travel as hints only while they fit the model's bounds (past them, none:
  the diff decides, as it does anyway). Only an instance's explicit
  `tracked_branch` option filters pushes here, for every repository the
  instance serves. A push whose commits add, modify or remove a config file
  asks for `full` (trigger `config_change`); what the file says, and whether it
  is there at all, the planner reads at the commit it syncs: routing never
  claims a config status.
- Connecting a repository (an installation created or unsuspended, repositories
  added, a repository unarchived) asks it to be looked at (trigger `connect`):
  its first sync lists everything and reads its config file. An instance's
  `config_files` option travels in the source's config, so the planner reads the
  names the pushes are checked against.
- Ignore rules become metric labels, so their names come from bounded sets:
  GitHub's documented event names (anything else is `unknown_event`) and the
  actions GitHub itself enumerates. `repository_dispatch`'s action is the
  `event_type` its sender chose, so it is never part of a rule name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from pydantic import ValidationError

from app.core.config_file import DEFAULT_CONFIG_FILES, config_files
from app.events import (
    ControlEvent,
    Delivery,
    DeliveryRef,
    SourceConnected,
    SourceDisconnected,
    SourceUpdated,
    SyncRequested,
)
from app.events.bounds import path_hints_fit
from app.instances import ConfigError, InstanceConfig
from app.plugins.base import Ignored, Routed, RoutingError
from app.plugins.options import text_list_option, text_option
from app.plugins.payloads import json_object, rule_part

# GitHub's push schema: "The array includes a maximum of 2048 commits." A push
# listing that many may have been cut off. (Timeline-shaped payloads list at
# most 20 and carry `size`/`distinct_size`, checked separately.)
MAX_LISTED_COMMITS = 2048
NULL_SHA = "0" * 40
BRANCH_PREFIX = "refs/heads/"
TAG_PREFIX = "refs/tags/"
# GitHub's webhook event names (docs "Webhook events and payloads"). An `X-GitHub-Event`
# outside this set is not signed by GitHub's HMAC (only the body is): it must not mint a label.
KNOWN_EVENTS = frozenset(
    (
        "branch_protection_configuration",
        "branch_protection_rule",
        "check_run",
        "check_suite",
        "code_scanning_alert",
        "commit_comment",
        "create",
        "custom_property",
        "custom_property_values",
        "delete",
        "dependabot_alert",
        "deploy_key",
        "deployment",
        "deployment_protection_rule",
        "deployment_review",
        "deployment_status",
        "discussion",
        "discussion_comment",
        "fork",
        "github_app_authorization",
        "gollum",
        "installation",
        "installation_repositories",
        "installation_target",
        "issue_comment",
        "issues",
        "label",
        "marketplace_purchase",
        "member",
        "membership",
        "merge_group",
        "meta",
        "milestone",
        "org_block",
        "organization",
        "package",
        "page_build",
        "personal_access_token_request",
        "ping",
        "project",
        "project_card",
        "project_column",
        "projects_v2",
        "projects_v2_item",
        "projects_v2_status_update",
        "public",
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "pull_request_review_thread",
        "push",
        "registry_package",
        "release",
        "repository",
        "repository_advisory",
        "repository_dispatch",
        "repository_import",
        "repository_ruleset",
        "repository_vulnerability_alert",
        "secret_scanning_alert",
        "secret_scanning_alert_location",
        "secret_scanning_scan",
        "security_advisory",
        "security_and_analysis",
        "sponsorship",
        "star",
        "status",
        "sub_issues",
        "team",
        "team_add",
        "watch",
        "workflow_dispatch",
        "workflow_job",
        "workflow_run",
    )
)
# Events whose `action` is chosen by whoever triggered them, not enumerated by GitHub.
SENDER_CHOSEN_ACTIONS = frozenset(("repository_dispatch",))


@dataclass(frozen=True)
class _Origin:
    """What every event routed from one delivery shares."""

    delivery_id: str
    ref: DeliveryRef
    at: datetime

    def fields(self, source_id: str) -> dict[str, Any]:
        return {"source_id": source_id, "delivery": self.ref, "occurred_at": self.at}


def route_github(delivery: Delivery, instance: InstanceConfig) -> Routed:
    event = delivery.headers.get("x-github-event")
    if not event:
        raise RoutingError("missing x-github-event header")
    payload = _payload(delivery.body)
    action = payload.get("action")
    origin = _Origin(delivery.delivery_id, DeliveryRef(key=delivery.key), delivery.received_at)
    handler = _HANDLERS.get(event)
    try:
        if handler is None:
            return _ignored(event, action)
        return handler(origin, payload, action, instance)
    except ValidationError as exc:
        # A payload field of the wrong shape (e.g. `after` not a string).
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        summary = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:3])
        raise RoutingError(f"{event} payload does not fit the event model: {summary}") from None
    except ConfigError as exc:
        # Bad options (validate_options was not run or not heeded): dead-letter, redrive after the fix.
        raise RoutingError(f"cannot route with this instance's options: {exc}") from None


def _payload(body: bytes) -> dict[str, Any]:
    """The JSON payload; GitHub's `application/x-www-form-urlencoded` form (`payload=<json>`) too."""
    if body.startswith(b"payload="):
        values = parse_qs(body.decode("utf-8", errors="replace")).get("payload", [])
        body = values[0].encode("utf-8") if len(values) == 1 else b""
    payload = json_object(body)
    if payload is None:
        raise RoutingError("body is not a JSON object")
    return payload


def _ignored(event: str, action: object = None) -> Routed:
    """Ignored under `event[.action]`, from bounded sets only (the rule is a metric label)."""
    if event not in KNOWN_EVENTS:
        return Routed(ignored=Ignored("unknown_event"))
    if action is None or event in SENDER_CHOSEN_ACTIONS:
        return Routed(ignored=Ignored(event))
    return Routed(ignored=Ignored(f"{event}.{rule_part(action)}"))


def _object(container: dict[str, Any], key: str) -> dict[str, Any]:
    value = container.get(key)
    if not isinstance(value, dict):
        raise RoutingError(f"payload.{key} is missing or not an object")
    return value


def _list(container: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = container.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise RoutingError(f"payload.{key} is not a list of objects")
    return value


def _source_id(repository: dict[str, Any]) -> str:
    repo_id = repository.get("id")
    if not isinstance(repo_id, int) or isinstance(repo_id, bool):
        raise RoutingError("a repository in the payload has no numeric id")
    return f"github:{repo_id}"


def _full_name(repository: dict[str, Any]) -> str:
    full_name = repository.get("full_name")
    if not isinstance(full_name, str) or not full_name:
        raise RoutingError("a repository in the payload has no full_name")
    return full_name


def _installation_id(payload: dict[str, Any]) -> int | None:
    installation = payload.get("installation")
    value = installation.get("id") if isinstance(installation, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def config_file_names(instance: InstanceConfig) -> tuple[str, ...]:
    """The instance's `config_files` option (default `.hookstream.yml`, `.hookstream.yaml`), checked."""
    names = text_list_option(instance, "config_files", DEFAULT_CONFIG_FILES)
    try:
        return config_files({"config_files": list(names)})
    except ValueError as exc:
        raise ConfigError(f"instance {instance.plugin}/{instance.id} options.config_files: {exc}") from None


def _connected(
    origin: _Origin, repository: dict[str, Any], installation_id: int | None, instance: InstanceConfig
) -> SourceConnected:
    full_name = _full_name(repository)
    config: dict[str, Any] = {"repository": full_name}
    if installation_id is not None:
        config["installation_id"] = installation_id
    if repository.get("default_branch"):
        config["default_branch"] = repository["default_branch"]
    if "config_files" in instance.options:
        config["config_files"] = list(config_file_names(instance))
    return SourceConnected(**origin.fields(_source_id(repository)), source_type="github", name=full_name, config=config)


def _connections(
    origin: _Origin, repositories: list[dict[str, Any]], installation_id: int | None, instance: InstanceConfig
) -> list[ControlEvent]:
    """Connect each repository, then ask each to be looked at: the first sync lists everything and
    reads the config file; a reconnected source diffs from where its documents are."""
    connected = [_connected(origin, r, installation_id, instance) for r in repositories]
    looks: list[ControlEvent] = [
        SyncRequested(
            **origin.fields(c.source_id),
            request_id=f"{origin.delivery_id}/{c.source_id}",
            mode="incremental",
            trigger="connect",
        )
        for c in connected
    ]
    return [*connected, *looks]


def _disconnected(origin: _Origin, repository: dict[str, Any], reason: str) -> SourceDisconnected:
    return SourceDisconnected(**origin.fields(_source_id(repository)), reason=reason)


def _per_repository(events: list[ControlEvent], event: str, action: str) -> Routed:
    # An installation with no repositories listed still ends somewhere countable.
    if not events:
        return Routed(ignored=Ignored(f"{event}.{rule_part(action)}.no_repositories"))
    return Routed(events=tuple(events))


# --- push -------------------------------------------------------------------


def _push(origin: _Origin, payload: dict[str, Any], action: object, instance: InstanceConfig) -> Routed:
    ref = payload.get("ref")
    if not isinstance(ref, str):
        raise RoutingError("payload.ref is missing")
    kind = "branch" if ref.startswith(BRANCH_PREFIX) else "tag" if ref.startswith(TAG_PREFIX) else "other_ref"
    if payload.get("deleted") is True:
        return Routed(ignored=Ignored(f"push.{kind}_deleted"))
    if kind != "branch":
        return Routed(ignored=Ignored(f"push.{kind}"))
    repository = _object(payload, "repository")
    branch = ref[len(BRANCH_PREFIX) :]
    tracked = text_option(instance, "tracked_branch", None)
    if tracked is not None and branch != tracked:
        return Routed(ignored=Ignored("push.untracked_branch"))

    source_id = _source_id(repository)
    commits = _list(payload, "commits")
    before, after = _sha(payload.get("before")), _sha(payload.get("after"))
    if before is not None and before == after and not commits:
        return Routed(ignored=Ignored("push.no_change"))

    changed = sorted(_changed_paths(commits))
    names = config_file_names(instance)
    full = any(p in names for p in changed)
    # Paths are hints only (the planner diffs real commits): none when the payload may not list them all.
    hints = [] if full or _may_omit_paths(payload, commits, before) or not path_hints_fit(changed) else changed
    request = SyncRequested(
        **origin.fields(source_id),
        request_id=origin.delivery_id,
        mode="full" if full else "incremental",
        trigger="config_change" if full else "push",
        paths=hints,
        before=before,
        after=after,
        branch=branch,
    )
    return Routed(events=(request,))


def _sha(value: object) -> str | None:
    """A commit id, or None for GitHub's all-zero "no commit" (a created or deleted branch)."""
    if value is None or value == NULL_SHA:
        return None
    if not isinstance(value, str):
        raise RoutingError("payload.before/after is not a commit id")
    return value


def _changed_paths(commits: list[dict[str, Any]]) -> set[str]:
    paths: set[str] = set()
    for commit in commits:
        for kind in ("added", "modified", "removed"):
            listed = commit.get(kind) or []
            if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
                raise RoutingError(f"a commit's {kind} is not a list of paths")
            paths.update(listed)
    return paths


def _may_omit_paths(payload: dict[str, Any], commits: list[dict[str, Any]], before: str | None) -> bool:
    """True when the payload's commits may not name every changed path."""
    if payload.get("forced") is True or payload.get("created") is True or before is None:
        return True  # history rewritten, or no base to diff from
    if not commits or len(commits) >= MAX_LISTED_COMMITS:
        return True  # moved without listing, or possibly cut off
    for counted in ("size", "distinct_size"):
        total = payload.get(counted)
        if isinstance(total, int) and total > len(commits):
            return True
    return False


# --- installations and repositories -----------------------------------------


def _installation(origin: _Origin, payload: dict[str, Any], action: object, instance: InstanceConfig) -> Routed:
    repositories = _list(payload, "repositories")
    installation_id = _installation_id(payload)
    if action in ("created", "unsuspend"):
        # unsuspend undoes suspend's disconnect; without it a suspended app never syncs again.
        return _per_repository(_connections(origin, repositories, installation_id, instance), "installation", action)
    if action in ("deleted", "suspend"):
        reason = f"installation.{action}"
        return _per_repository([_disconnected(origin, r, reason) for r in repositories], "installation", action)
    return _ignored("installation", action)


def _installation_repositories(
    origin: _Origin, payload: dict[str, Any], action: object, instance: InstanceConfig
) -> Routed:
    event = "installation_repositories"
    if action == "added":
        installation_id = _installation_id(payload)
        connected = _connections(origin, _list(payload, "repositories_added"), installation_id, instance)
        return _per_repository(connected, event, action)
    if action == "removed":
        reason = f"{event}.removed"
        return _per_repository(
            [_disconnected(origin, r, reason) for r in _list(payload, "repositories_removed")], event, action
        )
    return _ignored(event, action)


def _repository(origin: _Origin, payload: dict[str, Any], action: object, instance: InstanceConfig) -> Routed:
    repository = _object(payload, "repository")
    if action in ("deleted", "archived"):
        return Routed(events=(_disconnected(origin, repository, f"repository.{action}"),))
    if action == "unarchived":
        # Undoes archived's disconnect.
        return Routed(events=tuple(_connections(origin, [repository], _installation_id(payload), instance)))
    if action in ("renamed", "transferred"):
        full_name = _full_name(repository)
        config: dict[str, Any] = {"repository": full_name}
        if repository.get("default_branch"):
            config["default_branch"] = repository["default_branch"]
        return Routed(events=(SourceUpdated(**origin.fields(_source_id(repository)), name=full_name, config=config),))
    return _ignored("repository", action)


def _ping(origin: _Origin, payload: dict[str, Any], action: object, instance: InstanceConfig) -> Routed:
    return Routed(ignored=Ignored("ping"))


_Handler = Callable[[_Origin, dict[str, Any], Any, InstanceConfig], Routed]
_HANDLERS: dict[str, _Handler] = {
    "push": _push,
    "installation": _installation,
    "installation_repositories": _installation_repositories,
    "repository": _repository,
    "ping": _ping,
}
