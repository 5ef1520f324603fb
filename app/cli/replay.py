"""`hookstream replay`: move a consumer group's offsets (dry run by default), and
`hookstream replay deliveries`: re-submit a time range of deliveries under a fresh replay epoch.

Decisions live in `app.core.replay` and `app.core.delivery_replay`; Kafka I/O in `app.offsets`.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import UTC, datetime, timedelta

from app import codec
from app.cli.common import CliError, load_settings, run
from app.cli.text import format_table, parse_time
from app.core import delivery_replay as dr
from app.core.replay import HEADER as MOVES_HEADER
from app.core.replay import NUMERIC as MOVES_NUMERIC
from app.core.replay import (
    Move,
    ShiftBy,
    Target,
    ToDatetime,
    ToEarliest,
    ToLatest,
    ToOffset,
    downstream,
    move_rows,
    plan,
    wrap,
)
from app.embedded import tansu_quirks
from app.events import Delivery, utcnow
from app.events.bounds import Identifier
from app.settings import Settings

DELIVERIES = "hookstream.deliveries"
EXIT_REFUSED = 3
# Deliveries are read from this long before/after the range by Kafka time and then
# selected by `received_at`: the ingress stamps it just before publishing, and hosts' clocks differ.
READ_SLACK = timedelta(minutes=5)

USAGE = """\
hookstream replay TARGET [--group G] [--topic T]... [--partition P]... [--dry-run | --execute [--force]]
       hookstream replay deliveries --from-datetime TIME [--to-datetime TIME] [--plugin P] [--instance I] [--execute]"""

DESCRIPTION = """\
Move a consumer group's committed offsets, like `kafka-consumer-groups --reset-offsets`:
the group's workers read from the new offsets when they start again.

A DRY RUN unless --execute is given: it prints, per partition, the committed
offset, the new one, and how many records the group would read again
(REPROCESS > 0) or skip for good (REPROCESS < 0), then what that does downstream.

STOP THE WORKERS FIRST. Kafka accepts offsets from outside a group only while the
group has no members, and a running worker would overwrite them with its next
commit: --execute refuses while the group has members, and lists them.
"""

EPILOG = """\
targets (choose one; every new offset is kept within [earliest, end] of its partition):
  --to-earliest        every record still on the topic
  --to-latest          skip everything not yet consumed
  --to-offset N        offset N in each selected partition
  --to-datetime TIME   the first record at or after TIME: ISO 8601 (UTC unless it has an
                       offset), or a duration back from now (30m, 2h, 7d); a partition
                       with nothing at or after TIME stays at its end
  --shift-by N         N records forward (N > 0) or back (N < 0) from the committed offset

scope:
  --group G            default: the workers' group (HOOKSTREAM_TOPIC_PREFIX + HOOKSTREAM_WORKER_ID)
  --topic T            repeatable; default: every topic the group has committed offsets for.
                       Short names work: deliveries = hookstream.deliveries (prefix added)
  --partition P        repeatable; default: all partitions

at 3 a.m.:
  1. where is the group?       hookstream lag
  2. what would a move do?     hookstream replay --to-datetime 2026-11-01T02:00Z --topic sync.control
  3. stop every worker:        docker compose stop worker   (or scale the deployment to 0,
                               or Ctrl-C `hookstream dev`; a clean stop leaves the group at once)
  4. apply:                    hookstream replay --to-datetime 2026-11-01T02:00Z --topic sync.control --execute
  5. start the workers:        docker compose start worker

examples:
  hookstream replay --to-earliest --topic sync.events --topic sync.completed
      read the sync lifecycle again from the start (the projection skips what it applied)
  hookstream replay --to-latest --topic files.batches --execute
      skip every batch not yet processed (their jobs end timed_out)
  hookstream replay --to-offset 1200 --topic deliveries --partition 3
      one partition to one offset
  hookstream replay --to-datetime 2026-11-01T02:00:00Z
      every topic of the group back to 02:00 UTC
  hookstream replay --to-datetime 90m --topic sync.control
      back 90 minutes
  hookstream replay --shift-by -500 --topic deliveries --execute
      500 records back in each partition of the deliveries topic

