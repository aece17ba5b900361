"""OpenAI Chat Completions rendering of a Script (bodies, SSE frames, errors)."""

from __future__ import annotations

from typing import Any, Optional

import orjson

from .script import ResolvedUsage, Script, hash_str

FINGERPRINT = "fp_scripted"

_ERROR_DEFAULTS: dict[int, tuple[str, Optional[str], str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", None, "You are not allowed to use this model."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    408: ("timeout", None, "Request timed out."),
    409: ("conflict", None, "Conflict."),
    413: ("invalid_request_error", "request_too_large", "Request too large."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    504: ("server_error", None, "Gateway timeout."),
}


def error_body(status: int, script: Optional[Script] = None) -> dict:
    etype, code, message = _ERROR_DEFAULTS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None, f"Error {status}."))
    if script is not None:
        etype = script.error_type or etype
        code = script.error_code if script.error_code is not None else code
        message = script.error_message or message
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


def usage_object(usage: ResolvedUsage) -> dict:
    prompt_details: dict[str, int] = {"cached_tokens": usage.cache_read_tokens, "audio_tokens": 0}
    if usage.cache_write_tokens:
        prompt_details["cache_write_tokens"] = usage.cache_write_tokens
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.prompt_tokens + usage.output_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {
            "reasoning_tokens": usage.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _usage_value(script: Script, usage: ResolvedUsage) -> Any:
    return script.usage if isinstance(script.usage, dict) else usage_object(usage)


def tool_call_ids(script: Script, rid: str) -> list[str]:
    return [tc.id or f"call_{hash_str(f'{rid}/{i}'):016x}" for i, tc in enumerate(script.tool_calls)]


def completion(
    script: Script, *, rid: str, created: int, model: str, usage: ResolvedUsage, default_text: str
) -> dict:
    text = script.full_text(default_text)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if (text or not script.tool_calls) else None,
        "refusal": None,
        "annotations": [],
    }
    reasoning = script.full_reasoning()
    if reasoning is not None:
        message[script.reasoning_field] = reasoning
    if script.tool_calls:
        message["tool_calls"] = [
            {"id": cid, "type": "function", "function": {"name": tc.name, "arguments": tc.arguments_json}}
            for cid, tc in zip(tool_call_ids(script, rid), script.tool_calls, strict=False)
        ]
    body: dict[str, Any] = {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": script.openai_finish_reason()}
        ],
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }
    if not script.omit_usage:
        body["usage"] = _usage_value(script, usage)
    return body


def sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def stream_frames(
    script: Script,
    *,
    rid: str,
    created: int,
    model: str,
    usage: ResolvedUsage,
    default_text: str,
    include_usage: bool,
) -> list[bytes]:
    """The complete, well-formed event list (faults are applied later)."""

    def chunk(delta: dict, finish: Optional[str] = None) -> bytes:
        obj: dict[str, Any] = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            obj["usage"] = None
        return sse(obj)

    text_chunks = script.text_chunks(default_text)
    frames = [chunk({"role": "assistant", "content": "" if text_chunks or not script.tool_calls else None, "refusal": None})]
    for piece in script.reasoning_chunks():
        frames.append(chunk({script.reasoning_field: piece}))
    for piece in text_chunks:
        frames.append(chunk({"content": piece}))

    if script.tool_calls:
        per_call: list[list[dict]] = []
        for index, (cid, tc) in enumerate(zip(tool_call_ids(script, rid), script.tool_calls, strict=False)):
            deltas = [
                {"index": index, "id": cid, "type": "function", "function": {"name": tc.name, "arguments": ""}}
            ]
            deltas += [{"index": index, "function": {"arguments": frag}} for frag in tc.argument_fragments()]
            per_call.append(deltas)
        if script.interleave_tool_args:
            ordered = []
            for round_ in range(max(len(d) for d in per_call)):
                ordered += [d[round_] for d in per_call if round_ < len(d)]
        else:
            ordered = [d for deltas in per_call for d in deltas]
        frames += [chunk({"tool_calls": [d]}) for d in ordered]

    frames.append(chunk({}, script.openai_finish_reason()))
    if include_usage and not script.omit_usage:
        frames.append(
            sse(
                {
                    "id": rid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "service_tier": "default",
                    "system_fingerprint": FINGERPRINT,
                    "choices": [],
                    "usage": _usage_value(script, usage),
                }
            )
        )
    frames.append(DONE)
    return frames


def unknown_frames(rid: str, created: int, model: str) -> list[bytes]:
    """What a client must tolerate: an SSE comment (OpenRouter keep-alive) and an
    Azure-style content-filter chunk with empty choices and unknown fields."""
    return [
        b": OPENROUTER PROCESSING\n\n",
        sse(
            {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
                "future_field": {"x": 1},
            }
        ),
    ]


def error_frame(script: Script) -> bytes:
    body = error_body(500, script)
    return sse(body)


def malformed_frame(rid: str) -> bytes:
    return b'data: {"id":"' + rid.encode() + b'","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"oops\n\n'


def malformed_body(rid: str) -> bytes:
    return b'{"id":"' + rid.encode() + b'","object":"chat.completion","choices":[{"index":0,"message":{"role":"assist'


def models_list(models: list[str], created: int) -> dict:
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": created, "owned_by": "scripted-upstream"} for m in models],
    }
