"""OpenAI Chat Completions request → Anthropic Messages request."""

from __future__ import annotations

from typing import Any

import pytest

from a2agent.translate.errors import TranslationError
from a2agent.translate.openai_to_anthropic import (
    JSON_OBJECT_INSTRUCTION,
    JSON_SCHEMA_INSTRUCTION,
    chat_request_to_messages,
)
from tests.translate.shapes import PNG_B64


def translate(body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return chat_request_to_messages(body, upstream_model="claude-up", **kwargs)


def base(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_openai_sdk_request(openai_sdk_request):
    out = translate(openai_sdk_request)
    assert out == {
        "model": "claude-up",
        "system": "You are terse.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image, and what's the weather?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_def", "name": "get_time", "input": {"tz": "CET"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_abc", "content": "18C, cloudy"},
                    {"type": "tool_result", "tool_use_id": "call_def", "content": "14:05"},
                    {"type": "text", "text": "Thanks. Summarise."},
                ],
            },
        ],
        "max_tokens": 900,  # max_completion_tokens
        "temperature": 1,  # 1.4 clamped to Anthropic's range
        "stop_sequences": ["END"],
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
        ],
        "metadata": {"user_id": "user-42"},
        "stream": True,
    }


def test_system_and_developer_messages_anywhere_are_hoisted():
    body = base(messages=[
        {"role": "developer", "content": [{"type": "text", "text": "Rule one."}]},
        {"role": "user", "content": "q"},
        {"role": "system", "content": "Rule two."},
        {"role": "assistant", "content": "a"},
    ])
    out = translate(body)
    assert out["system"] == "Rule one.\n\nRule two."
    assert [m["role"] for m in out["messages"]] == ["user", "assistant"]


def test_consecutive_same_role_messages_merge_and_empty_ones_vanish():
    body = base(messages=[
        {"role": "user", "content": "a"},
        {"role": "user", "content": [{"type": "text", "text": "b"}, {"type": "text", "text": ""}]},
        {"role": "assistant", "content": ""},
        {"role": "assistant", "content": "c"},
    ])
    assert translate(body)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "c"}]},
    ]


def test_tool_results_come_before_user_text_even_if_sent_after():
    body = base(messages=[
        {"role": "user", "content": "q"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "user", "content": "extra"},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "r1"}]},
    ])
    last = translate(body)["messages"][-1]
    assert last == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "c1", "content": "r1"},
        {"type": "text", "text": "extra"},
    ]}


def test_tool_message_with_image_and_empty_tool_message():
    image = {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}
    body = base(messages=[
        {"role": "user", "content": "q"},
        {"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "not json"}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "shot"}, image]},
        {"role": "tool", "tool_call_id": "c2", "content": ""},
    ])
    out = translate(body)["messages"]
    assert out[1]["content"][0]["input"] == {}
    assert out[1]["content"][1]["input"] == {"_raw_arguments": "not json"}
    assert out[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1", "content": [
            {"type": "text", "text": "shot"},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/x.png"}},
        ]},
        {"type": "tool_result", "tool_use_id": "c2"},
    ]


def test_pdf_file_part_becomes_document():
    part = {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}}
    out = translate(base(messages=[{"role": "user", "content": [part]}]))
    assert out["messages"][0]["content"] == [{
        "type": "document",
        "title": "a.pdf",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
    }]


def test_assistant_reasoning_content_is_not_sent_to_anthropic():
    body = base(messages=[
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a", "reasoning_content": "unsigned thoughts"},
        {"role": "user", "content": "next"},
    ])
    assert "unsigned" not in str(translate(body))


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, 4096),
        ({"max_tokens": 50}, 50),
        ({"max_tokens": 50, "max_completion_tokens": 70}, 70),
    ],
)
def test_max_tokens(extra, expected):
    assert translate(base(**extra))["max_tokens"] == expected


def test_default_max_tokens_is_configurable():
    assert translate(base(), default_max_tokens=1000)["max_tokens"] == 1000


