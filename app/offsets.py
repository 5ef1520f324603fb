"""Kafka I/O for `hookstream replay` and `hookstream lag`.

A consumer group's members and committed offsets, each partition's earliest and
true end offset, the offset for a time, removing members, committing offsets
from outside the group, and reading a topic over a time range. Decisions
(where to move, what to print) are in `app.core.replay` and `app.core.lag`.

Against the embedded broker, `tansu_quirks.install(settings)` must run first
(the CLI entry points call it): the true end offset, "no record at or after
this time", listing a group's offsets and leaving a group all need it there.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.protocol.group import LeaveGroupRequest
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition

from app.core.replay import Position
from app.settings import Settings
from app.topology import admin_client

COMMIT_METADATA = "hookstream replay"


class OffsetsError(Exception):
    """A Kafka-side failure the operator can act on; the message says what and what to do."""


@dataclass(frozen=True)
class Member:
    member_id: str
    client_id: str
    host: str


@dataclass(frozen=True)
class GroupState:
    group: str
    state: str
    members: tuple[Member, ...]

    @property
    def active(self) -> bool:
        return bool(self.members)


class Cluster:
    """An admin client and a consumer that joins no group, started together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.admin: AIOKafkaAdminClient | None = None
        self.consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> Cluster:
        try:
            self.admin = admin_client(self.settings)
            await self.admin.start()
            self.consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka_bootstrap_servers,
                client_id="hookstream-offsets",
                enable_auto_commit=False,
                request_timeout_ms=15000,
            )
            await self.consumer.start()
        except (KafkaError, OSError) as exc:
            await self.__aexit__(None, None, None)
            raise OffsetsError(
                f"cannot reach the Kafka broker at {self.settings.kafka_bootstrap_servers}: {exc}"
            ) from None
        return self

    async def __aexit__(self, *exc_info) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.admin is not None:
            await self.admin.close()

    # -- topics ---------------------------------------------------------------------------

    async def topics(self) -> set[str]:
        assert self.admin is not None
        return set(await self.admin.list_topics())

    async def partitions(self, topic: str) -> list[int]:
        assert self.consumer is not None
        found = self.consumer.partitions_for_topic(topic)
        if not found:
            await self.consumer._client.force_metadata_update()  # a topic created after start
            found = self.consumer.partitions_for_topic(topic)
        if not found:
            raise OffsetsError(f"topic {topic} does not exist on the cluster")
        return sorted(found)

    async def bounds(self, tps: list[TopicPartition]) -> dict[TopicPartition, tuple[int, int]]:
        """(earliest, true end) per partition."""
        assert self.consumer is not None
        if not tps:
            return {}
        earliest = await self.consumer.beginning_offsets(tps)
        end = await self.consumer.end_offsets(tps)
        return {tp: (earliest[tp], max(end[tp], earliest[tp])) for tp in tps}

    async def offsets_at(self, tps: list[TopicPartition], when_ms: int) -> dict[TopicPartition, int | None]:
        """The first offset at or after `when_ms` per partition; None when the time is past the last record."""
        assert self.consumer is not None
        if not tps:
            return {}
        found = await self.consumer.offsets_for_times({tp: max(when_ms, 0) for tp in tps})
        return {tp: (found[tp].offset if found.get(tp) is not None else None) for tp in tps}

    # -- groups ---------------------------------------------------------------------------

    async def describe_group(self, group: str) -> GroupState:
        assert self.admin is not None
        responses = await self.admin.describe_consumer_groups([group])
        for response in responses:
            for g in response.to_object()["groups"]:
                if g["group"] != group:
                    continue
                members = tuple(
                    Member(m["member_id"], m.get("client_id") or "", m.get("client_host") or "") for m in g["members"]
                )
                return GroupState(group, g["state"] or "Unknown", members)
        return GroupState(group, "Dead", ())

    async def committed(self, group: str, tps: list[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """The group's committed offsets: for `tps`, or every partition it has one for (None)."""
        assert self.admin is not None
        if tps is not None and not tps:
            return {}
        found = await self.admin.list_consumer_group_offsets(group, partitions=tps)
        return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}

    async def remove_members(self, group: str, member_ids: list[str]) -> list[str]:
        """Make the coordinator drop these members (LeaveGroup on their behalf). Returns the errors."""
        assert self.admin is not None
        node = await self.admin.find_coordinator(group)
        errors = []
        for member_id in member_ids:
            # aiokafka's admin has no RemoveMembersFromConsumerGroup: send LeaveGroup through its client.
            response = await self.admin._client.send(node, LeaveGroupRequest(group, member_id))
            if response.error_code:
                errors.append(f"{member_id}: error {response.error_code}")
        return errors

    async def commit(self, group: str, offsets: dict[TopicPartition, int]) -> None:
        """Commit `offsets` for `group` from outside it: a consumer that is assigned the
        partitions and never joins. Brokers accept that only while the group has no members."""
        if not offsets:
            return
        committer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            client_id="hookstream-replay",
            group_id=group,
            enable_auto_commit=False,
            request_timeout_ms=15000,
        )
        await committer.start()
        try:
            committer.assign(list(offsets))
            await committer.commit({tp: OffsetAndMetadata(o, COMMIT_METADATA) for tp, o in offsets.items()})
        except CommitFailedError:
            raise OffsetsError(
                f"the broker refused the commit: group {group} has members again (a worker is running or "
                "rejoined). Stop every worker of the group and run the command again."
            ) from None
        except KafkaError as exc:
            raise OffsetsError(f"committing offsets for group {group} failed: {exc}") from None
        finally:
            await committer.stop()

    async def positions(
        self, group: str, topics: list[str], partitions: list[int] | None = None, at_ms: int | None = None
    ) -> list[Position]:
        """A `Position` per partition of `topics` (only `partitions` when given)."""
        tps: list[TopicPartition] = []
        for topic in topics:
            available = await self.partitions(topic)
            if partitions:
                missing = sorted(set(partitions) - set(available))
                if missing:
                    raise OffsetsError(
                        f"topic {topic} has no partition {', '.join(map(str, missing))} (it has 0..{max(available)})"
                    )
                available = [p for p in available if p in set(partitions)]
            tps.extend(TopicPartition(topic, p) for p in available)
        committed = await self.committed(group, tps)
        bounds = await self.bounds(tps)
        at_time = await self.offsets_at(tps, at_ms) if at_ms is not None else {}
        return [
            Position(tp.topic, tp.partition, committed.get(tp), bounds[tp][0], bounds[tp][1], at_time.get(tp))
            for tp in tps
        ]

    # -- reading a time range ---------------------------------------------------------------

    async def read_range(self, topic: str, start_ms: int, stop_ms: int) -> AsyncIterator[ConsumerRecord]:
        """The records of `topic` from the first at or after `start_ms` up to the first at or
        after `stop_ms`, and never past the end as it was when called (so records written
        meanwhile, e.g. a replay's own, are not read). Partition by partition order is kept."""
        tps = [TopicPartition(topic, p) for p in await self.partitions(topic)]
        starts = await self.offsets_at(tps, start_ms)
        stops = await self.offsets_at(tps, stop_ms)
        ends = {tp: end for tp, (_, end) in (await self.bounds(tps)).items()}
        todo = {}
        for tp in tps:
            stop = ends[tp] if stops[tp] is None else min(stops[tp], ends[tp])
            if starts[tp] is not None and starts[tp] < stop:
                todo[tp] = (starts[tp], stop)
        if not todo:
            return
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            client_id="hookstream-replay-reader",
            enable_auto_commit=False,
            fetch_max_wait_ms=100,  # not 0: tansu never answers a 0 ms fetch (docs/local-broker.md, row 7)
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await reader.start()
        try:
            reader.assign(list(todo))
            for tp, (start, _) in todo.items():
                reader.seek(tp, start)
            idle_since = time.monotonic()
            while todo:
                batch = await reader.getmany(*todo, timeout_ms=500, max_records=2000)
                for tp, records in batch.items():
                    stop = todo[tp][1] if tp in todo else -1
                    for record in records:
                        if record.offset >= stop:
                            break
                        yield record
                for tp in list(todo):
                    if await reader.position(tp) >= todo[tp][1]:
                        del todo[tp]
                        reader.pause(tp)
                if batch:
                    idle_since = time.monotonic()
                elif todo and time.monotonic() - idle_since > 60:
                    where = ", ".join(
                        f"[{tp.partition}] at {await reader.position(tp)} of {stop}" for tp, (_, stop) in todo.items()
                    )
                    raise OffsetsError(f"reading {topic} stalled: no records for 60 s ({where})")
        finally:
            await reader.stop()
