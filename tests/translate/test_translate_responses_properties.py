"""Property tests of the Responses stream translators: for any answer (reasoning, text, tool
calls of every kind) cut into any chunks, every event is a valid openai SDK event numbered in
order, the deltas add up to the items, and the streamed final response equals the non-stream
translation of the same answer."""

from __future__ import annotations

import os
from typing import Any

import openai.types.responses as rt
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from a2agent.translate.chat_stream_to_responses import ChatStreamToResponses
from a2agent.translate.messages_stream_to_responses import MessagesStreamToResponses
from a2agent.translate.responses_items import build_tool_map
from a2agent.translate.responses_to_chat import chat_response_to_responses
from a2agent.translate.responses_to_messages import messages_response_to_responses

EVENT = TypeAdapter(rt.ResponseStreamEvent)
EXAMPLES = int(os.environ.get("TRANSLATE_PROPERTY_EXAMPLES", "120"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOOLS = [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
         {"type": "custom", "name": "apply_patch"},
         {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "close", "parameters": {}}]}]
REQUEST = {"model": "m", "input": "x", "tools": TOOLS}

text = st.text(min_size=1, max_size=30)
call = st.one_of(
    st.builds(lambda a: ("exec_command", orjson.dumps({"cmd": a}).decode()), st.text(max_size=20)),
    st.builds(lambda a: ("apply_patch", orjson.dumps({"input": a}).decode()), st.text(max_size=40)),
    st.builds(lambda a: ("ns__close", orjson.dumps({"id": a}).decode()), st.text(max_size=8)),
)


@st.composite
def answers(draw: st.DrawFn) -> dict[str, Any]:
    return {"reasoning": draw(st.one_of(st.none(), text)), "text": draw(st.one_of(st.none(), text)),
            "calls": draw(st.lists(call, max_size=3)), "cuts": draw(st.integers(1, 5))}


def pieces(s: str, n: int) -> list[str]:
    size = max(1, -(-len(s) // n))
    return [s[i:i + size] for i in range(0, len(s), size)] or [""]


def check(events: list[dict[str, Any]], final_expected: dict[str, Any]) -> None:
    for i, ev in enumerate(events):
        EVENT.validate_python(ev)
        assert ev["sequence_number"] == i
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed"
    done = {e["output_index"]: e["item"] for e in events if e["type"] == "response.output_item.done"}
    assert [done[i] for i in sorted(done)] == final["output"]
    texts = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert texts == "".join(p["text"] for it in final["output"] if it["type"] == "message" for p in it["content"])

    def strip(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in it.items() if k != "id"} for it in items]

    assert strip(final["output"]) == strip(final_expected["output"])


@SETTINGS
@given(answers())
def test_chat_stream_equals_nonstream(a: dict[str, Any]) -> None:
    chunks: list[dict[str, Any]] = []
    for piece in pieces(a["reasoning"] or "", a["cuts"]) if a["reasoning"] else []:
        chunks.append({"choices": [{"index": 0, "delta": {"reasoning_content": piece}}]})
    for piece in pieces(a["text"] or "", a["cuts"]) if a["text"] else []:
        chunks.append({"choices": [{"index": 0, "delta": {"content": piece}}]})
    for i, (name, args) in enumerate(a["calls"]):
        chunks.append({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": i, "id": f"c{i}", "type": "function", "function": {"name": name, "arguments": ""}}]}}]})
        for piece in pieces(args, a["cuts"]):
            chunks.append({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": i, "function": {"arguments": piece}}]}}]})
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls" if a["calls"] else "stop"}]})
    sm = ChatStreamToResponses(REQUEST, model="m", tool_map=build_tool_map(TOOLS))
    events = [e for c in chunks for e in sm.feed(c)] + sm.finish()
    message: dict[str, Any] = {"role": "assistant", "content": a["text"]}
    if a["reasoning"]:
        message["reasoning_content"] = a["reasoning"]
    if a["calls"]:
        message["tool_calls"] = [{"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": args}}
                                 for i, (n, args) in enumerate(a["calls"])]
    expected = chat_response_to_responses({"choices": [{"message": message, "finish_reason": "stop"}]},
                                          request=REQUEST, model="m", tool_map=build_tool_map(TOOLS))
    check(events, expected)


@SETTINGS
@given(answers())
def test_messages_stream_equals_nonstream(a: dict[str, Any]) -> None:
    blocks: list[dict[str, Any]] = []
    if a["reasoning"]:
        blocks.append({"type": "thinking", "thinking": a["reasoning"], "signature": "SIG"})
    if a["text"]:
        blocks.append({"type": "text", "text": a["text"]})
    for i, (name, args) in enumerate(a["calls"]):
        blocks.append({"type": "tool_use", "id": f"t{i}", "name": name, "input": orjson.loads(args)})
    sm = MessagesStreamToResponses(REQUEST, model="m", tool_map=build_tool_map(TOOLS))
    events = sm.feed("message_start", {"message": {"usage": {"input_tokens": 3, "output_tokens": 1}}})
    for index, b in enumerate(blocks):
        if b["type"] == "thinking":
            events += sm.feed("content_block_start", {"index": index, "content_block": {"type": "thinking",
                                                                                      "thinking": ""}})
            for piece in pieces(b["thinking"], a["cuts"]):
                events += sm.feed("content_block_delta", {"index": index, "delta": {"type": "thinking_delta",
                                                                                    "thinking": piece}})
            events += sm.feed("content_block_delta", {"index": index, "delta": {"type": "signature_delta",
                                                                                "signature": "SIG"}})
        elif b["type"] == "text":
            events += sm.feed("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
            for piece in pieces(b["text"], a["cuts"]):
                events += sm.feed("content_block_delta", {"index": index, "delta": {"type": "text_delta",
                                                                                    "text": piece}})
        else:
            events += sm.feed("content_block_start", {"index": index, "content_block": {
                "type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}})
            for piece in pieces(orjson.dumps(b["input"]).decode(), a["cuts"]):
                events += sm.feed("content_block_delta", {"index": index, "delta": {"type": "input_json_delta",
                                                                                    "partial_json": piece}})
        events += sm.feed("content_block_stop", {"index": index})
    events += sm.feed("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}})
    events += sm.finish()
    expected = messages_response_to_responses({"content": blocks, "stop_reason": "end_turn"}, request=REQUEST,
                                              model="m", tool_map=build_tool_map(TOOLS))
    check(events, expected)
