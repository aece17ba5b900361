"""Anthropic Message / stream events → OpenAI chat.completion / chunks."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion

from a2agent.translate.openai_to_anthropic import MessagesStreamToChat, messages_response_to_chat
from a2agent.translate.usage import Usage

MESSAGE_USAGE = {"input_tokens": 12, "cache_creation_input_tokens": 100,
                 "cache_read_input_tokens": 900, "output_tokens": 40}


def message(content: list[dict], stop_reason: str | None = "end_turn") -> dict[str, Any]:
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-up",
            "content": content, "stop_reason": stop_reason, "stop_sequence": None, "usage": MESSAGE_USAGE}


# ----------------------------------------------------------------------- non-stream


def test_text_message():
    out = messages_response_to_chat(message([{"type": "text", "text": "Hello"}]), model="gpt-x",
                                    completion_id="chatcmpl-1", created=5)
    assert out == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 5,
        "model": "gpt-x",
        "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Hello", "refusal": None}}],
        "usage": {"prompt_tokens": 1012, "completion_tokens": 40, "total_tokens": 1052,
                  "prompt_tokens_details": {"cached_tokens": 900, "cache_write_tokens": 100}},
    }
    ChatCompletion.model_validate(out)


def test_thinking_and_tool_use():
    content = [
        {"type": "thinking", "thinking": "Plan.", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
    ]
    out = messages_response_to_chat(message(content, "tool_use"), model="gpt-x")
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "reasoning_content": "Plan.",
        "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "toolu_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ],
    }
    assert "sig" not in str(out) and "opaque" not in str(out)
    ChatCompletion.model_validate(out)


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
     ("refusal", "content_filter"), ("model_context_window_exceeded", "length"), ("pause_turn", "stop"),
     (None, "stop")],
)
def test_finish_reason_mapping(stop_reason, finish):
    out = messages_response_to_chat(message([{"type": "text", "text": "x"}], stop_reason), model="m")
    assert out["choices"][0]["finish_reason"] == finish


# --------------------------------------------------------------------------- stream


def anthropic_events(*blocks: tuple[dict, list[dict]], stop_reason: str = "end_turn",
                     output_tokens: int = 15) -> list[tuple[str, dict]]:
    events: list[tuple[str, dict]] = [("message_start", {"type": "message_start", "message": {
        **message([], None), "usage": {"input_tokens": 25, "cache_creation_input_tokens": 0,
                                       "cache_read_input_tokens": 5, "output_tokens": 1}}})]
    for index, (block, deltas) in enumerate(blocks):
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}))
        events.append(("ping", {"type": "ping"}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                     "usage": {"output_tokens": output_tokens}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def run(events: list[tuple[str, dict]], include_usage: bool = True) -> tuple[MessagesStreamToChat, list[dict]]:
    translator = MessagesStreamToChat(model="gpt-x", include_usage=include_usage, completion_id="chatcmpl-s", created=9)
    chunks = [c for name, data in events for c in translator.feed(name, data)]
    return translator, chunks + translator.finish()


def deltas(chunks: list[dict]) -> list[dict]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


TEXT = ({"type": "text", "text": ""}, [{"type": "text_delta", "text": "Hel"}, {"type": "text_delta", "text": "lo"}])


def test_plain_text_stream_chunk_by_chunk(openai_sdk):
    translator, chunks = run(anthropic_events(TEXT))
    assert chunks == [
        {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 9, "model": "gpt-x", "usage": None,
         "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]},
        {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 9, "model": "gpt-x", "usage": None,
         "choices": [{"index": 0, "delta": {"content": "Hel"}, "logprobs": None, "finish_reason": None}]},
        {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 9, "model": "gpt-x", "usage": None,
         "choices": [{"index": 0, "delta": {"content": "lo"}, "logprobs": None, "finish_reason": None}]},
        {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 9, "model": "gpt-x", "usage": None,
         "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]},
        {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 9, "model": "gpt-x", "choices": [],
         "usage": {"prompt_tokens": 30, "completion_tokens": 15, "total_tokens": 45,
                   "prompt_tokens_details": {"cached_tokens": 5}}},
    ]
    assert translator.usage == Usage(25, 15, cache_read_tokens=5)
    completion = openai_sdk(chunks)
    assert completion.choices[0].message.content == "Hello"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 30
    assert completion.usage.prompt_tokens_details.cached_tokens == 5


def test_thinking_text_and_parallel_tools(openai_sdk):
    events = anthropic_events(
        ({"type": "thinking", "thinking": "", "signature": ""},
         [{"type": "thinking_delta", "thinking": "Plan"}, {"type": "signature_delta", "signature": "sig=="}]),
        TEXT,
        ({"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}},
         [{"type": "input_json_delta", "partial_json": ""}, {"type": "input_json_delta", "partial_json": '{"city":'},
          {"type": "input_json_delta", "partial_json": ' "Paris"}'}]),
        ({"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}},
         [{"type": "input_json_delta", "partial_json": "{}"}]),
        stop_reason="tool_use",
    )
    _, chunks = run(events)
    assert deltas(chunks) == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "Plan"},
        {"content": "Hel"},
        {"content": "lo"},
        {"tool_calls": [{"index": 0, "id": "toolu_a", "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": ' "Paris"}'}}]},
        {"tool_calls": [{"index": 1, "id": "toolu_b", "type": "function",
                         "function": {"name": "get_time", "arguments": ""}}]},
        {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
        {},
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    completion = openai_sdk(chunks)
    msg = completion.choices[0].message
    assert msg.content == "Hello"
    assert [(t.id, t.function.name, t.function.arguments) for t in msg.tool_calls] == [
        ("toolu_a", "get_weather", '{"city": "Paris"}'),
        ("toolu_b", "get_time", "{}"),
    ]
    assert msg.model_extra.get("reasoning_content") == "Plan"


def test_without_include_usage_there_is_no_usage_chunk():
    translator, chunks = run(anthropic_events(TEXT), include_usage=False)
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert translator.usage == Usage(25, 15, cache_read_tokens=5)  # still known to the caller


def test_message_delta_usage_overrides_message_start():
    events = anthropic_events(TEXT)
    events[-2][1]["usage"] = {"input_tokens": 30, "cache_read_input_tokens": 7, "output_tokens": 3}
    translator, _ = run(events)
    assert translator.usage == Usage(30, 3, cache_read_tokens=7)


def test_stream_cut_before_message_delta_still_finishes():
    events = anthropic_events(TEXT)[:-2]
    translator, chunks = run(events)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert translator.usage == Usage(25, 1, cache_read_tokens=5)
    assert translator.output_chars == 5


def test_max_tokens_stop_reason_and_prefilled_tool_input():
    events = anthropic_events(
        ({"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}, []), stop_reason="max_tokens")
    _, chunks = run(events)
    assert deltas(chunks)[1] == {"tool_calls": [{"index": 0, "id": "t", "type": "function",
                                                 "function": {"name": "f", "arguments": '{"a":1}'}}]}
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


def test_error_event_mid_stream(openai_sdk):
    translator = MessagesStreamToChat(model="gpt-x", include_usage=True)
    events = anthropic_events(TEXT)[:4]
    chunks = [c for name, data in events for c in translator.feed(name, data)]
    error = translator.feed("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert error == [{"error": {"message": "Overloaded", "type": "overloaded_error", "param": None, "code": None}}]
    assert translator.done
    assert translator.feed("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                   "delta": {"type": "text_delta", "text": "x"}}) == []
    assert translator.finish() == []
    with pytest.raises(openai.APIError) as exc:
        openai_sdk(chunks + error, done=False)
    assert "Overloaded" in str(exc.value)


def test_error_chunk_shape():
    translator = MessagesStreamToChat(model="m", include_usage=False)
    assert translator.error_chunk("boom", "server_error") == {
        "error": {"message": "boom", "type": "server_error", "param": None, "code": None}}
