"""OpenAI chat.completion (non-streaming) → Anthropic Message."""

from __future__ import annotations

from typing import Any

import anthropic.types
import pytest

from a2agent.translate.anthropic_to_openai import chat_response_to_messages
from a2agent.translate.toolnames import openai_tool_name


def completion(message: dict[str, Any], finish: str | None = "stop", usage: dict | None = None, **choice: Any) -> dict:
    return {
        "id": "chatcmpl-9",
        "object": "chat.completion",
        "created": 1,
        "model": "deepseek-chat",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish, **choice}],
        "usage": usage
        if usage is not None
        else {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37,
              "prompt_tokens_details": {"cached_tokens": 10}},
    }


def test_text_response():
    out = chat_response_to_messages(completion({"role": "assistant", "content": "Hi there"}), model="claude-x")
    assert out["id"].startswith("msg_")
    assert {k: v for k, v in out.items() if k != "id"} == {
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{"type": "text", "text": "Hi there"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 10, "output_tokens": 7},
    }
    anthropic.types.Message.model_validate(out)  # the SDK's own model accepts it


def test_reasoning_text_and_parallel_tool_calls():
    long = "mcp__srv__" + "x" * 70
    message = {
        "role": "assistant",
        "content": "Calling tools.",
        "reasoning_content": "Need both.",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": openai_tool_name(long), "arguments": ""}},
        ],
    }
    out = chat_response_to_messages(
        completion(message, "tool_calls"), model="m", tool_name_map={openai_tool_name(long): long}
    )
    assert out["content"] == [
        {"type": "thinking", "thinking": "Need both.", "signature": ""},
        {"type": "text", "text": "Calling tools."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": long, "input": {}},
    ]
    assert out["stop_reason"] == "tool_use"
    anthropic.types.Message.model_validate(out)


def test_openrouter_reasoning_field_and_missing_tool_id():
    message = {
        "role": "assistant",
        "content": None,
        "reasoning": "thinking...",
        "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"already": "parsed"}}}],
    }
    out = chat_response_to_messages(completion(message, "stop"), model="m")
    assert out["content"][0] == {"type": "thinking", "thinking": "thinking...", "signature": ""}
    assert out["content"][1]["id"].startswith("toolu_")
    assert out["content"][1]["input"] == {"already": "parsed"}
    assert out["stop_reason"] == "tool_use"  # tool calls reported with finish_reason "stop"


def test_malformed_arguments_are_kept_not_lost():
    message = {"role": "assistant", "content": None,
               "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": 1'}}]}
    out = chat_response_to_messages(completion(message, "length"), model="m")
    assert out["content"] == [{"type": "tool_use", "id": "c", "name": "f", "input": {"_raw_arguments": '{"a": 1'}}]
    assert out["stop_reason"] == "max_tokens"


@pytest.mark.parametrize(
    ("finish", "expected"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("content_filter", "refusal"),
     ("tool_calls", "tool_use"), ("function_call", "tool_use"), (None, "end_turn")],
)
def test_finish_reason_mapping(finish, expected):
    out = chat_response_to_messages(completion({"role": "assistant", "content": "x"}, finish), model="m")
    assert out["stop_reason"] == expected


def test_refusal_becomes_text_with_refusal_stop_reason():
    message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    out = chat_response_to_messages(completion(message, None), model="m")
    assert out["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert out["stop_reason"] == "refusal"


def test_stop_sequence_when_upstream_names_it():
    resp = completion({"role": "assistant", "content": "a"}, "stop", stop_reason="END")
    out = chat_response_to_messages(resp, model="m", stop_sequences=["END"])
    assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", "END")
    out = chat_response_to_messages(resp, model="m", stop_sequences=["OTHER"])
    assert (out["stop_reason"], out["stop_sequence"]) == ("end_turn", None)


def test_empty_answer_and_missing_usage():
    out = chat_response_to_messages(completion({"role": "assistant", "content": ""}, usage={}), model="m")
    assert out["content"] == []
    assert out["usage"]["input_tokens"] == 0 and out["usage"]["output_tokens"] == 0


def test_content_parts_in_a_response_are_joined():
    message = {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    out = chat_response_to_messages(completion(message), model="m")
    assert out["content"] == [{"type": "text", "text": "ab"}]