downstream: moving offsets rolls no state back. The dedup window drops
redeliveries (a delivery read again at its own offset is routed again), the
orchestrator ignores request ids it remembers and answers live idempotency keys,
projections skip offsets they applied, documents converge on the same rows.
To route deliveries again on purpose, use `hookstream replay deliveries`.

--force: for members that are dead but still listed (a worker killed with -9
stays a member until its session times out, HOOKSTREAM_BROKER_SESSION_TIMEOUT_SECONDS;
on the embedded broker until the next rebalance). It removes the listed members
from the group, then applies. A member that is in fact running rejoins at once and
may overwrite the new offsets: stop it first.

exit status: 0 done (or dry run), 1 error, 2 usage, 3 refused: the group has members.
"""

DELIVERIES_DESCRIPTION = """\
Re-submit the deliveries received in a time range to hookstream.deliveries (same
key, byte-exact body and headers) under a fresh replay epoch, which the dedup stage
lets through once: for routing them again on purpose, e.g. after fixing a routing
bug or an instance's configuration. Leave the workers running: they do the routing.

A DRY RUN unless --execute is given: it reads and checks the range, prints what it
would re-submit and what routing would do with each now, and publishes nothing.

Re-verification: signatures CANNOT be checked again. The ingress verified each
delivery when it arrived but stores no signature header (github keeps
x-github-event/-delivery/-hook-id, linear linear-delivery/-event, standard-webhooks
webhook-id/-timestamp, generic-hmac its id header). Checked instead, per delivery:
the record decodes, its key is the delivery's, its plugin exists, its instance is
still configured with valid options (otherwise it is not re-submitted: the worker
would dead-letter it). Reported: whether its id is the provider's id header or the
ingress's hash of the body (which re-checks the body), and what routing does now.
"""

DELIVERIES_EPILOG = """\
examples:
  hookstream replay deliveries --from-datetime 2026-11-01T02:00Z --to-datetime 2026-11-01T03:30Z
      dry run: what the 02:00-03:30 UTC deliveries would route to now
  hookstream replay deliveries --from-datetime 6h --plugin github --instance acme --execute
      re-submit the last six hours of the github/acme deliveries
  hookstream replay deliveries --from-datetime 6h --plugin github --execute --epoch replay-20261101T031500Z-1a2b3c4d
      finish an interrupted run: deliveries already let through in that epoch are dropped by dedup

Each run makes one epoch id and prints it; one delivery key is re-submitted once per run
(redeliveries and earlier replays of it in the range are skipped). The time is each
delivery's received_at (when the ingress accepted it); TIME is ISO 8601 (UTC unless it
has an offset) or a duration back from now (30m, 2h, 7d). Deliveries are kept 14 days.

