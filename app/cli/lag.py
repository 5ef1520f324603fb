"""`hookstream lag`: per group, topic and partition, the committed offset, the true end offset and the lag."""

from __future__ import annotations

import argparse

import orjson

from app.cli.common import CliError, load_settings, run
from app.cli.replay import resolve_topic, worker_group
from app.cli.text import format_table
from app.core import lag as lag_core
from app.core.replay import CONSUMED_TOPICS
from app.embedded import tansu_quirks
from app.settings import Settings

DESCRIPTION = """\
How far a consumer group is behind: per partition, the offset the group committed,
the end offset (the offset the next record will get) and the lag (records not yet
processed), with a total per topic. Read-only: safe while the workers run.
"""

EPILOG = """\
A partition the group has no committed offset for shows COMMITTED "-" and counts
from the earliest offset (hookstream's workers start there). For the workers'
group every topic they consume is listed, committed or not; for another group,
the topics it has committed offsets for. The end offset is the true one, also on
the embedded broker (whose ListOffsets answer is too low: docs/local-broker.md, row 1).

examples:
  hookstream lag
      the workers' group (HOOKSTREAM_TOPIC_PREFIX + HOOKSTREAM_WORKER_ID)
  hookstream lag --topic deliveries
      only hookstream.deliveries (prefix added)
  hookstream lag --group other-app --json
      another group, as JSON (group, state, members, partitions, topics, lag)

A lag that stays high while no worker is listed as a member means the workers
are down; one that grows with members listed means they are too slow (add
workers up to the partition count) or stuck (see their logs).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lag",
        help="committed offset, true end offset and lag per group/topic/partition",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--group", help="consumer group (default: the workers' group)")
    p.add_argument("--topic", action="append", metavar="T", help="topic (repeatable; default: see below)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_lag)


def cmd_lag(args: argparse.Namespace) -> int:
    settings = load_settings()
    tansu_quirks.install(settings)
    return run(_lag(settings, args.group or worker_group(settings), args))


async def _lag(settings: Settings, group: str, args: argparse.Namespace) -> int:
    from app.offsets import Cluster, OffsetsError

    try:
        async with Cluster(settings) as cluster:
            existing = await cluster.topics()
            if args.topic:
                chosen = {resolve_topic(t, existing, settings) for t in args.topic}
            else:
                chosen = {tp.topic for tp in await cluster.committed(group)}
                if group == worker_group(settings):
                    chosen |= {settings.topic(t) for t in CONSUMED_TOPICS if settings.topic(t) in existing}
            topics = sorted(chosen)
            state = await cluster.describe_group(group)
            positions = await cluster.positions(group, topics) if topics else []
    except OffsetsError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(
            orjson.dumps(
                lag_core.as_json(group, state.state, len(state.members), positions), option=orjson.OPT_INDENT_2
            ).decode()
        )
        return 0
    print(f"group {group}: {state.state}, {len(state.members)} member(s)")
    if not positions:
        print(f"no committed offsets for group {group}: name topics with --topic")
        return 0
    print(format_table(lag_core.HEADER, lag_core.lag_rows(group, positions), lag_core.NUMERIC))
    return 0
