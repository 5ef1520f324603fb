"""Compare the declared topology with what a cluster has. Pure: both sides are plain data."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)
    key: str = ""
    value: str = ""


# The topic config that carries the cluster's durability promise (acks=all waits for this many).
MIN_INSYNC_REPLICAS = "min.insync.replicas"


def with_replication(specs: list[TopicSpec], replication_factor: int, min_insync_replicas: int) -> list[TopicSpec]:
    """The declared topics as this cluster holds them: `replication_factor` replicas each and
    `min.insync.replicas` set, whatever else the declaration says.

    Replication is a property of the cluster (one embedded or single-node broker: 1 and 1;
    three brokers: 3 and 2), not of a topic, so topics/*.toml does not declare it.
    """
    if not 1 <= min_insync_replicas <= replication_factor:
        raise ValueError(
            f"min.insync.replicas must be between 1 and the replication factor ({replication_factor}), "
            f"not {min_insync_replicas}"
        )
    return [
        replace(
            spec,
            replication_factor=replication_factor,
            config={**spec.config, MIN_INSYNC_REPLICAS: str(min_insync_replicas)},
        )
        for spec in specs
    ]


@dataclass(frozen=True)
class TopicState:
    """What the cluster reports for one topic; `config` holds only the keys we asked about."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Difference:
    topic: str
    what: str
    declared: str
    actual: str
    # A difference `topics apply` cannot fix (partitions shrink, replication, configs:
    # changing a live topic is an operator's decision, not a side effect of apply).
    fixable: bool = False

    def __str__(self) -> str:
        return f"{self.topic}: {self.what} declared {self.declared}, cluster has {self.actual}"


@dataclass(frozen=True)
class Plan:
    missing: tuple[TopicSpec, ...]
    differences: tuple[Difference, ...]

    @property
    def in_sync(self) -> bool:
        return not self.missing and not self.differences


def diff(declared: list[TopicSpec], actual: dict[str, TopicState]) -> Plan:
    """Which declared topics are missing, and how the existing ones differ from their declaration."""
    missing: list[TopicSpec] = []
    differences: list[Difference] = []
    for spec in declared:
        state = actual.get(spec.name)
        if state is None:
            missing.append(spec)
            continue
        if state.partitions != spec.partitions:
            differences.append(Difference(spec.name, "partitions", str(spec.partitions), str(state.partitions)))
        if state.replication_factor != spec.replication_factor:
            differences.append(
                Difference(spec.name, "replication factor", str(spec.replication_factor), str(state.replication_factor))
            )
        for key, value in sorted(spec.config.items()):
            have = state.config.get(key)
            if have is not None and have != value:
                differences.append(Difference(spec.name, f"config {key}", value, have))
    return Plan(tuple(missing), tuple(differences))
