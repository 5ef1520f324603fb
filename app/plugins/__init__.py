"""The provider plugins, by the name that appears in `/hooks/{plugin}/...` and in delivery keys."""

from __future__ import annotations

from collections.abc import Mapping

from app.instances import ConfigError, InstanceConfig
from app.plugins.base import (
    Ignored,
    Plugin,
    Routed,
    RoutingError,
    UnreadableDelivery,
    VerificationError,
    Verified,
    fallback_delivery_id,
)
from app.plugins.generic_hmac import plugin as generic_hmac
from app.plugins.github import plugin as github
from app.plugins.linear import plugin as linear
from app.plugins.standard_webhooks import plugin as standard_webhooks

PLUGINS: dict[str, Plugin] = {p.name: p for p in (github, standard_webhooks, linear, generic_hmac)}


class UnknownPlugin(LookupError):
    """No plugin has this name (the ingress answers 404)."""


def validate_instances(instances: Mapping[tuple[str, str], InstanceConfig], source: str) -> None:
    """Every instance's options (rules, schemes, keys) can work; else ConfigError naming `source`
    (the instances file), the instance and the option. Run at start by every process that loads
    instances, so a typo fails there and not on the first delivery."""
    for (plugin_name, _), instance in instances.items():
        try:
            get_plugin(plugin_name).validate_options(instance)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None


def get_plugin(name: str) -> Plugin:
    try:
        return PLUGINS[name]
    except KeyError:
        raise UnknownPlugin(f"unknown plugin {name!r}; known: {', '.join(sorted(PLUGINS))}") from None


__all__ = [
    "PLUGINS",
    "Ignored",
    "Plugin",
    "Routed",
    "RoutingError",
    "UnknownPlugin",
    "UnreadableDelivery",
    "Verified",
    "VerificationError",
    "fallback_delivery_id",
    "get_plugin",
    "validate_instances",
]
