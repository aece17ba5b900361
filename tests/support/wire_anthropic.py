"""Anthropic Messages rendering of a Script (bodies, SSE frames, errors)."""

from __future__ import annotations

from typing import Any, Optional

import orjson

from .script import ResolvedUsage, Script, hash_str

_ERROR_DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    409: ("conflict_error", "Conflict."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    502: ("api_error", "Bad gateway"),
    503: ("api_error", "Service unavailable"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}


def error_body(status: int, script: Optional[Script] = None, request_id: Optional[str] = None) -> dict:
    etype, message = _ERROR_DEFAULTS.get(status, ("api_error" if status >= 500 else "invalid_request_error", f"Error {status}"))
    if script is not None:
        etype = script.error_type or etype
        message = script.error_message or message
    body: dict[str, Any] = {"type": "error", "error": {"type": etype, "message": message}}
    if request_id:
        body["request_id"] = request_id
    return body


def usage_object(usage: ResolvedUsage) -> dict:
    return {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": usage.cache_write_tokens, "ephemeral_1h_input_tokens": 0},
        "output_tokens": usage.output_tokens,
        "service_tier": "standard",
    }


def tool_use_ids(script: Script, mid: str) -> list[str]:
    return [tc.id or f"toolu_{hash_str(f'{mid}/{i}'):016x}" for i, tc in enumerate(script.tool_calls)]


def content_blocks(script: Script, mid: str, default_text: str) -> list[dict]:
    blocks: list[dict] = []
    reasoning = script.full_reasoning()
    if reasoning is not None:
        blocks.append({"type": "thinking", "thinking": reasoning, "signature": script.thinking_signature()})
    text = script.full_text(default_text)
    if text or not script.tool_calls:
        blocks.append({"type": "text", "text": text})
    for tid, tc in zip(tool_use_ids(script, mid), script.tool_calls, strict=False):
        blocks.append({"type": "tool_use", "id": tid, "name": tc.name, "input": tc.input_object()})
    return blocks


def message(script: Script, *, mid: str, model: str, usage: ResolvedUsage, default_text: str) -> dict:
    body: dict[str, Any] = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content_blocks(script, mid, default_text),
        "stop_reason": script.anthropic_stop_reason(),
        "stop_sequence": script.stop_sequence,
    }
    if not script.omit_usage:
        body["usage"] = script.usage if isinstance(script.usage, dict) else usage_object(usage)
    return body


def event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def stream_frames(script: Script, *, mid: str, model: str, usage: ResolvedUsage, default_text: str) -> list[bytes]:
    start_message: dict[str, Any] = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if not script.omit_usage:
        if isinstance(script.usage, dict):
            start_message["usage"] = script.usage
        else:
            start_usage = usage_object(usage)
            start_usage["output_tokens"] = 1
            start_message["usage"] = start_usage
    frames = [event("message_start", {"type": "message_start", "message": start_message})]

    index = 0
    pinged = False

    def open_block(block: dict) -> None:
        nonlocal pinged
        frames.append(event("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}))
        if script.ping and not pinged:
            pinged = True
            frames.append(event("ping", {"type": "ping"}))

    def delta(d: dict) -> None:
        frames.append(event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}))

    def close_block() -> None:
        nonlocal index
        frames.append(event("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1

    if script.reasoning is not None:
        open_block({"type": "thinking", "thinking": "", "signature": ""})
        for piece in script.reasoning_chunks():
            delta({"type": "thinking_delta", "thinking": piece})
        delta({"type": "signature_delta", "signature": script.thinking_signature()})
        close_block()

    text_chunks = script.text_chunks(default_text)
    if text_chunks or not script.tool_calls:
        open_block({"type": "text", "text": ""})
        for piece in text_chunks:
            delta({"type": "text_delta", "text": piece})
        close_block()

    for tid, tc in zip(tool_use_ids(script, mid), script.tool_calls, strict=False):
        open_block({"type": "tool_use", "id": tid, "name": tc.name, "input": {}})
        delta({"type": "input_json_delta", "partial_json": ""})
        for frag in tc.argument_fragments():
            delta({"type": "input_json_delta", "partial_json": frag})
        close_block()

    final: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": script.anthropic_stop_reason(), "stop_sequence": script.stop_sequence},
    }
    if not script.omit_usage:
        final["usage"] = script.usage if isinstance(script.usage, dict) else {"output_tokens": usage.output_tokens}
    frames.append(event("message_delta", final))
    frames.append(event("message_stop", {"type": "message_stop"}))
    return frames


def unknown_frames() -> list[bytes]:
    return [event("future_thing", {"type": "future_thing", "payload": {"x": 1}})]


def error_frame(script: Script) -> bytes:
    body = error_body(529, script)
    if not script.error_type:
        body["error"]["type"] = "overloaded_error"
    return event("error", body)


def malformed_frame() -> bytes:
    return b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_del\n\n'


def malformed_body(mid: str) -> bytes:
    return b'{"id":"' + mid.encode() + b'","type":"message","role":"assistant","content":[{"type":"te'


def count_tokens(input_tokens: int) -> dict:
    return {"input_tokens": input_tokens}


def models_list(models: list[str]) -> dict:
    data = [
        {"id": m, "type": "model", "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in models
    ]
    return {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
