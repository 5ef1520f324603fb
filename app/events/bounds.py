"""Bounds on every field a producer or a provider controls (documented in README, "Bounds").

Each bound is a pydantic constraint, so `POST /events`, `hookstream send event
--kafka`, the ingress's delivery records and the worker's decode all refuse the
same values, with a message that names the field and the bound.

Why these: ids travel as Kafka keys, PostgreSQL text (which refuses NUL), log
lines and terminal tables, so they are printable and short; a control
character (newline, NUL, an ANSI escape) or a bidi override in an id is never
legitimate. `config` dicts are folded into per-source state and copied onto
every plan and batch, so their encoded size is bounded and their numbers are
finite (pydantic-core's JSON parser reads `NaN`, `Infinity` and `1e400` as
floats that would be written back as `null`).

The character classes are Rust-regex (pydantic-core) patterns: `\\p{C}` is
every control, format, surrogate, private-use and unassigned code point;
`\\p{Z}` every space and line or paragraph separator.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Annotated, Any, TypeAlias

import orjson
from pydantic import AfterValidator, Field, StringConstraints, TypeAdapter, ValidationError

# -- lengths (characters) ---------------------------------------------------------------------
MAX_ID_LENGTH = 300  # source_id, request_id
MAX_DELIVERY_ID_LENGTH = 200  # the ingress's own rule for provider delivery ids
MAX_KEY_LENGTH = 600  # a delivery key: plugin/instance/deliveryId
MAX_REVISION_LENGTH = 255  # before / after / commit: a commit id or a ref name
MAX_NAME_LENGTH = 200  # display names
MAX_TEXT_LENGTH = 1000  # reasons
MAX_TRIGGER_LENGTH = 64
MAX_PATH_LENGTH = 1024  # one path (a hint, a config file path)
MAX_PATH_HINTS = 2048  # paths listed in one sync request (the fold keeps at most 1000 per job)
MAX_PATH_HINTS_BYTES = 128 * 1024  # their total UTF-8 size
MAX_CONFIG_BYTES = 16 * 1024  # a source's config, encoded as JSON
MAX_CONFIG_DEPTH = 16  # nesting of objects and arrays inside a config
MAX_KEPT_HEADERS = 32  # headers one delivery record keeps
MAX_HEADER_NAME_LENGTH = 100
MAX_HEADER_VALUE_LENGTH = 1024
MAX_PLUGIN_LENGTH = 64
MAX_INSTANCE_LENGTH = 128
MAX_ROUTE_LENGTH = 128
MAX_INT64 = 2**63 - 1  # what a PostgreSQL bigint column holds

# -- character classes ------------------------------------------------------------------------
# Printable, no whitespace at all: ids are copied into keys, commands and tables.
ID_PATTERN = r"^[^\p{C}\p{Z}]+$"
# Printable, spaces allowed, no line or paragraph separators: one line of text.
TEXT_PATTERN = r"^[^\p{C}\p{Zl}\p{Zp}]*$"
# A path: printable one-line text (git allows more, but hints and config paths are ours).
PATH_PATTERN = r"^[^\p{C}\p{Zl}\p{Zp}]+$"
TRIGGER_PATTERN = r"^[A-Za-z0-9_.:-]+$"
# URL segments: what `/hooks/{plugin}/{instance}[/{route}]` may hold.
PLUGIN_PATTERN = r"^[a-z0-9-]+$"
INSTANCE_PATTERN = r"^[A-Za-z0-9._-]+$"
ROUTE_PATTERN = r"^[A-Za-z0-9._~-]+$"
# HTTP header names are tokens (RFC 9110 §5.6.2); values are kept without control characters.
HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9a-z-]+$"
HEADER_VALUE_PATTERN = r"^[^\p{Cc}]*$"

# What each pattern means, for error messages (pydantic would print the regex).
PATTERN_MEANINGS: dict[str, str] = {
    ID_PATTERN: "printable characters without spaces (no control characters: no NUL, newline or escape)",
    TEXT_PATTERN: "one line of printable text (no control characters: no NUL, newline or escape)",
    PATH_PATTERN: "a path of printable characters on one line (no control characters: no NUL, newline or escape)",
    TRIGGER_PATTERN: "letters, digits and . _ : -",
    PLUGIN_PATTERN: "lower-case letters, digits and -",
    INSTANCE_PATTERN: "letters, digits and . _ -",
    ROUTE_PATTERN: "letters, digits and . _ ~ -",
    HEADER_NAME_PATTERN: "a lower-case HTTP header name",
    HEADER_VALUE_PATTERN: "an HTTP header value without control characters",
}


def _text(pattern: str, max_length: int, min_length: int = 1) -> StringConstraints:
    return StringConstraints(min_length=min_length, max_length=max_length, pattern=pattern)


# `Annotated[str, ...]` aliases, not types built by a function, so that mypy sees `str`.
Identifier: TypeAlias = Annotated[str, _text(ID_PATTERN, MAX_ID_LENGTH)]
DeliveryId: TypeAlias = Annotated[str, _text(ID_PATTERN, MAX_DELIVERY_ID_LENGTH)]
DeliveryKey: TypeAlias = Annotated[str, _text(ID_PATTERN, MAX_KEY_LENGTH)]
Revision: TypeAlias = Annotated[str, _text(ID_PATTERN, MAX_REVISION_LENGTH)]
Name: TypeAlias = Annotated[str, _text(TEXT_PATTERN, MAX_NAME_LENGTH)]
Text: TypeAlias = Annotated[str, _text(TEXT_PATTERN, MAX_TEXT_LENGTH)]
Trigger: TypeAlias = Annotated[str, _text(TRIGGER_PATTERN, MAX_TRIGGER_LENGTH)]
PathText: TypeAlias = Annotated[str, _text(PATH_PATTERN, MAX_PATH_LENGTH)]
# An empty config path is meaningful (SourceConfigChanged: the file is gone).
ConfigPath: TypeAlias = Annotated[str, _text(TEXT_PATTERN, MAX_PATH_LENGTH, min_length=0)]
PluginName: TypeAlias = Annotated[str, _text(PLUGIN_PATTERN, MAX_PLUGIN_LENGTH)]
InstanceName: TypeAlias = Annotated[str, _text(INSTANCE_PATTERN, MAX_INSTANCE_LENGTH)]
RouteName: TypeAlias = Annotated[str, _text(ROUTE_PATTERN, MAX_ROUTE_LENGTH)]
HeaderName: TypeAlias = Annotated[str, _text(HEADER_NAME_PATTERN, MAX_HEADER_NAME_LENGTH)]
HeaderValue: TypeAlias = Annotated[str, _text(HEADER_VALUE_PATTERN, MAX_HEADER_VALUE_LENGTH, min_length=0)]
Offset = Annotated[int, Field(ge=0, le=MAX_INT64)]


def _bounded_path_hints(paths: list[str]) -> list[str]:
    size = sum(len(p.encode("utf-8")) for p in paths)
    if size > MAX_PATH_HINTS_BYTES:
        raise ValueError(f"the paths add up to {size} bytes; at most {MAX_PATH_HINTS_BYTES} bytes in total")
    return paths


PathHints = Annotated[
    list[PathText],
    Field(max_length=MAX_PATH_HINTS),
    AfterValidator(_bounded_path_hints),
]


@lru_cache(maxsize=1)
def _path_hints_adapter() -> TypeAdapter[list[str]]:
    return TypeAdapter(PathHints)


def path_hints_fit(paths: list[str]) -> bool:
    """True when `paths` can be sent as one request's path hints. Callers that collect paths
    (a push's changed files) ask for a full listing instead when they do not fit."""
    try:
        _path_hints_adapter().validate_python(paths)
    except ValidationError:
        return False
    return True


def _check_json_value(value: Any) -> None:
    """Finite numbers, string keys, at most MAX_CONFIG_DEPTH levels; iterative, so depth cannot recurse."""
    stack: list[tuple[Any, int, str]] = [(value, 0, "")]
    while stack:
        item, depth, where = stack.pop()
        at = f" at `{where}`" if where else ""
        if isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError(f"a number{at} is not finite (NaN, Infinity and numbers beyond ±1.8e308 are refused)")
        elif isinstance(item, (dict, list)):
            if depth >= MAX_CONFIG_DEPTH:
                raise ValueError(f"the value{at} is nested deeper than {MAX_CONFIG_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise ValueError(f"an object{at} has a key that is not a string")
                    stack.append((child, depth + 1, f"{where}.{key}" if where else key))
            else:
                stack.extend((child, depth + 1, f"{where}[{i}]") for i, child in enumerate(item))


def _bounded_config(config: dict[str, Any]) -> dict[str, Any]:
    _check_json_value(config)
    try:
        size = len(orjson.dumps(config))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise ValueError(f"cannot be encoded as JSON: {exc}") from None
    if size > MAX_CONFIG_BYTES:
        raise ValueError(f"encodes to {size} bytes of JSON; at most {MAX_CONFIG_BYTES} bytes")
    return config


# A source's adapter configuration: a JSON object of finite values, at most 16 KiB encoded.
Config = Annotated[dict[str, Any], AfterValidator(_bounded_config)]


KeptHeaders = Annotated[
    dict[HeaderName, HeaderValue],
    Field(max_length=MAX_KEPT_HEADERS),
]
