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


def as_obj(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (typed narrowing for callers)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` when it is a JSON array, else an empty one."""
    return value if isinstance(value, list) else []


def is_complete_object(text: str) -> bool:
    """True when ``text`` is one whole JSON object (cheap pre-check on the last char)."""
    stripped = text.rstrip()
    if not stripped.endswith("}"):
        return False
    try:
        return isinstance(loads(stripped), dict)
    except ValueError:
        return False


# Tool-call arguments ---------------------------------------------------------
#
# OpenAI carries tool arguments as JSON *text*, Anthropic as a JSON *object*.
# Text that is not a JSON object (truncated or malformed model output) is kept,
# not lost, as {"_raw_arguments": text}; the way back restores the same text.

RAW_ARGUMENTS_KEY = "_raw_arguments"


def input_from_arguments(arguments: Any) -> dict[str, Any]:
    """OpenAI ``function.arguments`` → Anthropic ``tool_use.input`` (always an object)."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = loads(arguments)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {RAW_ARGUMENTS_KEY: arguments}


def arguments_from_input(tool_input: Any) -> str:
    """Anthropic ``tool_use.input`` → OpenAI ``function.arguments`` text."""
    if isinstance(tool_input, dict) and set(tool_input) == {RAW_ARGUMENTS_KEY}:
        raw = tool_input[RAW_ARGUMENTS_KEY]
        if isinstance(raw, str):
            return raw
    return dumps(tool_input if tool_input is not None else {})
