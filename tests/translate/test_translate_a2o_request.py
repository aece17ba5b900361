"""Anthropic Messages request → OpenAI Chat Completions request."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.translate.shapes import LONG_MCP_TOOL, PNG_B64

from a2agent.translate.anthropic_to_openai import messages_request_to_chat
from a2agent.translate.errors import TranslationError
from a2agent.translate.toolnames import build_tool_name_map, openai_tool_name


def translate(body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return messages_request_to_chat(body, upstream_model="up-model", **kwargs)


def base(**extra: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **extra}


# ------------------------------------------------------------------ Claude Code shape


def test_claude_code_request_messages(claude_code_request):
    out = translate(claude_code_request, reasoning=True)
    short = openai_tool_name(LONG_MCP_TOOL)
    assert out["messages"] == [
        {
            "role": "system",
            "content": "You are Claude Code, Anthropic's official CLI for Claude.\n\n"
            "You are an interactive CLI tool that helps users with software tasks.",
        },
        {"role": "user", "content": "List the files and read README"},
        {"role": "system", "content": "<env>Working directory: /repo\nPlatform: linux</env>"},
        {
            "role": "assistant",
            "content": "I'll look around.",
            "reasoning_content": "I should list and read.",
            "tool_calls": [
                {
                    "id": "toolu_01A",
                    "type": "function",
                    "function": {"name": "Bash", "arguments": '{"command":"ls"}'},
                },
                {
                    "id": "toolu_01B",
                    "type": "function",
                    "function": {"name": short, "arguments": '{"query":"README","limit":3}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "README.md\nsrc"},
        {"role": "tool", "tool_call_id": "toolu_01B", "content": "Error: no such index"},
    ]


def test_claude_code_request_top_level(claude_code_request):
    out = translate(claude_code_request, reasoning=True)
    assert out["model"] == "up-model"
    assert out["max_tokens"] == 32000
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}
    assert out["reasoning_effort"] == "high"  # adaptive + output_config.effort=high
    assert out["user"] == claude_code_request["metadata"]["user_id"]
    assert "tool_choice" not in out
    names = [t["function"]["name"] for t in out["tools"]]
    assert names == ["Bash", openai_tool_name(LONG_MCP_TOOL), "DeferredToolPlaceholder"]
    assert all(len(n) <= 64 for n in names)
    assert out["tools"][0]["function"]["parameters"] == claude_code_request["tools"][0]["input_schema"]
    assert build_tool_name_map(claude_code_request["tools"]) == {
        openai_tool_name(LONG_MCP_TOOL): LONG_MCP_TOOL
    }


def test_anthropic_only_fields_never_reach_openai(claude_code_request):
    text = json.dumps(translate(claude_code_request, reasoning=True))
    for forbidden in (
        "cache_control",
        "context_management",
        "output_config",
        "thinking",
        "signature",
        "EqQBCkYIBxgCKkD",
        "defer_loading",
        "metadata",
        "x-anthropic-billing-header",
        "is_error",
    ):
        assert forbidden not in text, forbidden


def test_thinking_config_dropped_without_reasoning_support(claude_code_request):
    out = translate(claude_code_request)
    assert "reasoning_effort" not in out


def test_reasoning_content_can_be_left_out_for_strict_upstreams(claude_code_request):
    out = translate(claude_code_request, keep_reasoning_content=False)
    assert all("reasoning_content" not in m for m in out["messages"])


# ---------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("extra", "effort"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "low"),
        ({"thinking": {"type": "enabled", "budget_tokens": 4096}}, "medium"),
        ({"thinking": {"type": "enabled", "budget_tokens": 16000}}, "medium"),
        ({"thinking": {"type": "enabled", "budget_tokens": 16384}}, "high"),
        ({"thinking": {"type": "adaptive"}}, "medium"),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}}, "low"),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}}, "high"),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "xhigh"}}, "high"),
        ({"thinking": {"type": "disabled"}}, None),
        ({}, None),
    ],
)
def test_thinking_to_reasoning_effort(extra, effort):
    out = translate(base(**extra), reasoning=True)
    assert out.get("reasoning_effort") == effort


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "Bash"}, {"type": "function", "function": {"name": "Bash"}}),
        (
            {"type": "tool", "name": LONG_MCP_TOOL},
            {"type": "function", "function": {"name": openai_tool_name(LONG_MCP_TOOL)}},
        ),
    ],
)
def test_tool_choice(choice, expected):
    tools = [{"name": "Bash", "input_schema": {"type": "object"}}, {"name": LONG_MCP_TOOL}]
    out = translate(base(tools=tools, tool_choice=choice))
    assert out["tool_choice"] == expected
    assert "parallel_tool_calls" not in out


def test_disable_parallel_tool_use():
    tools = [{"name": "Bash", "input_schema": {"type": "object"}}]
    out = translate(base(tools=tools, tool_choice={"type": "auto", "disable_parallel_tool_use": True}))
    assert out["tool_choice"] == "auto"
    assert out["parallel_tool_calls"] is False


def test_tool_choice_without_tools_is_dropped():
    assert "tool_choice" not in translate(base(tool_choice={"type": "any"}))


def test_sampling_and_stop_parameters():
    out = translate(
        base(temperature=0.3, top_p=0.9, top_k=40, stop_sequences=["\n\nHuman:", "END"], stream=False)
    )
    assert out["temperature"] == 0.3
    assert out["top_p"] == 0.9
    assert out["stop"] == ["\n\nHuman:", "END"]
    assert "top_k" not in out
    assert "stream" not in out and "stream_options" not in out


def test_max_completion_tokens_field():
    out = translate(base(), max_tokens_field="max_completion_tokens")
    assert out["max_completion_tokens"] == 100 and "max_tokens" not in out


def test_structured_output_format_becomes_response_format():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    out = translate(base(output_config={"format": {"type": "json_schema", "schema": schema}}))
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }


def test_long_user_id_is_hashed_stably():
    body = base(metadata={"user_id": "u" * 300})
    first, second = translate(body)["user"], translate(body)["user"]
    assert first == second and len(first) == 64


def test_system_as_plain_string():
    out = translate(base(system="Be brief."))
    assert out["messages"][0] == {"role": "system", "content": "Be brief."}


# ------------------------------------------------------------------------- content


def test_images_base64_and_url():
    content = [
        {"type": "text", "text": "compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
    ]
    out = translate(base(messages=[{"role": "user", "content": content}]))
    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "compare"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
            ],
        }
    ]


def test_image_in_tool_result_moves_to_following_user_message():
    messages = [
        {"role": "user", "content": "screenshot please"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "shot", "input": {}}]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [
                        {"type": "text", "text": "captured"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                    ],
                },
                {"type": "text", "text": "what do you see?"},
            ],
        },
    ]
    out = translate(base(messages=messages))["messages"]
    assert out[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "shot", "arguments": "{}"}}],
    }
    assert out[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "captured"}
    assert out[3] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "[Attachments returned by tool call toolu_1]"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
            {"type": "text", "text": "what do you see?"},
        ],
    }


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ({"type": "tool_result", "tool_use_id": "t", "content": "ok"}, "ok"),
        ({"type": "tool_result", "tool_use_id": "t"}, ""),
        ({"type": "tool_result", "tool_use_id": "t", "is_error": True}, "Error"),
        ({"type": "tool_result", "tool_use_id": "t", "content": "boom", "is_error": True}, "Error: boom"),
        (
            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            "a\nb",
        ),
    ],
)
def test_tool_result_content_is_a_string(block, expected):
    out = translate(base(messages=[{"role": "user", "content": [block]}]))
    assert out["messages"] == [{"role": "tool", "tool_call_id": "t", "content": expected}]


def test_pdf_document_becomes_file_part_and_text_document_becomes_text():
    content = [
        {"type": "document", "title": "spec.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
        {"type": "document", "title": "Notes", "source": {"type": "text", "media_type": "text/plain", "data": "line"}},
    ]
    out = translate(base(messages=[{"role": "user", "content": content}]))
    assert out["messages"][0]["content"] == [
        {"type": "file", "file": {"filename": "spec.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
        {"type": "text", "text": "Notes\n\nline"},
    ]


def test_assistant_string_content_and_redacted_thinking():
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "plain"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "xyz"}, {"type": "text", "text": "ok"}]},
    ]
    out = translate(base(messages=messages))["messages"]
    assert out[1] == {"role": "assistant", "content": "plain"}
    assert out[3] == {"role": "assistant", "content": "ok"}


def test_unparseable_arguments_round_trip_through_raw_key():
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "f", "input": {"_raw_arguments": '{"x": 1'}}]},
    ]
    out = translate(base(messages=messages))["messages"]
    assert out[1]["tool_calls"][0]["function"]["arguments"] == '{"x": 1'


# -------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "max_tokens": 1}, "messages"),
        (base(messages=[{"role": "tool", "content": "x"}]), "messages.0.role"),
        (base(tools=[{"type": "web_search_20250305", "name": "web_search"}]), "tools.0"),
        (
            base(messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]),
            "messages.0.content.0",
        ),
        (
            base(messages=[{"role": "user", "content": [{"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}]}]),
            "messages.0.content.0",
        ),
        (
            base(messages=[{"role": "user", "content": [{"type": "tool_result", "content": "no id"}]}]),
            "messages.0.content.0.tool_use_id",
        ),
        (
            base(messages=[{"role": "assistant", "content": [{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}]}]),
            "messages.0.content.0",
        ),
        (base(messages=[{"role": "user", "content": [{"type": "video"}]}]), "messages.0.content.0"),
        (base(tool_choice={"type": "weird"}, tools=[{"name": "a"}]), "tool_choice"),
    ],
)
def test_untranslatable_requests_raise(body, param):
    with pytest.raises(TranslationError) as err:
        translate(body)
    assert err.value.param == param
    assert err.value.message
