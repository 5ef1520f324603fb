"""The plugin instances file: who may post to `/hooks/{plugin}/{instance}`, with which secrets and options.

Plain pydantic, no settings machinery and nothing read at import: `load_instances(path)`
reads the TOML file when called. A bad file raises `ConfigError` naming the file, the
key and what is wrong. Kept apart from `app.settings` so that the pure rooms (app/core,
app/plugins) can name an instance without loading pydantic-settings or the environment.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

PLUGINS = ("github", "standard-webhooks", "linear", "generic-hmac")


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
            raise ConfigError(f'{where}: a secret reference is written {{ env = "NAME" }}') from None
        value = env.get(ref.env)
        if not value:
            raise ConfigError(f"{where}: environment variable {ref.env} is not set or empty")
        return value
    if isinstance(raw, str) and raw:
        return raw
    raise ConfigError(f'{where}: a secret is a non-empty string or {{ env = "NAME" }}')


def parse_instances(
    data: dict[str, Any], source: str, env: dict[str, str] | None = None
) -> dict[tuple[str, str], InstanceConfig]:
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
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); TOML files are UTF-8"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_instances(data, str(path), env)
