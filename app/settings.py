"""Settings from `HOOKSTREAM_*` environment variables, and the plugin instances file.

Nothing is read at import: `Settings()` reads the environment when called, and
`load_instances(path)` reads the TOML file. A bad instances file raises
`ConfigError` naming the file, the key and what is wrong.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLUGINS = ("github", "standard-webhooks", "linear", "generic-hmac")
REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A configuration problem, with where it is and what to do."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> float:
    """`"24h"`, `"90s"`, `"7d"`, `300` (seconds) -> seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 24h, 7d)")
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return seconds


class SecretRef(BaseModel):
    """`{ env = "NAME" }` in the instances file: the secret is read from that variable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    env: str


class InstanceConfig(BaseModel):
    """One configured plugin instance: who may post to `/hooks/{plugin}/{id}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plugin: Literal["github", "standard-webhooks", "linear", "generic-hmac"]
    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    # Several secrets allow rotation: a signature matching any of them is accepted.
    secrets: tuple[SecretStr, ...] = Field(min_length=1)
    dedup_window_seconds: float = 24 * 3600
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("dedup_window_seconds", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        seconds = parse_duration(value)
        if not 1 <= seconds <= 90 * 86400:
            raise ValueError("dedup window must be between 1 second and 90 days")
        return seconds


class InstancesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instance: list[dict[str, Any]] = Field(default_factory=list)


def _resolve_secret(raw: Any, where: str, env: dict[str, str]) -> str:
    if isinstance(raw, dict):
        try:
            ref = SecretRef.model_validate(raw)
        except ValidationError:
            raise ConfigError(f"{where}: a secret reference is written {{ env = \"NAME\" }}") from None
        value = env.get(ref.env)
        if not value:
            raise ConfigError(f"{where}: environment variable {ref.env} is not set or empty")
        return value
    if isinstance(raw, str) and raw:
        return raw
    raise ConfigError(f"{where}: a secret is a non-empty string or {{ env = \"NAME\" }}")


def parse_instances(data: dict[str, Any], source: str, env: dict[str, str] | None = None) -> dict[tuple[str, str], InstanceConfig]:
    """Validate the parsed instances document. Keys are (plugin, instance id)."""
    env = dict(os.environ) if env is None else env
    unknown = set(data) - {"instance"}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {sorted(unknown)}; instances are [[instance]] tables")
    entries = data.get("instance", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: `instance` must be an array of tables ([[instance]])")
    result: dict[tuple[str, str], InstanceConfig] = {}
    for i, entry in enumerate(entries):
        where = f"{source}: instance[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a table")
        entry = dict(entry)
        if "id" in entry:
            where = f"{where} ({entry.get('plugin')}/{entry['id']})"
        if "secret" in entry and "secrets" in entry:
            raise ConfigError(f"{where}: give either `secret` or `secrets`, not both")
        raw_secrets = entry.pop("secrets", None)
        if raw_secrets is None and "secret" in entry:
            raw_secrets = [entry.pop("secret")]
        if raw_secrets is None:
            raise ConfigError(f"{where}.secrets: missing; each instance needs `secret` or `secrets`")
        if not isinstance(raw_secrets, list) or not raw_secrets:
            raise ConfigError(f"{where}.secrets: must be a non-empty list")
        entry["secrets"] = [_resolve_secret(s, f"{where}.secrets[{j}]", env) for j, s in enumerate(raw_secrets)]
        if "dedup_window" in entry:
            entry["dedup_window_seconds"] = entry.pop("dedup_window")
        try:
            inst = InstanceConfig.model_validate(entry)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or "<table>"
            raise ConfigError(f"{where}.{key}: {err['msg']}") from None
        if (inst.plugin, inst.id) in result:
            raise ConfigError(f"{where}: duplicate instance {inst.plugin}/{inst.id}")
        result[(inst.plugin, inst.id)] = inst
    return result


def load_instances(path: Path, env: dict[str, str] | None = None) -> dict[tuple[str, str], InstanceConfig]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the instances file: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_instances(data, str(path), env)


class Settings(BaseSettings):
    """Everything is configured by `HOOKSTREAM_*` environment variables (or a `.env` file)."""

    model_config = SettingsConfigDict(env_prefix="HOOKSTREAM_", env_file=None, extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # Prepended to every topic name (e.g. "staging." or a test's own prefix).
    topic_prefix: str = ""
    # Set to "tansu" only by `hookstream dev` and the test session: turns on the
    # workarounds in app/embedded/tansu_quirks.py. Never set it against Apache Kafka.
    embedded_broker: Literal["", "tansu"] = ""
    database_url: str = "postgresql://hookstream:hookstream@127.0.0.1:5432/hookstream"
    database_schema: str = Field(default="hookstream", pattern=r"^[a-z_][a-z0-9_]*$")
    topics_dir: Path = REPO_ROOT / "topics"
    instances_file: Path | None = None

    # Ingress
    ingress_host: str = "127.0.0.1"
    ingress_port: int = 8080
    ingress_processes: int = Field(default=1, ge=1, le=64)
    body_limit_bytes: int = Field(default=1024 * 1024, ge=1024)
    publish_timeout_seconds: float = Field(default=5.0, gt=0)
    retry_after_seconds: int = 5
    producer_linger_ms: int = 2
    producer_max_batch_bytes: int = 256 * 1024
    events_token: SecretStr | None = None

    # Worker
    worker_id: str = "hookstream"
    worker_data_dir: Path = Path(".hookstream/worker")
    worker_web_host: str = "127.0.0.1"
    worker_web_port: int = 6066
    broker_session_timeout_seconds: float = 10.0
    # How long the worker's consumer lets the broker hold a fetch with no new records (Faust
    # hard-codes 1500 ms). Kafka answers as soon as records arrive, so this only paces idle
    # polling there; the embedded tansu answers when the wait ends, so every hop of a sync
    # (control, plans, batches, control) would wait up to this long.
    consumer_fetch_max_wait_ms: int = Field(default=100, ge=1, le=10_000)
    dedup_purge_interval_seconds: float = Field(default=60.0, gt=0)
    # Faust's livelock detector reports a partition whose stream has records it has not
    # processed for this long (Faust's `stream_processing_timeout`, 5 minutes by default).
    stream_processing_timeout_seconds: float = Field(default=300.0, gt=0)
    batch_size: int = Field(default=50, ge=1, le=10_000)
    # File batches one worker processes at once (fetch, transform, write overlap across them).
    batch_concurrency: int = Field(default=4, ge=1, le=64)
    # Files larger than this are stored as metadata only (counted as skipped).
    max_text_bytes: int = Field(default=1024 * 1024, ge=1)
    # GitHub source adapter (secrets live here, never in a source's config on Kafka).
    github_api_url: str = "https://api.github.com"
    github_app_id: str | None = None
    github_private_key_file: Path | None = None
    github_token: SecretStr | None = None
    sync_deadline_seconds: float = 3600.0
    deadline_check_interval_seconds: float = Field(default=5.0, gt=0)
    idempotency_ttl_seconds: float = 300.0
    # The delivery ledger keeps a delivery's rows this long after its last copy (app/store/ledger.py).
    ledger_retention_days: float = Field(default=30.0, gt=0)
    ledger_prune_interval_seconds: float = Field(default=3600.0, gt=0)

    # Console (`hookstream console`): loopback by default; any other address needs the token.
    console_host: str = "127.0.0.1"
    console_port: int = Field(default=8090, ge=0, le=65535)
    console_token: SecretStr | None = None
    # Enables redriving dead letters from the console (every redrive must present it).
    console_write_token: SecretStr | None = None

    log_level: str = "info"
    # One line per record: `text` for terminals, `json` for log shippers (app/logs.py).
    log_format: Literal["text", "json"] = "text"

    def topic(self, logical: str) -> str:
        """The real name of a topic declared in topics/ as `logical`."""
        return f"{self.topic_prefix}{logical}"

    def to_env(self) -> dict[str, str]:
        """These settings as HOOKSTREAM_* variables, to hand to a child process."""
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"HOOKSTREAM_{name.upper()}"] = str(value)
        return env

    def instances(self) -> dict[tuple[str, str], InstanceConfig]:
        if self.instances_file is None:
            return {}
        return load_instances(self.instances_file)
