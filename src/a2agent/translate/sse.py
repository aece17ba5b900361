"""Wire encoding of the events the stream translators produce (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

OPENAI_DONE = b"data: [DONE]\n\n"


def anthropic_sse(event: str, data: dict[str, Any]) -> bytes:
    """``event: <name>`` + ``data: <json>``: Anthropic clients dispatch on the name."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def anthropic_sse_many(events: Iterable[tuple[str, dict[str, Any]]]) -> bytes:
    return b"".join(anthropic_sse(name, data) for name, data in events)


def openai_sse(chunk: dict[str, Any]) -> bytes:
    """``data: <json>`` only; the stream ends with :data:`OPENAI_DONE`."""
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def openai_sse_many(chunks: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(openai_sse(chunk) for chunk in chunks)
