"""Kafka I/O for `hookstream replay` and `hookstream lag`.

A consumer group's members and committed offsets, each partition's earliest and
true end offset, the offset for a time, removing members, committing offsets
from outside the group, and reading a topic over a time range. Partitions,
offsets and reading are `app.kafka_reader`'s; decisions (where to move, what to
print) are in `app.core.replay` and `app.core.lag`.

Against the embedded broker, `tansu_quirks.install(settings)` must run first
(the CLI entry points call it): the true end offset, "no record at or after
this time", listing a group's offsets and leaving a group all need it there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition

from app.core.replay import Position
from app.kafka_reader import Bounds, ReadError, TopicReader, leave_group
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
    """An admin client and a reader that joins no group, started together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.admin: AIOKafkaAdminClient | None = None
        self.reader: TopicReader | None = None

    async def __aenter__(self) -> Cluster:
        reader = TopicReader(self.settings, "hookstream-offsets")
        try:
            self.admin = admin_client(self.settings)
            await self.admin.start()
            await reader.start()  # a reader that cannot start has stopped
        except (KafkaError, OSError, ReadError) as exc:
            await self.__aexit__(None, None, None)
            if isinstance(exc, ReadError):
                raise OffsetsError(str(exc)) from None
            raise OffsetsError(
                f"cannot reach the Kafka broker at {self.settings.kafka_bootstrap_servers}: {exc}"
            ) from None
        self.reader = reader
        return self

    async def __aexit__(self, *exc_info) -> None:
        if self.reader is not None:
            await self.reader.stop()
        if self.admin is not None:
            await self.admin.close()

    # -- topics ---------------------------------------------------------------------------

    async def topics(self) -> set[str]:
        assert self.admin is not None
        return set(await self.admin.list_topics())

    async def partitions(self, topic: str) -> list[int]:
        assert self.reader is not None
        try:
            return await self.reader.partitions(topic)
        except ReadError as exc:
            raise OffsetsError(str(exc)) from None

    async def bounds(self, tps: list[TopicPartition]) -> dict[TopicPartition, Bounds]:
        """(earliest, true end) per partition."""
        assert self.reader is not None
        return await self.reader.bounds(tps)

    async def offsets_at(self, tps: list[TopicPartition], when_ms: int) -> dict[TopicPartition, int | None]:
        """The first offset at or after `when_ms` per partition; None when the time is past the last record."""
        assert self.reader is not None
        return await self.reader.offsets_at(tps, when_ms)

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
        errors = []
        for member_id in member_ids:
            error_code = await leave_group(self.admin, group, member_id)
            if error_code:
                errors.append(f"{member_id}: error {error_code}")
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
        todo: dict[TopicPartition, tuple[int, int]] = {}
        for tp in tps:
            start, at_stop = starts[tp], stops[tp]
            stop = ends[tp] if at_stop is None else min(at_stop, ends[tp])
            if start is not None and start < stop:
                todo[tp] = (start, stop)
        assert self.reader is not None
        try:
            async for batch in self.reader.read(todo):
                for records in batch.values():
                    for record in records:
                        yield record
        except ReadError as exc:
            raise OffsetsError(f"reading {topic}: {exc}") from None
