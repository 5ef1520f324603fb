"""The topics declared in `topics/*.toml`, and creating/checking them on a cluster.

`hookstream topics apply` creates what is missing and reports what differs;
`hookstream topics diff` only reports. The ingress and workers call
`require_topics` and refuse to start when a topic they need is missing.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from app.core.topology import MIN_INSYNC_REPLICAS, Plan, TopicSpec, TopicState, diff, with_replication
from app.instances import ConfigError
from app.settings import Settings

_REQUIRED_KEYS = {"name", "key", "value", "partitions"}
_ALLOWED_KEYS = _REQUIRED_KEYS | {"config"}
_CLUSTER_KEYS = {
    "replication_factor": "HOOKSTREAM_TOPIC_REPLICATION_FACTOR",
    MIN_INSYNC_REPLICAS: "HOOKSTREAM_TOPIC_MIN_INSYNC_REPLICAS",
}


class MissingTopics(RuntimeError):
    def __init__(self, names: list[str]) -> None:
        super().__init__(
            f"topic(s) missing on the cluster: {', '.join(names)}. Create them first with: hookstream topics apply"
        )
        self.names = names


def load_specs(topics_dir: Path, prefix: str = "") -> list[TopicSpec]:
    """Read every `*.toml` in `topics_dir`; names get `prefix` prepended.

    Replication is left at 1 here: `declared(settings)` gives the specs with the cluster's.
    """
    files = sorted(Path(topics_dir).glob("*.toml"))
    if not files:
        raise ConfigError(f"{topics_dir}: no topic declarations (*.toml) found")
    specs: list[TopicSpec] = []
    for path in files:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        missing = _REQUIRED_KEYS - set(data)
        if missing:
            raise ConfigError(f"{path}: missing key(s) {sorted(missing)}")
        config = data.get("config", {})
        if not isinstance(config, dict):
            raise ConfigError(f"{path}: [config] must be a table")
        cluster_keys = sorted(_CLUSTER_KEYS.keys() & (set(data) | set(config)))
        if cluster_keys:
            key = cluster_keys[0]
            raise ConfigError(f"{path}: {key} is set for the whole cluster, not per topic: use {_CLUSTER_KEYS[key]}")
        unknown = set(data) - _ALLOWED_KEYS
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}")
        if not isinstance(data["partitions"], int) or data["partitions"] < 1:
            raise ConfigError(f"{path}: partitions must be a positive integer")
        specs.append(
            TopicSpec(
                name=prefix + data["name"],
                partitions=data["partitions"],
                replication_factor=1,
                config={str(k): str(v) for k, v in config.items()},
                key=data["key"],
                value=data["value"],
            )
        )
    return specs


def declared(settings: Settings) -> list[TopicSpec]:
    """The topics of topics/ as this cluster should hold them: prefixed, with the replication
    factor and min.insync.replicas of HOOKSTREAM_TOPIC_REPLICATION_FACTOR / _MIN_INSYNC_REPLICAS."""
    specs = load_specs(settings.topics_dir, settings.topic_prefix)
    try:
        return with_replication(specs, settings.topic_replication_factor, settings.topic_min_insync_replicas)
    except ValueError as exc:
        raise ConfigError(f"HOOKSTREAM_TOPIC_MIN_INSYNC_REPLICAS: {exc}") from None


def admin_client(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id="hookstream-admin",
        request_timeout_ms=15000,
    )


async def cluster_state(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, TopicState]:
    existing = set(await admin.list_topics())
    wanted = [n for n in names if n in existing]
    if not wanted:
        return {}
    described = await admin.describe_topics(wanted)
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in wanted]
    configs: dict[str, dict[str, str]] = {n: {} for n in wanted}
    for response in await admin.describe_configs(resources):
        for resource in response.resources:
            name = resource[3]
            for entry in resource[4]:
                configs.setdefault(name, {})[entry[0]] = entry[1]
    state: dict[str, TopicState] = {}
    for topic in described:
        partitions = topic["partitions"]
        rf = len(partitions[0]["replicas"]) if partitions else 0
        state[topic["topic"]] = TopicState(topic["topic"], len(partitions), rf, configs.get(topic["topic"], {}))
    return state


async def plan(settings: Settings, admin: AIOKafkaAdminClient) -> tuple[list[TopicSpec], Plan]:
    specs = declared(settings)
    state = await cluster_state(admin, [s.name for s in specs])
    return specs, diff(specs, state)


async def create(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> list[str]:
    """Create `specs`; a topic that appeared meanwhile (error 36) is fine. Returns the errors."""
    if not specs:
        return []
    response = await admin.create_topics(
        [NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.config)) for s in specs]
    )
    errors = []
    for name, code, message in response.topic_errors:
        if code not in (0, 36):  # 36 = TOPIC_ALREADY_EXISTS
            errors.append(f"{name}: error {code}: {message}")
    return errors


async def apply(settings: Settings) -> tuple[Plan, list[str]]:
    admin = admin_client(settings)
    await admin.start()
    try:
        _, before = await plan(settings, admin)
        errors = await create(admin, list(before.missing))
        return before, errors
    finally:
        await admin.close()


async def require_topics(settings: Settings, logical_names: list[str]) -> None:
    """Raise `MissingTopics` (naming the command to run) unless every named topic exists."""
    admin = admin_client(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    missing = [settings.topic(n) for n in logical_names if settings.topic(n) not in existing]
    if missing:
        raise MissingTopics(missing)