downstream: the dedup stage routes each re-submitted delivery once in this epoch.
Syncs stay idempotent: request ids are delivery ids, so the orchestrator starts
nothing for a request it still remembers (24 h) and answers live idempotency keys
with the job holding them; documents are upserts. So a replay starts syncs only
where the first routing asked that source for none (dead-lettered, ignored, routed
to another source) or where the orchestrator has forgotten the request.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="move a consumer group's offsets (dry run by default); `replay deliveries` re-submits deliveries",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage=USAGE,
    )
    targets = p.add_mutually_exclusive_group()
    targets.add_argument("--to-earliest", action="store_true", help="the earliest offset still on the topic")
    targets.add_argument("--to-latest", action="store_true", help="the end: skip everything not yet consumed")
    targets.add_argument("--to-offset", type=int, metavar="N", help="offset N in each selected partition")
    targets.add_argument(
        "--to-datetime", metavar="TIME", help="first record at or after TIME (ISO 8601 or 30m/2h/7d ago)"
    )
    targets.add_argument(
        "--shift-by", type=int, metavar="N", help="N records forward (N>0) or back (N<0) from the committed offset"
    )
    p.add_argument("--group", help="consumer group (default: the workers' group)")
    p.add_argument(
        "--topic", action="append", metavar="T", help="topic (repeatable; default: the group's committed topics)"
    )
    p.add_argument("--partition", action="append", type=int, metavar="P", help="partition (repeatable; default: all)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the plan, change nothing (the default)")
    mode.add_argument("--execute", action="store_true", help="commit the new offsets (stop the workers first)")
    p.add_argument(
        "--force", action="store_true", help="with --execute: remove the group's listed members first (dead ones only!)"
    )
    p.set_defaults(func=cmd_replay)

    rsub = p.add_subparsers(dest="replay_command", metavar="deliveries", title="reprocessing deliveries on purpose")
    d = rsub.add_parser(
        "deliveries",
        prog="hookstream replay deliveries",
        help="re-submit a time range of deliveries under a fresh replay epoch (dry run by default)",
        description=DELIVERIES_DESCRIPTION,
        epilog=DELIVERIES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("--from-datetime", required=True, metavar="TIME", help="received at or after TIME")
    d.add_argument("--to-datetime", metavar="TIME", help="received before TIME (default: now)")
    d.add_argument("--plugin", help="only this plugin (github, linear, standard-webhooks, generic-hmac)")
    d.add_argument("--instance", help="only this instance id")
    dmode = d.add_mutually_exclusive_group()
    dmode.add_argument("--dry-run", action="store_true", help="read and check, publish nothing (the default)")
    dmode.add_argument("--execute", action="store_true", help="publish the re-submissions")
    d.add_argument("--epoch", help="reuse the epoch of an interrupted run instead of making a new one")
    d.add_argument(
        "--progress-every",
        type=int,
        default=1000,
        metavar="N",
        help="a progress line every N records read (default 1000)",
    )
    d.add_argument(
        "--show",
        type=int,
        default=20,
        metavar="N",
        help="list the first N deliveries and the first N skipped (default 20)",
    )
    d.set_defaults(func=cmd_replay_deliveries)


# -- shared ----------------------------------------------------------------------------------


def format_moves(moves: list[Move]) -> str:
    """The moves as a table: a row per partition, a total per topic of several."""
    return format_table(MOVES_HEADER, move_rows(moves), MOVES_NUMERIC)


def epoch_ms(when: datetime) -> int:
    """`when` as a Kafka timestamp, never before 1970 (a negative one means "latest" or "earliest" to Kafka)."""
    return max(0, int(when.timestamp() * 1000))


KAFKA_TIME_MIN = datetime(1970, 1, 1, tzinfo=UTC)
KAFKA_TIME_MAX = datetime.max.replace(tzinfo=UTC)


def read_range_ms(selection: dr.Selection) -> tuple[int, int]:
    """The Kafka times to read the deliveries of `selection` between: its range widened by
    READ_SLACK, kept within what a datetime and Kafka can hold (--from-datetime 0001-01-01 reads from
    the first record, --to-datetime 9999-12-31 to the end)."""
    start = max(selection.start, KAFKA_TIME_MIN + READ_SLACK) - READ_SLACK
    end = min(selection.end, KAFKA_TIME_MAX - READ_SLACK) + READ_SLACK
    return epoch_ms(start), epoch_ms(end)


def worker_group(settings: Settings) -> str:
    """The Faust app id of `hookstream worker`, which is its consumer group."""
    return f"{settings.topic_prefix}{settings.worker_id}"


def resolve_topic(name: str, existing: set[str], settings: Settings) -> str:
    """`name` as given, with the prefix, or with the prefix and `hookstream.` (deliveries -> hookstream.deliveries)."""
    for candidate in (name, settings.topic(name), settings.topic(f"hookstream.{name}")):
        if candidate in existing:
            return candidate
    ours = sorted(t for t in existing if t.startswith(settings.topic("hookstream.")))
    hint = f"; hookstream's topics: {', '.join(ours)}" if ours else ""
    raise CliError(f"no topic {name!r} on the cluster{hint}", 2)


def _members_text(state) -> list[str]:
    return [f"  member {m.member_id}  client {m.client_id or '-'}  host {m.host or '-'}" for m in state.members]


# -- replay (offsets) ------------------------------------------------------------------------


def target_from(args: argparse.Namespace, now: datetime) -> Target:
    if args.to_earliest:
        return ToEarliest()
    if args.to_latest:
        return ToLatest()
    if args.to_offset is not None:
        if args.to_offset < 0:
            raise CliError("--to-offset must be 0 or more", 2)
        return ToOffset(args.to_offset)
    if args.to_datetime is not None:
        return ToDatetime(parse_time(args.to_datetime, now, "--to-datetime"))
    if args.shift_by is not None:
        return ShiftBy(args.shift_by)
    raise CliError(
        "choose a target: --to-earliest, --to-latest, --to-offset N, --to-datetime TIME or --shift-by N "
        "(see hookstream replay --help)",
        2,
    )


def cmd_replay(args: argparse.Namespace) -> int:
    target = target_from(args, utcnow())
    if args.force and not args.execute:
        raise CliError("--force only applies with --execute", 2)
    settings = load_settings()
    tansu_quirks.install(settings)
    return run(_replay(settings, args.group or worker_group(settings), target, args))


async def _replay(settings: Settings, group: str, target: Target, args: argparse.Namespace) -> int:
    from app.offsets import Cluster, OffsetsError

    try:
        async with Cluster(settings) as cluster:
            return await _replay_with(cluster, settings, group, target, args)
    except OffsetsError as exc:
        raise CliError(str(exc)) from None


async def _replay_with(cluster, settings: Settings, group: str, target: Target, args: argparse.Namespace) -> int:
    if args.topic:
        existing = await cluster.topics()
        topics = sorted({resolve_topic(t, existing, settings) for t in args.topic})
    else:
        topics = sorted({tp.topic for tp in await cluster.committed(group)})
        if not topics:
            raise CliError(
                f"group {group} has no committed offsets: name the topics with --topic "
                "(e.g. --topic deliveries), or check the group with `hookstream lag --group`",
                2,
            )
    state = await cluster.describe_group(group)
    if args.execute and state.active and args.force:
        print(f"--force: removing {len(state.members)} listed member(s) from group {group}:")
        print("\n".join(_members_text(state)))
        errors = await cluster.remove_members(group, [m.member_id for m in state.members])
        if errors:
            raise CliError("the broker did not remove every member: " + "; ".join(errors))
        state = await cluster.describe_group(group)

    at_ms = epoch_ms(target.at) if isinstance(target, ToDatetime) else None
    moves = plan(await cluster.positions(group, topics, args.partition, at_ms), target)
    print(f"group {group}: {state.state}, {len(state.members)} member(s)")
    print(f"target: {target.describe()}")
    print(format_moves(moves))
    print()

    if not args.execute:
        print("DRY RUN: nothing was changed. Add --execute to apply (stop the workers first).")
        if state.active:
            print(f"The group has {len(state.members)} member(s) now; --execute will refuse until they are stopped:")
            print("\n".join(_members_text(state)))
    elif state.active:
        _refuse(group, state)
        return EXIT_REFUSED
    else:
        offsets = {_tp(m.topic, m.partition): m.new for m in moves}
        await cluster.commit(group, offsets)
        committed = await cluster.committed(group, list(offsets))
        wrong = {tp: committed.get(tp) for tp, o in offsets.items() if committed.get(tp) != o}
        if wrong:
            raise CliError(
                "the committed offsets read back differ: "
                + ", ".join(f"{tp.topic}[{tp.partition}] is {o}, expected {offsets[tp]}" for tp, o in wrong.items())
            )
        changed = sum(1 for m in moves if m.changes)
        print(
            f"APPLIED: committed {len(offsets)} offset(s) for group {group} ({changed} changed). "
            "The workers read from them when they start."
        )
        after = await cluster.describe_group(group)
        if after.active:
            print(
                "\n".join(
                    wrap(
                        f"WARNING: group {group} has member(s) again: they were running, and may commit "
                        "over the new offsets. Stop them and run this command again."
                    )
                )
            )
            print("\n".join(_members_text(after)))
    print()
    print("\n".join(downstream(moves, settings.topic_prefix)))
    return 0


def _tp(topic: str, partition: int):
    from aiokafka.structs import TopicPartition

    return TopicPartition(topic, partition)


def _refuse(group: str, state) -> None:
    lines = [
        f"hookstream: refusing to move offsets: group {group} has {len(state.members)} active member(s) ({state.state}):",
        *_members_text(state),
        "Kafka accepts offsets from outside a group only while it has no members, and a running worker",
        "would overwrite them with its next commit. Stop every worker of the group first:",
        "  docker compose stop worker    (or scale the worker deployment to 0, or Ctrl-C `hookstream dev`,",
        "                                 or kill -TERM the `hookstream worker` processes)",
        "then run this command again. A worker killed with -9 stays listed until its session times out",
        "(HOOKSTREAM_BROKER_SESSION_TIMEOUT_SECONDS; on the embedded broker, until the next rebalance):",
        "if you are sure the members listed are dead, add --force to remove them and apply.",
    ]
    print("\n".join(lines), file=sys.stderr)


# -- replay deliveries -----------------------------------------------------------------------


def cmd_replay_deliveries(args: argparse.Namespace) -> int:
    now = utcnow()
    start = parse_time(args.from_datetime, now, "--from-datetime")
    end = parse_time(args.to_datetime, now, "--to-datetime") if args.to_datetime else now
    if start >= end:
        raise CliError(f"--from-datetime ({start.isoformat()}) must be before --to-datetime ({end.isoformat()})", 2)
    if args.progress_every < 1 or args.show < 0:
        raise CliError("--progress-every must be at least 1 and --show at least 0", 2)
    if args.plugin is not None:
        from app.plugins import PLUGINS

        if args.plugin not in PLUGINS:
            raise CliError(f"--plugin {args.plugin!r}: known plugins are {', '.join(sorted(PLUGINS))}", 2)
    settings = load_settings()
    tansu_quirks.install(settings)
    instances = settings.instances()
    if not instances:
        raise CliError(
            "no plugin instances are configured (HOOKSTREAM_INSTANCES_FILE): each delivery is checked "
            "against the instances the workers use; point HOOKSTREAM_INSTANCES_FILE at their file",
            2,
        )
    epoch = args.epoch or dr.new_epoch(now, uuid.uuid4().hex[:8])
    try:
        codec.validate(Identifier, epoch)  # it becomes each re-submitted delivery's replay_epoch
    except codec.DecodeError as exc:
        raise CliError(f"--epoch {epoch!r}: {exc.errors[0]['msg'] if exc.errors else exc}", 2) from None
    selection = dr.Selection(start, end, args.plugin, args.instance)
    return run(_replay_deliveries(settings, selection, instances, epoch, now, args))


async def _replay_deliveries(settings, selection: dr.Selection, instances, epoch: str, now: datetime, args) -> int:
    from app.offsets import Cluster, OffsetsError

    try:
        async with Cluster(settings) as cluster:
            return await _replay_deliveries_with(cluster, settings, selection, instances, epoch, now, args)
    except OffsetsError as exc:
        raise CliError(str(exc)) from None


async def _replay_deliveries_with(cluster, settings, selection: dr.Selection, instances, epoch, now, args) -> int:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from app import codec

    topic = settings.topic(DELIVERIES)
    if topic not in await cluster.topics():
        raise CliError(f"no topic {topic} on the cluster (run `hookstream topics apply`)", 2)
    filters = ", ".join(
        f
        for f in (
            f"plugin {selection.plugin}" if selection.plugin else "",
            f"instance {selection.instance}" if selection.instance else "",
        )
        if f
    )
    print(
        f"{'EXECUTE' if args.execute else 'DRY RUN'}: re-submit deliveries received from "
        f"{selection.start.isoformat()} to {selection.end.isoformat()}{' (' + filters + ')' if filters else ''}"
    )
    print(f"replay epoch: {epoch}{'' if args.execute else ' (not used: dry run)'}")

    producer = None
    if args.execute:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id="hookstream-replay",
            acks="all",
            enable_idempotence=False,
            linger_ms=5,
            max_batch_size=256 * 1024,
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise CliError(f"cannot reach the Kafka broker at {settings.kafka_bootstrap_servers}: {exc}") from None

    tally = dr.Tally()
    seen: set[str] = set()
    pending: list = []
    shown = skipped_shown = 0

    async def flush() -> None:
        for future in pending:
            await future
        tally.resubmitted += len(pending)
        pending.clear()

    try:
        async for record in cluster.read_range(topic, *read_range_ms(selection)):
            tally.read += 1
            if tally.read % args.progress_every == 0:
                print(
                    f"... {tally.read} records read, {tally.selected} selected, "
                    f"{tally.resubmitted + len(pending)} re-submitted (at [{record.partition}]@{record.offset})",
                    file=sys.stderr,
                    flush=True,
                )
            try:
                delivery = codec.decode(Delivery, record.value)
            except codec.DecodeError:
                tally.undecodable += 1
                continue
            if not selection.in_range(delivery):
                tally.outside_range += 1
                continue
            if not selection.matches(delivery):
                tally.other_plugin_or_instance += 1
                continue
            if delivery.key in seen:
                tally.repeated_key += 1
                continue
            seen.add(delivery.key)
            verdict = dr.check(codec.decode_key(record.key), delivery, instances)
            tally.count(verdict)
            where = f"[{record.partition}]@{record.offset}"
            if not verdict.resubmit:
                if skipped_shown < args.show:
                    print(f"skip      {delivery.key}  {where}  {verdict.reason}")
                    skipped_shown += 1
                continue
            if shown < args.show:
                print(
                    f"{'resubmit' if args.execute else 'would   '}  {delivery.key}  {where}  received "
                    f"{delivery.received_at.isoformat()}  {verdict.routing}"
                )
                shown += 1
            if producer is not None:
                again = dr.resubmission(delivery, epoch, now)
                pending.append(await producer.send(topic, key=codec.encode_key(again.key), value=codec.encode(again)))
                if len(pending) >= 1000:
                    await flush()
        if pending:
            await flush()
    except KafkaError as exc:
        raise CliError(
            f"publishing failed after {tally.resubmitted} re-submission(s): {exc}. Run the same command "
            f"again with --epoch {epoch}: deliveries already let through in this epoch are dropped."
        ) from None
    finally:
        if producer is not None:
            await producer.stop()

    print()
    print("\n".join(tally.lines(args.execute)))
    print()
    for note in (dr.VERIFICATION_NOTE, dr.DOWNSTREAM_NOTE):
        print("\n".join(wrap(note)))
    group = await cluster.describe_group(worker_group(settings))
    if not group.active:
        print(
            "\n".join(
                wrap(
                    f"NOTE: no worker is running in group {group.group}: re-submitted deliveries wait "
                    f"in {topic} until one starts."
                )
            )
        )
    if not args.execute:
        print("DRY RUN: nothing was published. Add --execute to re-submit (a new epoch is made per run).")
    else:
        print(f"DONE: {tally.resubmitted} delivery(ies) re-submitted in epoch {epoch}.")
    return 0
