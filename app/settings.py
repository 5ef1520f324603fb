"""Settings from `HOOKSTREAM_*` environment variables.

Nothing is read at import: `Settings()` reads the environment when called. The plugin
instances file it names is read by `Settings.instances()` (`app.instances`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.instances import InstanceConfig, load_instances

REPO_ROOT = Path(__file__).resolve().parent.parent


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
    # Replicas of every topic `hookstream topics apply` creates, and how many of them must have a
    # write before the broker acknowledges it (the ingress and the worker produce with acks=all).
    # 1 and 1 for the embedded broker or one Kafka node; 3 and 2 for three brokers.
    topic_replication_factor: int = Field(default=1, ge=1)
    topic_min_insync_replicas: int = Field(default=1, ge=1)
    instances_file: Path | None = None

    # Ingress
    ingress_host: str = "127.0.0.1"
    # 0 binds any free port (tests, `hookstream ingress --port 0`).
    ingress_port: int = Field(default=8080, ge=0, le=65535)
    ingress_processes: int = Field(default=1, ge=1, le=64)
    body_limit_bytes: int = Field(default=1024 * 1024, ge=1024)
    publish_timeout_seconds: float = Field(default=5.0, gt=0)
    retry_after_seconds: int = 5
    producer_linger_ms: int = 2
    producer_max_batch_bytes: int = 256 * 1024
    events_token: SecretStr | None = None
    # A connection that has not sent a whole request head this long after it opened (or after
    # its first byte of a next request) is answered 408 and closed; so is a body that has not
    # fully arrived this long after its head. Slow clients cannot hold connections open.
    ingress_header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    ingress_body_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    # A kept-alive connection with no request under way is closed (silently) after this long.
    # Longer than the idle timeout of a proxy in front (60 s for most), or the proxy may reuse a
    # connection the ingress is closing; it also bounds a partial head sent behind a complete one.
    ingress_idle_timeout_seconds: float = Field(default=75.0, gt=0, le=3600)
    # Directories git sources must lie in (after resolving symlinks), separated by ":" like
    # PATH. Empty: any path (the development default; the ingress says so at start).
    git_roots: str = ""

    # Worker
    worker_id: str = "hookstream"
    worker_data_dir: Path = Path(".hookstream/worker")
    worker_web_host: str = "127.0.0.1"
    worker_web_port: int = Field(default=6066, ge=1, le=65535)
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
    # Linear source adapter: the GraphQL endpoint, and the API key (or OAuth token) of every
    # linear source that names no `token_env` of its own.
    linear_api_url: str = "https://api.linear.app/graphql"
    linear_api_key: SecretStr | None = None
    sync_deadline_seconds: float = 3600.0
    deadline_check_interval_seconds: float = Field(default=5.0, gt=0)
    idempotency_ttl_seconds: float = 300.0
    # Transient failures (a source API's 5xx, 429 or timeout, a git reader that died, PostgreSQL
    # gone while a plan or a batch is written) are retried this many times, waiting
    # base * 2**n seconds (at most max, half of it random) before each retry; only then does
    # the plan or batch fail, count, and go to the dead letters.
    retry_attempts: int = Field(default=6, ge=0, le=100)
    retry_base_seconds: float = Field(default=0.5, gt=0, le=3600)
    retry_max_seconds: float = Field(default=30.0, gt=0, le=3600)
    # How long a source API request may take before it counts as a (transient) timeout.
    source_http_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    # History older than this is pruned from PostgreSQL (`hookstream db prune` and the worker's
    # timer every prune interval): finished jobs, answered requests, retired dead letters and
    # the delivery ledger; never what an open job or a source's live fences need.
    retention_days: float = Field(default=30.0, gt=0)
    prune_interval_seconds: float = Field(default=3600.0, gt=0)
    # A source's orchestration state (a RocksDB value and a changelog record) never grows past this:
    # a request or an update that would pass it is refused (the broker refuses records over 1 MiB).
    max_source_state_bytes: int = Field(default=512 * 1024, ge=4096, le=900 * 1024)
    # The fold's clock is the broker's timestamp of each control record; a record dated more than this
    # after it is refused (a sender cannot move a source's clock into the future).
    max_clock_skew_seconds: float = Field(default=3600.0, gt=0)

    # Console (`hookstream console`): loopback by default; any other address needs the token.
    console_host: str = "127.0.0.1"
    console_port: int = Field(default=8090, ge=0, le=65535)
    console_token: SecretStr | None = None
    # Enables redriving dead letters from the console (every redrive must present it).
    console_write_token: SecretStr | None = None

    # HOOKSTREAM_LOG_LEVEL, any case; anything else is refused at start (no silent fallback to info).
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    # One line per record: `text` for terminals, `json` for log shippers (app/logs.py).
    log_format: Literal["text", "json"] = "text"

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("git_roots")
    @classmethod
    def _absolute_roots(cls, value: str) -> str:
        for root in value.split(os.pathsep):
            if root and not os.path.isabs(root):
                raise ValueError(
                    f"{root!r} is not an absolute path (roots are absolute directories separated by {os.pathsep!r})"
                )
        return value

    def git_root_paths(self) -> tuple[str, ...]:
        """HOOKSTREAM_GIT_ROOTS as a tuple of directories; empty when unrestricted."""
        return tuple(root for root in self.git_roots.split(os.pathsep) if root)

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
        """The instances file, parsed and every plugin's options validated (a bad routing rule or
        key fails here, at start, naming the file, the instance and the rule)."""
        if self.instances_file is None:
            return {}
        from app.plugins import validate_instances  # the plugins import this module

        instances = load_instances(self.instances_file)
        validate_instances(instances, str(self.instances_file))
        return instances
