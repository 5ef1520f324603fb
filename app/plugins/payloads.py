"""Reading a provider's JSON body and naming ignore rules after what it says.

Invariant: a rule name is bounded (parts of letters, digits, `_` and `-`, at
most 64 characters each, joined by `.`) whatever the payload holds, because rules become metric
labels and an authentic sender is still not trusted to pick label values.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_RULE_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
MAX_RULE_PART = 64


def json_object(raw: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one (callers choose the error)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def rule_part(value: object) -> str:
    """A payload value made safe for a rule name; `unknown` when it is not a non-empty string."""
    if not isinstance(value, str) or not value:
        return "unknown"
    return _RULE_UNSAFE.sub("_", value)[:MAX_RULE_PART] or "unknown"
