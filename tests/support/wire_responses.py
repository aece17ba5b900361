"""OpenAI Responses API rendering of a Script (``POST .../responses``: bodies, SSE events),
written from the API reference independently of the gateway's translators.

Reasoning becomes a ``reasoning`` item (summary text), text one ``message`` item, each tool
call a ``function_call`` item; usage goes in ``response.completed`` (``input_tokens`` includes
the cached part, like OpenAI)."""

from __future__ import annotations

from typing import Any

import orjson

from .script import ResolvedUsage, Script, hash_str


def usage_object(usage: ResolvedUsage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.prompt_tokens + usage.output_tokens,
    }


def _items(script: Script, rid: str, default_text: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    reasoning = script.full_reasoning()
    if reasoning is not None:
        items.append({"id": "rs_" + rid, "type": "reasoning", "summary": [{"type": "summary_text", "text": reasoning}],
                      "encrypted_content": script.thinking_signature()})
    text = script.full_text(default_text)
    if text or not script.tool_calls:
        items.append({"id": "msg_" + rid, "type": "message", "status": "completed", "role": "assistant",
                      "content": [{"type": "output_text", "text": text, "annotations": []}]})
    for i, tc in enumerate(script.tool_calls):
        items.append({"id": f"fc_{rid}_{i}", "type": "function_call", "status": "completed",
                      "call_id": tc.id or f"call_{hash_str(f'{rid}/{i}'):016x}", "name": tc.name,
                      "arguments": tc.arguments_json})
    return items


def _response(rid: str, model: str, status: str, output: list[dict[str, Any]], usage: Any) -> dict[str, Any]:
    return {"id": "resp_" + rid, "object": "response", "created_at": 1_700_000_000, "status": status,
            "model": model, "output": output, "usage": usage, "error": None, "incomplete_details": None,
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}


def response(script: Script, *, rid: str, model: str, usage: ResolvedUsage, default_text: str) -> dict[str, Any]:
    return _response(rid, model, "completed", _items(script, rid, default_text),
                     None if script.omit_usage else (
                         script.usage if isinstance(script.usage, dict) else usage_object(usage)))


def sse(obj: dict[str, Any]) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def stream_frames(script: Script, *, rid: str, model: str, usage: ResolvedUsage, default_text: str) -> list[bytes]:
    seq = iter(range(1_000_000))
    events: list[dict[str, Any]] = []

    def ev(kind: str, **fields: Any) -> None:
        events.append({"type": kind, "sequence_number": next(seq), **fields})

    ev("response.created", response=_response(rid, model, "in_progress", [], None))
    ev("response.in_progress", response=_response(rid, model, "in_progress", [], None))
    items = _items(script, rid, default_text)
    for index, item in enumerate(items):
        if item["type"] == "message":
            ev("response.output_item.added", output_index=index, item={**item, "status": "in_progress", "content": []})
            ev("response.content_part.added", item_id=item["id"], output_index=index, content_index=0,
               part={"type": "output_text", "text": "", "annotations": []})
            for piece in script.text_chunks(default_text):
                ev("response.output_text.delta", item_id=item["id"], output_index=index, content_index=0, delta=piece)
            text = item["content"][0]["text"]
            ev("response.output_text.done", item_id=item["id"], output_index=index, content_index=0, text=text)
            ev("response.content_part.done", item_id=item["id"], output_index=index, content_index=0,
               part=item["content"][0])
        elif item["type"] == "function_call":
            ev("response.output_item.added", output_index=index,
               item={**item, "status": "in_progress", "arguments": ""})
            for piece in script.tool_calls[index - (len(items) - len(script.tool_calls))].argument_fragments():
                ev("response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=piece)
            ev("response.function_call_arguments.done", item_id=item["id"], output_index=index,
               arguments=item["arguments"])
        else:
            ev("response.output_item.added", output_index=index, item={**item, "summary": []})
        ev("response.output_item.done", output_index=index, item=item)
    final = response(script, rid=rid, model=model, usage=usage, default_text=default_text)
    ev("response.completed", response=final)
    return [sse(e) for e in events]


def error_frame(script: Script) -> bytes:
    return sse({"type": "response.failed", "sequence_number": 0, "response": {
        **_response("failed", "unknown", "failed", [], None),
        "error": {"code": script.error_code or "server_error", "message": script.error_message or "The server had an error."}}})


def malformed_frame(rid: str) -> bytes:
    return b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"msg_' \
        + rid.encode() + b'","delta":"oo\n\n'


def malformed_body(rid: str) -> bytes:
    return b'{"id":"resp_' + rid.encode() + b'","object":"response","output":[{"type":"mess'


def unknown_frames() -> list[bytes]:
    return [b": keep-alive\n\n", sse({"type": "response.future_thing", "sequence_number": 0, "x": 1})]
