"""JSON helpers shared by the translators (orjson, with stdlib fallback for values
orjson refuses, such as integers beyond 64 bits)."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> str:
    """Compact JSON text, non-ASCII kept as is (what upstreams send themselves)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    """Parse JSON; raises ``ValueError`` on malformed text."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)) from exc
    except TypeError:  # pragma: no cover - orjson refuses nothing json accepts from str
        return json.loads(text)


def is_complete_object(text: str) -> bool:
    """True when ``text`` is one whole JSON object (cheap pre-check on the last char)."""
    stripped = text.rstrip()
    if not stripped.endswith("}"):
        return False
    try:
        return isinstance(loads(stripped), dict)
    except ValueError:
        return False
