"""Random identifiers in the shapes each protocol uses."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def _token(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def new_message_id() -> str:
    """Anthropic message id, e.g. ``msg_01AbC...`` (24 random chars)."""
    return "msg_01" + _token(22)


def new_tool_use_id() -> str:
    """Anthropic tool_use id, e.g. ``toolu_01AbC...``."""
    return "toolu_01" + _token(22)


def new_completion_id() -> str:
    """OpenAI chat completion id, e.g. ``chatcmpl-AbC...``."""
    return "chatcmpl-" + _token(29)


def new_call_id() -> str:
    """OpenAI tool call id, e.g. ``call_AbC...``."""
    return "call_" + _token(24)
