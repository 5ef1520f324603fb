"""`hookstream topics apply | diff`: the topology declared in topics/ against the cluster."""

from __future__ import annotations

import argparse

from app import topology
from app.cli.common import fail, load_settings, run
from app.core.topology import Plan


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("topics", help="create or check the topics declared in topics/*.toml")
    tsub = p.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    a = tsub.add_parser(
        "apply",
        help="create missing topics, report differences",
        description="Create every declared topic that is missing, with HOOKSTREAM_TOPIC_REPLICATION_FACTOR "
        "replicas and min.insync.replicas HOOKSTREAM_TOPIC_MIN_INSYNC_REPLICAS (1 and 1 by default; 3 and 2 "
        "for three brokers). Differences in partitions, replication or configs of existing topics are "
        "reported, never changed: exit 1 when any remain.",
    )
    a.set_defaults(func=cmd_apply)
    d = tsub.add_parser(
        "diff",
        help="report missing topics and differences (changes nothing)",
        description="Compare topics/*.toml, with the replication of HOOKSTREAM_TOPIC_REPLICATION_FACTOR and "
        "HOOKSTREAM_TOPIC_MIN_INSYNC_REPLICAS, with the cluster. Exit 0 when in sync, 1 otherwise.",
    )
    d.set_defaults(func=cmd_diff)


def _report(plan: Plan, created: bool) -> None:
    for spec in plan.missing:
        verb = "created" if created else "missing"
        print(f"{verb:8} {spec.name} (partitions={spec.partitions}, replication={spec.replication_factor})")
    for difference in plan.differences:
        print(f"differs  {difference}")
    if plan.in_sync:
        print("in sync: every declared topic exists as declared")


def cmd_apply(args: argparse.Namespace) -> int:
    settings = load_settings()
    plan, errors = run(topology.apply(settings))
    _report(plan, created=True)
    if errors:
        fail("could not create: " + "; ".join(errors))
    if plan.differences:
        print(f"{len(plan.differences)} difference(s) left: apply does not alter existing topics")
        return 1
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    settings = load_settings()

    async def go() -> Plan:
        admin = topology.admin_client(settings)
        await admin.start()
        try:
            _, p = await topology.plan(settings, admin)
            return p
        finally:
            await admin.close()

    plan = run(go())
    _report(plan, created=False)
    return 0 if plan.in_sync else 1
