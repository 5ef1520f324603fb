"""Metric label values from a bounded set, whatever the senders put in their payloads. Pure.

A label value is a time series: one a sender can choose (a `repository_dispatch`
action, an unknown event name) would let any authentic sender mint series without
end. Ignore rules name the payload's event and action (`issues.opened`,
`repository_dispatch.<anything>`): the label keeps a rule only when hookstream's
plugins name it with fixed text, else its event family when that is one the
provider documents, else `other`. The full rule is kept in the delivery ledger.
"""

from __future__ import annotations

OTHER = "other"

# Rules the plugins name with fixed text (app/plugins/github_routing.py).
FIXED_RULES = frozenset(
    {
        "ping",
        "push.branch_deleted",
        "push.tag",
        "push.other_ref",
        "push.untracked_branch",
        "push.no_change",
    }
)

# The providers' documented event names (GitHub's webhook events; every Linear rule is `linear.<type>`).
EVENT_FAMILIES = frozenset(
    {
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
        "linear",
    }
)


def ignore_rule_label(rule: str) -> str:
    """The label of an ignore rule: one of `FIXED_RULES`, an event family, or `other`."""
    if rule in FIXED_RULES:
        return rule
    family = rule.split(".", 1)[0]
    return family if family in EVENT_FAMILIES else OTHER


def one_of(value: str | None, allowed: frozenset[str] | tuple[str, ...]) -> str:
    """`value` when it is one of `allowed`, else `other`: for labels taken from records."""
    return value if value is not None and value in allowed else OTHER
