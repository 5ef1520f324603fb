"""Reading a plugin instance's `options` table: typed, with defaults, failing as `ConfigError`.

Invariant: every error names the instance and the option (`generic-hmac/acme
options.algorithm: ...`) and never holds a secret. Unknown option keys are not
an error: other parts of hookstream (source adapters) may read their own keys
from the same table.
"""

from __future__ import annotations

from typing import Any

from app.instances import ConfigError, InstanceConfig, parse_duration


def where(instance: InstanceConfig, key: str) -> str:
    return f"instance {instance.plugin}/{instance.id} options.{key}"


def duration_option(instance: InstanceConfig, key: str, default: float) -> float:
    """Seconds, written as a number or a duration string ("90s", "5m")."""
    raw: Any = instance.options.get(key, default)
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise ConfigError(f"{where(instance, key)}: {exc}") from None


def text_option(instance: InstanceConfig, key: str, default: str | None, allow_empty: bool = False) -> str | None:
    """A string option; not a string (or empty, unless `allow_empty`) is an error."""
    if key not in instance.options:
        return default
    raw: Any = instance.options[key]
    if not isinstance(raw, str) or (not raw and not allow_empty):
        raise ConfigError(f"{where(instance, key)}: must be a {'' if allow_empty else 'non-empty '}string")
    return raw


def choice_option(instance: InstanceConfig, key: str, default: str, allowed: tuple[str, ...]) -> str:
    raw: object = instance.options.get(key, default)
    if not isinstance(raw, str) or raw not in allowed:
        raise ConfigError(f"{where(instance, key)}: {raw!r} is not one of {', '.join(allowed)}")
    return raw


def text_list_option(instance: InstanceConfig, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw: Any = instance.options.get(key, default)
    if not isinstance(raw, (list, tuple)) or not raw or not all(isinstance(v, str) and v for v in raw):
        raise ConfigError(f"{where(instance, key)}: must be a non-empty list of non-empty strings")
    return tuple(raw)