@pytest.mark.parametrize(
    ("extra", "thinking", "max_tokens"),
    [
        ({"reasoning_effort": "low"}, {"type": "enabled", "budget_tokens": 2048}, 4096 + 2048),
        ({"reasoning_effort": "medium"}, {"type": "enabled", "budget_tokens": 8192}, 4096 + 8192),
        ({"reasoning_effort": "high", "max_tokens": 10000}, {"type": "enabled", "budget_tokens": 5904}, 10000),
        ({"reasoning_effort": "high", "max_tokens": 4000}, {"type": "enabled", "budget_tokens": 2000}, 4000),
        ({"reasoning_effort": "low", "max_tokens": 1500}, {"type": "enabled", "budget_tokens": 1024}, 1500),
        ({"reasoning_effort": "minimal", "max_completion_tokens": 3000}, {"type": "enabled", "budget_tokens": 1024}, 3000),
        ({"reasoning_effort": "none"}, None, 4096),
    ],
)
def test_reasoning_effort_to_thinking(extra, thinking, max_tokens):
    out = translate(base(temperature=0.2, top_p=0.5, **extra))
    assert out.get("thinking") == thinking
    assert out["max_tokens"] == max_tokens
    if thinking:  # Anthropic rejects sampling changes while thinking
        assert "temperature" not in out and "top_p" not in out
    else:
        assert out["temperature"] == 0.2 and "top_p" not in out  # never the pair


def test_adaptive_thinking_variant():
    out = translate(base(reasoning_effort="high"), adaptive_thinking=True)
    assert out["thinking"] == {"type": "adaptive"}
    assert out["output_config"] == {"effort": "high"}
    assert out["max_tokens"] == 4096


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        ("auto", None, None),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        ({"type": "function", "function": {"name": "f"}}, None, {"type": "tool", "name": "f"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
    ],
)
def test_tool_choice_and_parallel_tool_calls(choice, parallel, expected):
    extra: dict[str, Any] = {"tools": [{"type": "function", "function": {"name": "f"}}]}
    if choice is not None:
        extra["tool_choice"] = choice
    if parallel is not None:
        extra["parallel_tool_calls"] = parallel
    out = translate(base(**extra))
    assert out.get("tool_choice") == expected
    assert out["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]


def test_response_format_becomes_a_system_instruction():
    out = translate(base(response_format={"type": "json_object"}))
    assert out["system"] == JSON_OBJECT_INSTRUCTION
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    body = base(messages=[{"role": "system", "content": "S."}, {"role": "user", "content": "q"}],
                response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    out = translate(body)
    assert out["system"] == 'S.\n\n' + JSON_SCHEMA_INSTRUCTION + '{"type":"object","properties":{"n":{"type":"integer"}}}'
    assert "system" not in translate(base(response_format={"type": "text"}))


@pytest.mark.parametrize(
    ("extra", "user_id"),
    [
        ({"user": "u1"}, "u1"),
        ({"safety_identifier": "s1"}, "s1"),
        ({"metadata": {"user_id": "m1"}, "user": "u1"}, "m1"),
        ({}, None),
    ],
)
def test_user_identity(extra, user_id):
    out = translate(base(**extra))
    assert out.get("metadata") == ({"user_id": user_id} if user_id else None)


def test_stop_string_and_dropped_hints():
    out = translate(base(stop="###", seed=1, presence_penalty=0.5, frequency_penalty=0.1,
                         stream=False, stream_options={"include_usage": True}, n=1, store=False))
    assert out == {"model": "claude-up", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                   "max_tokens": 4096, "stop_sequences": ["###"]}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"reasoning_effort": "high", "max_tokens": 1000}, "max_tokens"),
        ({"tools": [{"type": "custom", "custom": {"name": "g"}}]}, "tools.0"),
        ({"tool_choice": {"type": "allowed_tools"}, "tools": [{"type": "function", "function": {"name": "f"}}]}, "tool_choice"),
        ({"response_format": {"type": "grammar"}}, "response_format"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.tool_call_id"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "messages.0.content.0"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]}]}, "messages.0.content.0"),
        ({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]}, "messages.0.content.0"),
        ({"messages": [{"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}]}, "messages.0.function_call"),
        ({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}]}, "messages.0.content"),
    ],
)
def test_untranslatable_requests_raise(extra, param):
    with pytest.raises(TranslationError) as err:
        translate(base(**extra))
    assert err.value.param == param
